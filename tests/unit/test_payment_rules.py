from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tender.domain.errors import CardInvalid, DomainError, IncorrectNumber, InvalidTransition, ValidationFailed
from tender.domain.payments import (
    FINAL_STATUSES,
    TRANSITIONS,
    PaymentStatus,
    can_transition,
    ensure_transition,
    validate_metadata,
    validate_reference,
)

S = PaymentStatus

# Every transition API.md's "Statuses" lists, plus the direct 3-D Secure outcomes.
API_TRANSITIONS = [
    (S.PROCESSING, S.SUCCEEDED),
    (S.PROCESSING, S.FAILED),
    (S.PROCESSING, S.REQUIRES_ACTION),
    (S.PROCESSING, S.REQUIRES_CAPTURE),
    (S.REQUIRES_ACTION, S.PROCESSING),
    (S.REQUIRES_ACTION, S.CANCELED),
    (S.REQUIRES_CAPTURE, S.SUCCEEDED),
    (S.REQUIRES_CAPTURE, S.CANCELED),
]
THREE_DS_SHORTCUTS = [
    (S.REQUIRES_ACTION, S.SUCCEEDED),
    (S.REQUIRES_ACTION, S.FAILED),
    (S.REQUIRES_ACTION, S.REQUIRES_CAPTURE),
]


def test_status_values() -> None:
    assert [s.value for s in PaymentStatus] == [
        "processing", "requires_action", "requires_capture", "succeeded", "failed", "canceled",
    ]  # fmt: skip
    assert S("succeeded") is S.SUCCEEDED
    assert f"{S.PROCESSING}" == "processing"
    assert {S.SUCCEEDED, S.FAILED, S.CANCELED} == FINAL_STATUSES
    assert set(TRANSITIONS) == set(PaymentStatus)


def test_transition_table_is_exactly_the_contract() -> None:
    allowed = {(old, new) for old, targets in TRANSITIONS.items() for new in targets}
    assert allowed == set(API_TRANSITIONS) | set(THREE_DS_SHORTCUTS)


@pytest.mark.parametrize(("old", "new"), API_TRANSITIONS + THREE_DS_SHORTCUTS)
def test_allowed(old: PaymentStatus, new: PaymentStatus) -> None:
    assert can_transition(old, new)
    ensure_transition(old, new)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (S.PROCESSING, S.CANCELED),
        (S.PROCESSING, S.PROCESSING),
        (S.REQUIRES_CAPTURE, S.FAILED),
        (S.REQUIRES_CAPTURE, S.PROCESSING),
        (S.SUCCEEDED, S.FAILED),
        (S.FAILED, S.SUCCEEDED),
        (S.CANCELED, S.PROCESSING),
    ],
)
def test_refused(old: PaymentStatus, new: PaymentStatus) -> None:
    assert not can_transition(old, new)
    with pytest.raises(InvalidTransition) as info:
        ensure_transition(old, new)
    assert info.value.code == "payment_unexpected_state"
    assert old.value in info.value.message
    assert new.value in info.value.message


@given(old=st.sampled_from(sorted(FINAL_STATUSES)), new=st.sampled_from(list(PaymentStatus)))
def test_nothing_leaves_a_final_status(old: PaymentStatus, new: PaymentStatus) -> None:
    assert not can_transition(old, new)


def test_no_status_moves_to_itself() -> None:
    for status in PaymentStatus:
        assert not can_transition(status, status)


def test_every_path_ends_in_a_final_status() -> None:
    # From processing, every status is reachable and every non-final status can still finish.
    for status in PaymentStatus:
        seen, frontier = {status}, [status]
        while frontier:
            for nxt in TRANSITIONS[frontier.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        assert seen & FINAL_STATUSES
    assert all(TRANSITIONS[s] for s in PaymentStatus if s not in FINAL_STATUSES)


def test_tables_are_read_only() -> None:
    with pytest.raises(TypeError):
        TRANSITIONS[S.SUCCEEDED] = frozenset({S.FAILED})  # type: ignore[index]


# --- metadata ----------------------------------------------------------------------------------


def test_metadata_accepts_flat_strings() -> None:
    given_value = {"order_id": "6735", "note": "", "k" * 40: "v" * 500}
    clean = validate_metadata(given_value)
    assert clean == given_value
    assert clean is not given_value
    assert validate_metadata(None) == {}
    assert validate_metadata({}) == {}


def test_metadata_key_count() -> None:
    fifty = {f"k{i}": "v" for i in range(50)}
    assert len(validate_metadata(fifty)) == 50
    with pytest.raises(ValidationFailed) as info:
        validate_metadata({**fifty, "one_more": "v"})
    assert info.value.param == "metadata"
    assert "50" in info.value.message


@pytest.mark.parametrize("key", ["", "k" * 41])
def test_metadata_key_length(key: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        validate_metadata({key: "v"})
    assert info.value.param == "metadata"


@pytest.mark.parametrize("value", ["v" * 501, 6735, 1.5, None, True, {"nested": "x"}, ["a"]])
def test_metadata_values_must_be_short_strings(value: object) -> None:
    with pytest.raises(ValidationFailed) as info:
        validate_metadata({"ok": "fine", "order_id": value})
    assert info.value.param == "metadata.order_id"
    assert "metadata.order_id" in info.value.message


@pytest.mark.parametrize("value", ["order=1", ["a", "b"], 5, True])
def test_metadata_must_be_an_object(value: object) -> None:
    with pytest.raises(ValidationFailed) as info:
        validate_metadata(value, param="checkout.metadata")
    assert info.value.param == "checkout.metadata"


def test_metadata_non_string_key() -> None:
    with pytest.raises(ValidationFailed):
        validate_metadata({1: "v"})


@given(st.dictionaries(st.text(min_size=1, max_size=40), st.text(max_size=500), max_size=50))
def test_metadata_within_limits_round_trips(value: dict[str, str]) -> None:
    assert validate_metadata(value) == value


# --- reference ---------------------------------------------------------------------------------


def test_reference() -> None:
    assert validate_reference(None) is None
    assert validate_reference("order-6735") == "order-6735"
    assert validate_reference("pedido ação #7") == "pedido ação #7"
    assert validate_reference("r" * 255) == "r" * 255


@pytest.mark.parametrize("bad", ["", "r" * 256, 6735, ["a"], "line\nbreak", "tab\there", "\x00"])
def test_bad_reference(bad: object) -> None:
    with pytest.raises(ValidationFailed) as info:
        validate_reference(bad, param="payment.reference")
    assert info.value.param == "payment.reference"
    assert "payment.reference" in info.value.message


def test_error_classes() -> None:
    plain = ValidationFailed("bad", param="x")
    assert (plain.code, plain.message, plain.param, str(plain)) == ("parameter_invalid", "bad", "x", "bad")
    card = IncorrectNumber("bad")  # a code is a class: CardInvalid's subclasses are the card checks' codes
    assert (card.code, isinstance(card, CardInvalid), isinstance(card, ValidationFailed)) == (
        "incorrect_number",
        True,
        True,
    )
    assert ValidationFailed.code == "parameter_invalid"
    assert card.param is None
    assert isinstance(InvalidTransition("x"), DomainError)
    assert not isinstance(InvalidTransition("x"), ValidationFailed)
