"""Issue 11, finding 6: "The hosted page tells a card tester why a card was declined (lost card, incorrect CVC):
show the shopper a generic decline." The precise decline_code still goes to the merchant (API and events)."""

from __future__ import annotations

import html
from typing import Any

import pytest

from tender.domain.transitions import DECLINE_MESSAGES
from tests.support.api import auth
from tests.support.checkout import FORM, card_form, events_of, new_session, page_path
from tests.support.payments import authorizer, drain

pytestmark = pytest.mark.integration

GENERIC = "Your card was declined. Try another card."
# Each test card's precise reason, as the processor gave it to Tender.
DECLINES = [
    ("4000000000009987", "card_declined", "lost_card"),
    ("4000000000009995", "card_declined", "insufficient_funds"),
    ("4000000000000127", "incorrect_cvc", None),
    ("4000000000000069", "expired_card", None),
]
REASON_WORDS = ("lost", "stolen", "insufficient", "funds", "incorrect", "expired", "reported", "cvc")


@pytest.mark.parametrize(("number", "failure_code", "decline_code"), DECLINES)
async def test_the_shopper_sees_only_a_generic_decline_and_the_merchant_the_reason(
    api: Any, container: Any, merchant: Any, number: str, failure_code: str, decline_code: str | None
) -> None:
    session = await new_session(api, merchant)
    path = page_path(session)
    assert (await api.post(path + "/pay", content=card_form(number), headers=FORM)).status_code == 303
    await drain(authorizer(container))

    page = await api.get(path)
    assert page.status_code == 200 and 'id="pay-form"' in page.text  # the shopper may try another card
    alert = page.text.split('id="form-error">', 1)[1].split("</p>", 1)[0]
    assert alert == GENERIC
    text = html.unescape(page.text).lower()
    for message in DECLINE_MESSAGES.values():
        assert message.lower() not in text
    assert not [w for w in REASON_WORDS if w in alert.lower()]
    assert failure_code not in text and (decline_code is None or decline_code not in text)
    status = (await api.get(path + "/status")).json()  # the page's polling tells no more
    assert status == {"status": "open", "payment_status": "failed"}

    h = auth(merchant.secret_key)
    [payment] = (await api.get("/v1/payments", headers=h)).json()["data"]
    assert (payment["status"], payment["failure_code"], payment["decline_code"]) == (
        "failed",
        failure_code,
        decline_code,
    )
    [event] = await events_of(api, merchant, "payment.failed")
    assert (event["data"]["object"]["failure_code"], event["data"]["object"]["decline_code"]) == (
        failure_code,
        decline_code,
    )
