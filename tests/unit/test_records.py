"""The records of domain/models.py: a status read as text from a row becomes its enum as the record is made,
an unknown one is refused, and the JSON of an object shows the same text as before (a StrEnum)."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, replace
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from tender.domain.models import (
    CheckoutSession,
    CheckoutStatus,
    DeadLetter,
    DeadLetterStatus,
    DeliveryStatus,
    Payment,
    WebhookDelivery,
)
from tender.domain.payments import PaymentStatus
from tender.services.objects import payment_object, session_object

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def _payment(status: Any) -> Payment:
    return Payment(
        id="pay_1", merchant_id="mer_1", amount=100, currency="BRL", status=status, capture=True,
        amount_captured=0, amount_refunded=0, payment_method={"type": "upi", "upi": {"vpa": "a@b"}}, card_id=None,
        reference=None, description=None, metadata={}, customer=None, return_url=None, failure_code=None,
        decline_code=None, failure_message=None, next_action=None, processor="simulator", created=NOW, updated=NOW,
    )  # fmt: skip


def _session(status: Any) -> CheckoutSession:
    return CheckoutSession(
        id="cs_1", merchant_id="mer_1", amount=2500, currency="BRL", reference="order-1", description=None,
        success_url="https://shop.test/ok", cancel_url="https://shop.test/no", url="https://pay.test/checkout/cs_1",
        payment_method_types=["card"], status=status, payment_id=None, expires_at=NOW, created=NOW, updated=NOW,
    )  # fmt: skip


def _delivery(status: Any) -> WebhookDelivery:
    return WebhookDelivery(
        id="whd_1", merchant_id="mer_1", endpoint_id="we_1", event_id="evt_1", status=status, tries=0,
        next_run_at=None, retry_from=NOW, attempts=0, last_status_code=None, last_error=None, last_attempt_at=None,
        created=NOW, updated=NOW,
    )  # fmt: skip


def _dead_letter(status: Any) -> DeadLetter:
    return DeadLetter(
        id="dl_1", kind="payment", object_id="pay_1", operation="authorize", status=status, tries=8,
        last_error=None, history=[], created=NOW, updated=NOW,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("make", "text", "enum"),
    [
        (_payment, "requires_capture", PaymentStatus.REQUIRES_CAPTURE),
        (_session, "complete", CheckoutStatus.COMPLETE),
        (_delivery, "failed", DeliveryStatus.FAILED),
        (_dead_letter, "retried", DeadLetterStatus.RETRIED),
    ],
)
def test_a_status_read_as_text_becomes_its_enum(make: Any, text: str, enum: Any) -> None:
    record = make(text)
    assert record.status is enum
    assert make(enum).status is enum  # made in code with the enum: the same


@pytest.mark.parametrize("make", [_payment, _session, _delivery, _dead_letter])
def test_an_unknown_status_is_refused(make: Any) -> None:
    with pytest.raises(ValueError, match="is not a valid"):
        make("settled")


def test_the_json_of_an_object_shows_the_status_text() -> None:
    assert orjson.loads(orjson.dumps(payment_object(_payment("requires_action"))))["status"] == "requires_action"
    assert orjson.dumps(session_object(_session("expired"))).count(b'"status":"expired"') == 1
    assert f"payment.{_payment('succeeded').status}" == "payment.succeeded"  # event types are built so


def test_records_from_the_store_are_frozen_and_replace_keeps_the_enum() -> None:
    session = _session("open")
    with pytest.raises(FrozenInstanceError):
        session.status = CheckoutStatus.EXPIRED  # type: ignore[misc]
    assert replace(session, status="expired").status is CheckoutStatus.EXPIRED
