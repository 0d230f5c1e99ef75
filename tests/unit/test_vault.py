"""The vault's cryptography: ciphertexts bound to their row, fingerprints stable per merchant only."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag

from tender.processors.base import CardData
from tender.vault import Vault, VaultKeyError, decode_key, load_or_create_key_file

NUMBER = "4242424242424242"


def test_round_trip_and_no_clear_text_in_the_ciphertext() -> None:
    vault = Vault(os.urandom(32))
    blob = vault.encrypt(NUMBER, row_id="card_1")
    assert NUMBER.encode() not in blob
    assert vault.decrypt(blob, row_id="card_1") == NUMBER
    assert vault.encrypt(NUMBER, row_id="card_1") != blob  # a fresh nonce every time


def test_a_ciphertext_moved_to_another_row_or_key_does_not_decrypt() -> None:
    vault = Vault(os.urandom(32))
    blob = vault.encrypt(NUMBER, row_id="card_1")
    with pytest.raises(InvalidTag):
        vault.decrypt(blob, row_id="card_2")
    with pytest.raises(InvalidTag):
        Vault(os.urandom(32)).decrypt(blob, row_id="card_1")


def test_fingerprints_match_within_a_merchant_only() -> None:
    vault = Vault(os.urandom(32))
    a = vault.fingerprint(NUMBER, merchant_id="mer_a")
    assert a == vault.fingerprint(NUMBER, merchant_id="mer_a")
    assert a != vault.fingerprint(NUMBER, merchant_id="mer_b")
    assert a != vault.fingerprint("5555555555554444", merchant_id="mer_a")
    assert NUMBER not in a


def test_key_validation() -> None:
    with pytest.raises(VaultKeyError):
        Vault(b"short")
    with pytest.raises(VaultKeyError):
        decode_key("not base64!")
    with pytest.raises(VaultKeyError):
        decode_key(base64.b64encode(b"x" * 16).decode())


def test_key_file_is_created_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "vault.key"
    key = load_or_create_key_file(path)
    assert len(key) == 32
    assert load_or_create_key_file(path) == key
    assert path.stat().st_mode & 0o077 == 0


def test_card_data_repr_hides_the_number_and_cvc() -> None:
    card = CardData(NUMBER, 12, 2030, "123", "Luke")
    assert NUMBER not in repr(card) and "123" not in repr(card) and "4242" in repr(card)


def test_processes_starting_at_once_agree_on_one_key(tmp_path: Path) -> None:
    # Each would once have read the file while another was still writing it (an empty or partial key).
    from concurrent.futures import ProcessPoolExecutor

    path = tmp_path / "data" / "vault.key"
    with ProcessPoolExecutor(max_workers=8) as pool:
        keys = list(pool.map(load_or_create_key_file, [path] * 32))
    assert len(set(keys)) == 1
    assert oct(path.stat().st_mode & 0o777) == "0o600"
