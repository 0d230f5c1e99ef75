"""The simulator's alternative payment methods, in process: approval pages, UPI collect requests decided by
the test addresses, idempotent decisions, notifications, look-ups, and Tender's client sending them."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tender.processors.base import AuthorizeRequest, CardData, Outcome
from tender.processors.simulator import SimulatorProcessor
from tender.simulator import SimulatorConfig
from tender.simulator.store import SimulatorStore
from tests.support.simulator import BASE, SECRET, Receiver, Sim, open_sim, ref

RETURN_URL = "https://shop.test/back?order=7"
REDIRECT_METHODS = [
    ({"type": "wallet", "wallet": {"provider": "paypal"}}, "PayPal"),
    ({"type": "netbanking", "netbanking": {"bank": "HDFC"}}, "HDFC Bank"),
    ({"type": "bnpl", "bnpl": {"provider": "klarna"}}, "Klarna"),
    ({"type": "wallet"}, "Wallet"),  # the detail is optional
]


def apm_body(method: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "reference": ref(),
        "payment": "pay_" + uuid.uuid4().hex[:12],
        "amount": 2500,
        "currency": "INR",
        "capture": True,
        "method": method,
        "return_url": RETURN_URL,
    }
    body.update(overrides)
    return body


def upi(vpa: str, **overrides: Any) -> dict[str, Any]:
    return apm_body({"type": "upi", "upi": {"vpa": vpa}}, **overrides)


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Sim]:
    s, client = await open_sim(SimulatorConfig(db_path=str(tmp_path / "sim.db"), public_url=BASE))
    yield s
    await client.aclose()
    await s.app.state.simulator.aclose()


UPI_DELAY_MS = 500


@pytest.fixture
async def notified(tmp_path: Path) -> AsyncIterator[tuple[Sim, Receiver]]:
    """A simulator that notifies a receiver (which answers 204 at once), with a short UPI delay (long enough
    that a busy machine still reads the page before the address decides: 100 ms was not)."""
    receiver = Receiver(fail_first=0)
    notify_client = httpx.AsyncClient(transport=httpx.MockTransport(receiver))
    config = SimulatorConfig(
        db_path=str(tmp_path / "sim.db"),
        public_url=BASE,
        notify_url="http://tender.test/webhooks/simulator",
        notify_secret=SECRET,
        notify_on_create=False,  # only the decisions, so the counts below are exact
        upi_delay_ms=UPI_DELAY_MS,
    )
    sim, client = await open_sim(config, notify_client)
    yield sim, receiver
    await client.aclose()
    await sim.app.state.simulator.aclose()
    await notify_client.aclose()


async def lookup(sim: Sim, reference: str) -> dict[str, Any]:
    response = await sim.http.get(f"/v1/authorizations/{reference}")
    assert response.status_code == 200
    data: dict[str, Any] = response.json()
    return data


def events(receiver: Receiver) -> list[dict[str, Any]]:
    processor = SimulatorProcessor(BASE, notify_secret=SECRET)
    return [processor.verify_notification(c.headers, c.content) for c in receiver.calls]


# -- redirect methods: wallet, netbanking, bnpl ----------------------------------------------------


@pytest.mark.parametrize(("method", "provider"), REDIRECT_METHODS, ids=lambda v: str(v)[:30])
async def test_redirect_method_waits_for_its_page_and_approval_is_applied_once(
    notified: tuple[Sim, Receiver], method: dict[str, Any], provider: str
) -> None:
    sim, receiver = notified
    body = apm_body(method)
    auth = (await sim.authorize(body)).json()
    kind = method["type"]
    assert (auth["status"], auth["captured"], auth["card"]) == ("action_required", False, None)
    assert auth["method"] == {"type": kind, kind: method.get(kind) or {"provider": None}}
    assert auth["redirect_url"] == f"{BASE}/apm/{auth['id']}"
    path = auth["redirect_url"].removeprefix(BASE)

    page = await sim.http.get(path)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert provider in page.text
    assert "25.00 INR" in page.text
    assert '<html lang="en">' in page.text and "<h1>" in page.text
    # Real buttons in forms: keyboard-operable and submitted without JavaScript, described by the summary.
    assert "<script" not in page.text
    assert page.text.count('<form method="post"') == 2
    assert f'action="{path}"' in page.text
    assert 'id="approve" aria-describedby="summary">Approve</button>' in page.text
    assert 'id="decline" aria-describedby="summary">Decline</button>' in page.text
    assert 'id="summary"' in page.text

    done = await sim.http.post(path, data={"decision": "approve"})
    assert (done.status_code, done.headers["location"]) == (303, RETURN_URL)
    after = await lookup(sim, body["reference"])
    assert (after["status"], after["captured"], after["amount_captured"], after["redirect_url"]) == (
        "approved",
        True,
        2500,
        None,
    )

    # A second click (either button) changes nothing and notifies nothing.
    again = await sim.http.post(path, data={"decision": "decline"})
    assert (again.status_code, again.headers["location"]) == (303, RETURN_URL)
    assert (await lookup(sim, body["reference"]))["status"] == "approved"
    page = await sim.http.get(path)
    assert ">Approve</button>" not in page.text and "approved" in page.text
    await sim.app.state.simulator.notifier.drain()
    [event] = events(receiver)
    assert event["data"] == after
    [record] = await sim.records(body["payment"])
    assert (record["request_count"], record["method"], record["card_last4"]) == (1, kind, "")
    stats = await sim.stats()
    assert (stats["charged"], stats["replays"]) == (1, 0)


@pytest.mark.parametrize("kind", ["wallet", "netbanking", "bnpl"])
async def test_redirect_method_decline(notified: tuple[Sim, Receiver], kind: str) -> None:
    sim, receiver = notified
    body = apm_body({"type": kind})
    auth = (await sim.authorize(body)).json()
    done = await sim.http.post(f"/apm/{auth['id']}", data={"decision": "decline"})
    assert done.status_code == 303
    after = await lookup(sim, body["reference"])
    assert (after["status"], after["captured"], after["failure_code"], after["decline_code"]) == (
        "declined",
        False,
        "payment_method_provider_decline",
        f"{kind}_declined",
    )
    assert after["message"]
    await sim.http.post(f"/apm/{auth['id']}", data={"decision": "approve"})
    assert (await lookup(sim, body["reference"]))["status"] == "declined"
    await sim.app.state.simulator.notifier.drain()
    assert [e["data"]["status"] for e in events(receiver)] == ["declined"]


async def test_approval_with_capture_false_is_authorized_only(sim: Sim) -> None:
    body = apm_body({"type": "bnpl", "bnpl": {"provider": "affirm"}}, capture=False)
    auth = (await sim.authorize(body)).json()
    await sim.http.post(f"/apm/{auth['id']}", data={"decision": "approve"})
    after = await lookup(sim, body["reference"])
    assert (after["status"], after["captured"], after["amount_captured"]) == ("approved", False, 0)


async def test_pages_refuse_the_other_kind_and_bad_decisions(sim: Sim) -> None:
    card = (await sim.authorize({**apm_body({"type": "wallet"}), "method": None, "card": _card()})).json()
    wallet = (await sim.authorize(apm_body({"type": "wallet"}))).json()
    assert card["status"] == "approved"
    assert (await sim.http.get(f"/apm/{card['id']}")).status_code == 404
    assert (await sim.http.post(f"/apm/{card['id']}", data={"decision": "approve"})).status_code == 404
    assert (await sim.http.get(f"/3ds/{wallet['id']}")).status_code == 404
    assert (await sim.http.post(f"/3ds/{wallet['id']}", data={"decision": "approve"})).status_code == 404
    assert (await sim.http.get("/apm/sim_nope")).status_code == 404
    assert (await sim.http.post(f"/apm/{wallet['id']}", data={"decision": "maybe"})).status_code == 400
    assert (await lookup(sim, wallet["reference"]))["status"] == "action_required"


async def test_page_without_return_url_shows_the_result(sim: Sim) -> None:
    body = upi("shopper@okhdfc")
    del body["return_url"]
    auth = (await sim.authorize(body)).json()
    page = await sim.http.get(f"/apm/{auth['id']}")
    assert "UPI collect request" in page.text and "shopper@okhdfc" in page.text
    assert ">Approve</button>" in page.text and 'http-equiv="refresh"' not in page.text
    done = await sim.http.post(f"/apm/{auth['id']}", data={"decision": "decline"})
    assert done.status_code == 200
    assert "declined" in done.text
    after = await lookup(sim, body["reference"])
    assert (after["status"], after["decline_code"]) == ("declined", "upi_declined")


def _card() -> dict[str, Any]:
    return {"number": "4242424242424242", "exp_month": 10, "exp_year": 2030, "cvc": "123"}


# -- UPI collect requests decided by the test addresses ---------------------------------------------


@pytest.mark.parametrize(
    ("vpa", "status", "decline_code"),
    [("success@upi", "approved", None), ("failure@upi", "declined", "upi_declined"), ("Success@UPI", "approved", None)],
)
async def test_upi_test_address_decides_on_its_own_after_the_delay(
    notified: tuple[Sim, Receiver], vpa: str, status: str, decline_code: str | None
) -> None:
    sim, receiver = notified
    body = upi(vpa)
    del body["return_url"]  # a collect request needs no return_url
    started = time.monotonic()
    auth = (await sim.authorize(body)).json()
    assert auth["status"] == "action_required"
    assert auth["method"] == {"type": "upi", "upi": {"vpa": vpa}}
    path = auth["redirect_url"].removeprefix(BASE)
    page = await sim.http.get(path)
    assert 'http-equiv="refresh"' in page.text and ">Approve</button>" not in page.text
    # A click cannot pre-empt the address's own answer.
    refused = await sim.http.post(path, data={"decision": "decline" if status == "approved" else "approve"})
    assert refused.status_code == 409
    assert (await lookup(sim, body["reference"]))["status"] == "action_required"

    await receiver.wait_for(1)
    assert time.monotonic() - started >= UPI_DELAY_MS / 1000 - 0.01
    after = await lookup(sim, body["reference"])
    assert (after["status"], after["decline_code"], after["captured"]) == (status, decline_code, status == "approved")
    [event] = events(receiver)
    assert event["data"] == after
    page = await sim.http.get(path)
    assert 'http-equiv="refresh"' not in page.text and status in page.text


async def test_upi_decision_is_applied_by_a_lookup_when_the_timer_is_lost(notified: tuple[Sim, Receiver]) -> None:
    sim, receiver = notified
    body = upi("success@upi")
    await sim.authorize(body)
    for timer in list(sim.app.state.simulator._timers):  # what a restart of the simulator does
        timer.cancel()
    assert (await lookup(sim, body["reference"]))["status"] == "action_required"  # not due yet
    await asyncio.sleep(UPI_DELAY_MS / 1000 + 0.05)
    assert (await lookup(sim, body["reference"]))["status"] == "approved"
    assert (await lookup(sim, body["reference"]))["status"] == "approved"
    await sim.app.state.simulator.notifier.drain()
    assert [e["data"]["status"] for e in events(receiver)] == ["approved"]  # once


async def test_upi_canceled_before_its_answer_stays_canceled(notified: tuple[Sim, Receiver]) -> None:
    sim, receiver = notified
    body = upi("success@upi")
    await sim.authorize(body)
    cancel_ref = ref()
    cancel = await sim.http.post(
        f"/v1/authorizations/{body['reference']}/cancel",
        json={"reference": cancel_ref},
        headers={"Idempotency-Key": cancel_ref},
    )
    assert cancel.json()["status"] == "succeeded"
    await asyncio.sleep(0.2)
    after = await lookup(sim, body["reference"])
    assert (after["status"], after["captured"]) == ("canceled", False)
    await sim.app.state.simulator.notifier.drain()
    assert receiver.calls == []


async def test_apm_replay_and_mismatch(sim: Sim) -> None:
    body = upi("shopper@okicici")
    first = await sim.authorize(body)
    second = await sim.authorize(body)
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert (await sim.authorize(upi("other@okicici", reference=body["reference"]))).status_code == 409
    assert (await sim.authorize({**body, "method": {"type": "wallet"}})).status_code == 409
    [record] = await sim.records(body["payment"])
    assert (record["request_count"], record["method_details"]) == (4, {"vpa": "shopper@okicici"})
    stats = await sim.stats()
    assert (stats["charged"], stats["replays"], stats["mismatches"]) == (1, 1, 2)


def _bad_methods() -> list[tuple[str, dict[str, Any], str]]:
    return [
        ("method not an object", apm_body("upi"), "method"),  # type: ignore[arg-type]
        ("unknown type", apm_body({"type": "crypto"}), "method.type"),
        ("card and method", {**apm_body({"type": "wallet"}), "card": _card()}, "method"),
        ("unknown method key", apm_body({"type": "wallet", "extra": 1}), "method.extra"),
        ("sub not an object", apm_body({"type": "wallet", "wallet": "paypal"}), "method.wallet"),
        ("unknown sub key", apm_body({"type": "wallet", "wallet": {"bank": "x"}}), "method.wallet.bank"),
        ("upi without vpa", apm_body({"type": "upi"}), "method.upi.vpa"),
        ("vpa without handle", upi("shopper"), "method.upi.vpa"),
        ("vpa with space", upi("a b@upi"), "method.upi.vpa"),
        ("vpa numeric handle", upi("shopper@123"), "method.upi.vpa"),
        ("no return_url", {k: v for k, v in apm_body({"type": "bnpl"}).items() if k != "return_url"}, "return_url"),
    ]


@pytest.mark.parametrize(("case", "body", "param"), _bad_methods(), ids=[c[0] for c in _bad_methods()])
async def test_malformed_method_is_400_naming_the_field(sim: Sim, case: str, body: dict[str, Any], param: str) -> None:
    response = await sim.http.post("/v1/authorizations", content=json.dumps(body).encode())
    assert response.status_code == 400, case
    assert response.json()["error"]["param"] == param
    assert await sim.records() == []


async def test_upi_delay_is_a_runtime_setting(sim: Sim) -> None:
    assert (await sim.http.get("/_sim/config")).json()["upi_delay_ms"] == 1500
    assert (await sim.http.post("/_sim/config", json={"upi_delay_ms": 10})).json()["upi_delay_ms"] == 10
    for bad in (-1, 1.5, True, "10"):
        response = await sim.http.post("/_sim/config", json={"upi_delay_ms": bad})
        assert response.status_code == 400
        assert response.json()["error"]["param"] == "upi_delay_ms"


def test_a_record_file_from_before_apms_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    store_module = Path(__file__).parents[2] / "src/tender/simulator/store.py"
    schema = re.search(r'_SCHEMA = """(.*?)"""', store_module.read_text(), re.S)
    assert schema is not None
    old = re.sub(r",\s*method TEXT[^\n]*\n\s*method_details TEXT,\n\s*decide_at INTEGER", "", schema.group(1))
    assert "decide_at" not in old
    db.executescript(old)
    db.execute(
        "INSERT INTO authorizations (id, reference, payment, amount, currency, capture, status, captured,"
        " card_brand, card_last4, request_hash, created, updated)"
        " VALUES ('sim_1', 'att_1', 'pay_1', 100, 'BRL', 1, 'approved', 1, 'visa', '4242', 'h', 1, 1)"
    )
    db.commit()
    db.close()
    store = SimulatorStore(str(path))
    try:
        record = store.authorization_by_reference("att_1")
        assert record is not None
        assert (record.method, record.method_details, record.decide_at, record.card_last4) == (
            "card",
            None,
            None,
            "4242",
        )
    finally:
        store.close()


# -- Tender's client ----------------------------------------------------------------------------


async def test_client_sends_apms_without_a_card(sim: Sim) -> None:
    from tests.support.serve import serve

    async with serve(sim.app) as url:
        processor = SimulatorProcessor(url, notify_secret=SECRET)
        try:
            request = AuthorizeRequest(
                reference=ref(),
                payment_id="pay_" + uuid.uuid4().hex[:12],
                amount=1999,
                currency="INR",
                capture=True,
                method={"type": "netbanking", "netbanking": {"bank": "SBI"}},
                return_url=RETURN_URL,
            )
            result = await processor.authorize(request)
            assert result.outcome is Outcome.ACTION_REQUIRED
            assert result.redirect_url == f"{BASE}/apm/{result.processor_reference}"
            await sim.http.post(f"/apm/{result.processor_reference}", data={"decision": "decline"})
            looked = await processor.lookup(request.reference)
            assert (looked.outcome, looked.failure_code, looked.decline_code) == (
                Outcome.DECLINED,
                "payment_method_provider_decline",
                "netbanking_declined",
            )
        finally:
            await processor.aclose()


def test_authorize_request_needs_exactly_one_of_card_and_method() -> None:
    common: dict[str, Any] = {
        "reference": "att_1",
        "payment_id": "pay_1",
        "amount": 1,
        "currency": "INR",
        "capture": True,
    }
    with pytest.raises(ValueError, match="exactly one"):
        AuthorizeRequest(**common)
    with pytest.raises(ValueError, match="exactly one"):
        AuthorizeRequest(**common, card=CardData("4242424242424242", 1, 2030, None, None), method={"type": "upi"})
