"""The card vault's cryptography: AES-256-GCM for card numbers and CVCs, HMAC for fingerprints.

Ciphertexts are bound to their vault row id (AEAD associated data), so a ciphertext copied onto
another row does not decrypt. A leading version byte leaves room for key rotation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tender import keyfiles

log = logging.getLogger(__name__)

_VERSION = b"\x01"
_NONCE_BYTES = 12


class VaultKeyError(ValueError):
    pass


class Vault:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise VaultKeyError("the vault key must be 32 bytes (base64 of 32 random bytes)")
        self._aead = AESGCM(key)
        # A separate key for fingerprints, so the encryption key is never used for two purposes.
        self._fingerprint_key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"tender card fingerprint"
        ).derive(key)
        # And one for keyed hashes of personal data that is looked up but never read back (velocity limits).
        self._hash_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"tender keyed hash").derive(key)
        # And one for idempotency request fingerprints, so that a stored fingerprint reveals nothing of its body.
        self._request_key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"tender idempotency request fingerprint"
        ).derive(key)

    def encrypt(self, plaintext: str, *, row_id: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext.encode(), row_id.encode())

    def decrypt(self, blob: bytes, *, row_id: str) -> str:
        if blob[:1] != _VERSION:
            raise VaultKeyError("unknown vault ciphertext version")
        nonce, ciphertext = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        return self._aead.decrypt(nonce, ciphertext, row_id.encode()).decode()

    def fingerprint(self, number: str, *, merchant_id: str) -> str:
        """The same card gives the same fingerprint within one merchant, and nothing across merchants."""
        digest = hmac.new(self._fingerprint_key, f"{merchant_id}:{number}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:12]).decode()

    def request_digest(self, canonical: bytes) -> bytes:
        """HMAC-SHA256 of a request's canonical form (an idempotency fingerprint): equal requests match, and
        without the vault key no guess at a body can be checked against it."""
        return hmac.new(self._request_key, canonical, hashlib.sha256).digest()

    def keyed_hash(self, purpose: str, value: str) -> bytes:
        """HMAC-SHA256 of `value` for one `purpose`: equal values match, and without the vault key nobody can
        tell which value a hash is of (an address has too few possibilities for an unkeyed hash to hide it)."""
        return hmac.new(self._hash_key, f"{purpose}\x00{value}".encode(), hashlib.sha256).digest()


def decode_key(text: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except ValueError as exc:
        raise VaultKeyError("TENDER_VAULT_KEY is not valid base64") from exc
    if len(key) != 32:
        raise VaultKeyError("TENDER_VAULT_KEY must decode to 32 bytes")
    return key


def load_or_create_key_file(path: Path) -> bytes:
    """The embedded default: a key file made on first run, readable by its owner only. Written whole and
    linked into place (keyfiles.load_or_create), so a process starting beside another never reads it
    half-written."""
    made: list[str] = []

    def make() -> str:
        made.append(base64.b64encode(os.urandom(32)).decode())
        return made[-1]

    text = keyfiles.load_or_create(path, make)
    if made and made[-1] == text:
        log.warning("generated a new vault key in %s: back it up, card data cannot be read without it", path)
    return decode_key(text)
