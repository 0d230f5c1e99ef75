"""The card-acquirer simulator, driven in process over ASGI, and Tender's client against it."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tender.processors.base import AuthorizeRequest, CardData, Outcome
from tender.processors.simulator import InvalidSignature, SimulatorProcessor
from tender.simulator import SimulatorConfig
from tender.simulator.notify import sign
from tests.support.serve import serve
from tests.support.simulator import BASE, SECRET, Receiver, Sim, open_sim, ref


def auth_body(number: str = "4242424242424242", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "reference": ref(),
        "payment": "pay_" + uuid.uuid4().hex[:12],
        "amount": 2500,
        "currency": "BRL",
        "capture": True,
        "card": {"number": number, "exp_month": 10, "exp_year": 2030, "cvc": "123", "holder_name": "Leia"},
    }
    body.update(overrides)
    return body


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Sim]:
    s, client = await open_sim(SimulatorConfig(db_path=str(tmp_path / "sim.db"), public_url=BASE, seed=7))
    yield s
    await client.aclose()
    await s.app.state.simulator.aclose()


@pytest.fixture
async def processor(sim: Sim) -> AsyncIterator[SimulatorProcessor]:
    """Tender's client on the same simulator, served on a real loopback port."""
    async with serve(sim.app) as url:
        p = SimulatorProcessor(url, notify_secret=SECRET)
        yield p
        await p.aclose()


# -- test cards -------------------------------------------------------------------------------

TEST_CARDS = [
    # number, status, failure_code, decline_code, brand
    ("4242424242424242", "approved", None, None, "visa"),
    ("5555555555554444", "approved", None, None, "mastercard"),
    ("4000056655665556", "approved", None, None, "visa"),
    ("4000000000000002", "declined", "card_declined", "generic_decline", "visa"),
    ("4000000000009995", "declined", "card_declined", "insufficient_funds", "visa"),
    ("4000000000009987", "declined", "card_declined", "lost_card", "visa"),
    ("4000000000000069", "declined", "expired_card", None, "visa"),
    ("4000000000000127", "declined", "incorrect_cvc", None, "visa"),
    ("4000002760003184", "action_required", None, None, "visa"),
    ("378282246310005", "approved", None, None, "amex"),  # any other Luhn-valid number
]


@pytest.mark.parametrize(("number", "status", "failure_code", "decline_code", "brand"), TEST_CARDS)
async def test_test_card_outcomes(
    sim: Sim, number: str, status: str, failure_code: str | None, decline_code: str | None, brand: str
) -> None:
    body = auth_body(number)
    response = await sim.authorize(body)
    assert response.status_code == 200
    assert "Idempotent-Replayed" not in response.headers
    auth = response.json()
    assert auth["object"] == "authorization"
    assert auth["id"].startswith("sim_")
    assert (auth["reference"], auth["payment"]) == (body["reference"], body["payment"])
    assert (auth["amount"], auth["currency"]) == (2500, "BRL")
    assert auth["status"] == status
    assert auth["failure_code"] == failure_code
    assert auth["decline_code"] == decline_code
    assert auth["captured"] is (status == "approved")
    funding = "debit" if number == "4000056655665556" else "credit"  # the issuer's answer, which Tender applies
    assert auth["card"] == {"brand": brand, "last4": number[-4:], "funding": funding}
    assert isinstance(auth["created"], int)
    if status == "action_required":
        assert auth["redirect_url"] == f"{BASE}/3ds/{auth['id']}"
    else:
        assert auth["redirect_url"] is None
    [record] = await sim.records(body["payment"])
    assert record["status"] == status
    assert record["request_count"] == 1


async def test_capture_false_is_approved_but_not_captured(sim: Sim) -> None:
    auth = (await sim.authorize(auth_body(capture=False))).json()
    assert (auth["status"], auth["captured"], auth["amount_captured"]) == ("approved", False, 0)


async def test_luhn_invalid_and_expired_cards_are_declined(sim: Sim) -> None:
    bad = (await sim.authorize(auth_body("4242424242424241"))).json()
    assert (bad["status"], bad["failure_code"]) == ("declined", "incorrect_number")
    body = auth_body()
    body["card"]["exp_year"] = 2020
    old = (await sim.authorize(body)).json()
    assert (old["status"], old["failure_code"]) == ("declined", "expired_card")


# -- idempotency ------------------------------------------------------------------------------


async def test_same_reference_twice_charges_once(sim: Sim) -> None:
    body = auth_body()
    first = await sim.authorize(body)
    second = await sim.authorize(body)
    assert second.status_code == 200
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    [record] = await sim.records(body["payment"])
    assert record["request_count"] == 2
    stats = await sim.stats()
    assert (stats["requests"], stats["charged"], stats["replays"]) == (2, 1, 1)


async def test_same_reference_different_body_is_409_and_changes_nothing(sim: Sim) -> None:
    body = auth_body()
    await sim.authorize(body)
    response = await sim.authorize({**body, "amount": 9999})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_mismatch"
    other_card = {**body, "card": {**body["card"], "number": "5555555555554444"}}
    assert (await sim.authorize(other_card)).status_code == 409
    [record] = await sim.records(body["payment"])
    assert (record["amount"], record["card_last4"], record["request_count"]) == (2500, "4242", 3)


async def test_idempotency_key_must_match_reference(sim: Sim) -> None:
    body = auth_body()
    response = await sim.http.post("/v1/authorizations", json=body, headers={"Idempotency-Key": "other"})
    assert response.status_code == 400
    assert await sim.records(body["payment"]) == []


def _malformed() -> list[tuple[str, Any, str | None]]:
    def with_card(**card: Any) -> dict[str, Any]:
        body = auth_body()
        body["card"] = {**body["card"], **card}
        return body

    return [
        ("not json", b"{nope", None),
        ("array", [1, 2], None),
        ("no amount", {k: v for k, v in auth_body().items() if k != "amount"}, "amount"),
        ("float amount", auth_body(amount=25.0), "amount"),
        ("bool amount", auth_body(amount=True), "amount"),
        ("zero amount", auth_body(amount=0), "amount"),
        ("lower currency", auth_body(currency="brl"), "currency"),
        ("capture string", auth_body(capture="yes"), "capture"),
        ("no card", auth_body(card=None), "card"),
        ("short number", with_card(number="4242"), "card.number"),
        ("fullwidth digits", with_card(number="\uff14\uff12" * 8), "card.number"),
        ("month 13", with_card(exp_month=13), "card.exp_month"),
        ("cvc letters", with_card(cvc="12a"), "card.cvc"),
        ("bad return_url", auth_body(return_url="javascript:alert(1)"), "return_url"),
    ]


@pytest.mark.parametrize(("case", "body", "param"), _malformed(), ids=[c[0] for c in _malformed()])
async def test_malformed_body_is_400_naming_the_field(sim: Sim, case: str, body: Any, param: str | None) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await sim.http.post("/v1/authorizations", content=content)
    assert response.status_code == 400, case
    error = response.json()["error"]
    assert error["message"]
    assert error.get("param") == param
    assert "4242424242424242" not in response.text
    assert await sim.records() == []


# -- look-up ----------------------------------------------------------------------------------


async def test_lookup_found_and_not_found(sim: Sim) -> None:
    body = auth_body("4000000000009995")
    created = (await sim.authorize(body)).json()
    found = await sim.http.get(f"/v1/authorizations/{body['reference']}")
    assert found.status_code == 200
    assert found.json() == created
    missing = await sim.http.get(f"/v1/authorizations/{ref()}")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


# -- 3-D Secure -------------------------------------------------------------------------------


async def test_3ds_approve_redirects_and_lookup_shows_approved(sim: Sim) -> None:
    body = auth_body("4000002760003184", return_url="https://shop.test/return?x=1")
    auth = (await sim.authorize(body)).json()
    path = auth["redirect_url"].removeprefix(BASE)

    page = await sim.http.get(path)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<title>3-D Secure challenge</title>" in page.text
    assert "25.00 BRL" in page.text
    assert ">Approve</button>" in page.text
    assert ">Decline</button>" in page.text
    assert f'action="{path}"' in page.text

    done = await sim.http.post(path, data={"decision": "approve"})
    assert done.status_code == 303
    assert done.headers["location"] == "https://shop.test/return?x=1"

    after = (await sim.http.get(f"/v1/authorizations/{body['reference']}")).json()
    assert (after["status"], after["captured"], after["redirect_url"]) == ("approved", True, None)

    # A second decision does not change it.
    again = await sim.http.post(path, data={"decision": "decline"})
    assert again.status_code == 303
    final = (await sim.http.get(f"/v1/authorizations/{body['reference']}")).json()
    assert (final["status"], final["failure_code"]) == ("approved", None)


async def test_3ds_decline_without_return_url_shows_done_page(sim: Sim) -> None:
    body = auth_body("4000002760003184", capture=False)
    auth = (await sim.authorize(body)).json()
    path = auth["redirect_url"].removeprefix(BASE)

    done = await sim.http.post(path, data={"decision": "decline"})
    assert done.status_code == 200
    assert "declined" in done.text

    after = (await sim.http.get(f"/v1/authorizations/{body['reference']}")).json()
    assert (after["status"], after["failure_code"], after["captured"]) == ("declined", "authentication_failed", False)

    await sim.http.post(path, data={"decision": "approve"})
    final = (await sim.http.get(f"/v1/authorizations/{body['reference']}")).json()
    assert final["status"] == "declined"
    # The page now only shows the result.
    page = await sim.http.get(path)
    assert ">Approve</button>" not in page.text


async def test_3ds_approve_keeps_capture_false(sim: Sim) -> None:
    body = auth_body("4000002760003184", capture=False)
    auth = (await sim.authorize(body)).json()
    await sim.http.post(auth["redirect_url"].removeprefix(BASE), data={"decision": "approve"})
    after = (await sim.http.get(f"/v1/authorizations/{body['reference']}")).json()
    assert (after["status"], after["captured"]) == ("approved", False)


async def test_3ds_unknown_id_and_bad_decision(sim: Sim) -> None:
    assert (await sim.http.get("/3ds/sim_nope")).status_code == 404
    assert (await sim.http.post("/3ds/sim_nope", data={"decision": "approve"})).status_code == 404
    auth = (await sim.authorize(auth_body("4000002760003184"))).json()
    path = auth["redirect_url"].removeprefix(BASE)
    assert (await sim.http.post(path, data={"decision": "maybe"})).status_code == 400
    assert (await sim.http.get(f"/v1/authorizations/{auth['reference']}")).json()["status"] == "action_required"


# -- faults and admin -------------------------------------------------------------------------


async def test_error_rate_answers_503_and_charges_nothing(sim: Sim) -> None:
    set_ = await sim.http.post("/_sim/config", json={"error_rate": 1.0})
    assert set_.status_code == 200
    assert set_.json()["error_rate"] == 1.0
    body = auth_body()
    response = await sim.authorize(body)
    assert response.status_code == 503
    assert await sim.records() == []
    assert (await sim.http.get(f"/v1/authorizations/{body['reference']}")).status_code == 404
    stats = await sim.stats()
    assert (stats["requests"], stats["charged"], stats["faults"]["error"]) == (1, 0, 1)
    # Look-ups and admin are never faulted; turning it off lets the same reference through.
    await sim.http.post("/_sim/config", json={"error_rate": 0})
    assert (await sim.authorize(body)).json()["status"] == "approved"


async def test_admin_config_is_validated_and_hides_the_secret(sim: Sim) -> None:
    config = (await sim.http.get("/_sim/config")).json()
    assert "notify_secret" not in config
    assert config["timeout_seconds"] == 15.0
    for bad, param in [
        ({"error_rate": 1.5}, "error_rate"),
        ({"drop_rate": -0.1}, "drop_rate"),
        ({"latency_ms": True}, "latency_ms"),
        ({"latency_ms": "10"}, "latency_ms"),
        ({"notify_secret": "x"}, "notify_secret"),
        ({"bogus": 1}, "bogus"),
    ]:
        response = await sim.http.post("/_sim/config", json=bad)
        assert response.status_code == 400, bad
        assert response.json()["error"]["param"] == param
    assert (await sim.http.get("/_sim/config")).json() == config
    assert (await sim.http.get("/healthz")).json() == {"status": "ok"}


async def test_latency_is_applied(sim: Sim) -> None:
    await sim.http.post("/_sim/config", json={"latency_ms": 200, "latency_jitter_ms": 50})
    started = time.monotonic()
    await sim.authorize(auth_body())
    assert time.monotonic() - started >= 0.2
    started = time.monotonic()
    await sim.http.get("/_sim/stats")  # admin is not delayed
    assert time.monotonic() - started < 0.2


# -- card data never leaves ----------------------------------------------------------------------


async def test_card_number_and_cvc_never_appear(sim: Sim, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    cvc = "987"
    texts: list[str] = []
    for number, *_ in TEST_CARDS:
        body = auth_body(number)
        body["card"]["cvc"] = cvc
        response = await sim.authorize(body)
        texts += [response.text, (await sim.authorize(body)).text]  # and the replay
        texts.append((await sim.authorize({**body, "amount": 1})).text)  # and the mismatch
        texts.append((await sim.http.get(f"/v1/authorizations/{body['reference']}")).text)
        if redirect := response.json()["redirect_url"]:
            texts.append((await sim.http.get(redirect.removeprefix(BASE))).text)
            texts.append((await sim.http.post(redirect.removeprefix(BASE), data={"decision": "approve"})).text)
        bad = {**body, "currency": "nope"}
        texts.append((await sim.http.post("/v1/authorizations", json=bad)).text)
    texts += [(await sim.http.get(p)).text for p in ("/_sim/authorizations", "/_sim/stats", "/_sim/config")]
    texts += [r.getMessage() for r in caplog.records]
    stored, cells = _stored(tmp_path)
    assert len(stored) > 0
    assert len(cells) > 100
    for number, *_ in TEST_CARDS:
        assert number.encode() not in stored  # the database file and its WAL, byte for byte
        for text in texts:
            assert number not in text
    assert not any(f'"{cvc}"' in t or f"={cvc}" in t for t in texts)
    # No stored value is the CVC (a raw byte search would trip over random hex ids).
    assert cvc not in cells


def _stored(tmp_path: Path) -> tuple[bytes, list[str]]:
    """The simulator database's raw bytes, and every value in every table as text."""
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("sim.db"))
    db = sqlite3.connect(tmp_path / "sim.db")
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        cells = [str(v) for t in tables for row in db.execute(f"SELECT * FROM {t}") for v in row]
    finally:
        db.close()
    return raw, cells


# -- notifications -----------------------------------------------------------------------------


async def test_notifications_are_signed_retried_and_verify(tmp_path: Path) -> None:
    receiver = Receiver(fail_first=1)
    notify_client = httpx.AsyncClient(transport=httpx.MockTransport(receiver))
    config = SimulatorConfig(public_url=BASE, notify_url="http://tender.test/webhooks/simulator", notify_secret=SECRET)
    sim, client = await open_sim(config, notify_client)
    processor = SimulatorProcessor(BASE, notify_secret=SECRET)
    try:
        body = auth_body("4000002760003184")
        auth = (await sim.authorize(body)).json()
        await receiver.wait_for(2)  # the creation notice: refused once, then delivered
        first, retry = receiver.calls[0], receiver.calls[1]
        assert first.content == retry.content
        event = processor.verify_notification(retry.headers, retry.content)
        assert event["id"].startswith("simevt_")
        assert event["type"] == "authorization.updated"
        assert isinstance(event["created"], int)
        assert event["data"] == auth

        await sim.http.post(auth["redirect_url"].removeprefix(BASE), data={"decision": "approve"})
        await receiver.wait_for(3)
        update = receiver.calls[2]
        event2 = processor.verify_notification(update.headers, update.content)
        assert event2["id"] != event["id"]
        assert (event2["data"]["reference"], event2["data"]["status"]) == (body["reference"], "approved")

        # Tampered body, wrong secret, stale timestamp, missing or garbled header: all refused.
        tampered = update.content.replace(b'"approved"', b'"declined"')
        with pytest.raises(InvalidSignature):
            processor.verify_notification(update.headers, tampered)
        with pytest.raises(InvalidSignature):
            SimulatorProcessor(BASE, notify_secret="other").verify_notification(update.headers, update.content)
        stale = {"Simulator-Signature": sign(SECRET, update.content, int(time.time()) - 301)}
        with pytest.raises(InvalidSignature):
            processor.verify_notification(stale, update.content)
        fresh = {"simulator-signature": sign(SECRET, update.content, int(time.time()) - 30)}
        assert processor.verify_notification(fresh, update.content) == event2
        for headers in ({}, {"Simulator-Signature": "garbage"}, {"Simulator-Signature": f"t={int(time.time())},v1=é"}):
            with pytest.raises(InvalidSignature):
                processor.verify_notification(headers, update.content)

        stats = await sim.stats()
        assert stats["notifications"] == {"sent": 2, "retried": 1, "failed": 0}
    finally:
        await client.aclose()
        await sim.app.state.simulator.aclose()
        await notify_client.aclose()


# -- Tender's client, in process ------------------------------------------------------------


def authorize_request(number: str = "4242424242424242", **overrides: Any) -> AuthorizeRequest:
    fields: dict[str, Any] = {
        "reference": ref(),
        "payment_id": "pay_" + uuid.uuid4().hex[:12],
        "amount": 1999,
        "currency": "USD",
        "capture": True,
        "card": CardData(number, 12, 2031, "321", "Han"),
    }
    fields.update(overrides)
    return AuthorizeRequest(**fields)


async def test_client_reads_the_issuers_funding(processor: SimulatorProcessor) -> None:
    # Tender's BIN table calls 6200000000000047 credit (its range is); the issuer knows it is debit.
    for number, funding in [
        ("6200000000000047", "debit"),
        ("5105105105105100", "prepaid"),
        ("4242424242424242", "credit"),
    ]:
        req = authorize_request(number)
        assert (await processor.authorize(req)).funding == funding
        assert (await processor.lookup(req.reference)).funding == funding


def test_a_record_file_from_before_funding_still_opens(tmp_path: Path) -> None:
    from tender.simulator.store import SimulatorStore

    path = tmp_path / "old.db"
    SimulatorStore(str(path)).close()
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE authorizations DROP COLUMN card_funding")
    store = SimulatorStore(str(path))  # adds the column back
    try:
        with sqlite3.connect(path) as db:
            assert "card_funding" in {r[1] for r in db.execute("PRAGMA table_info(authorizations)")}
    finally:
        store.close()


async def test_client_classifies_answers(sim: Sim, processor: SimulatorProcessor) -> None:
    ok = await processor.authorize(authorize_request())
    assert (ok.outcome, ok.captured) == (Outcome.APPROVED, True)
    assert ok.processor_reference is not None and ok.processor_reference.startswith("sim_")

    declined = await processor.authorize(authorize_request("4000000000009987"))
    assert (declined.outcome, declined.failure_code, declined.decline_code) == (
        Outcome.DECLINED,
        "card_declined",
        "lost_card",
    )
    assert declined.message

    req = authorize_request("4000002760003184", return_url="https://shop.test/back")
    action = await processor.authorize(req)
    assert action.outcome is Outcome.ACTION_REQUIRED
    assert action.redirect_url == f"{BASE}/3ds/{action.processor_reference}"
    looked = await processor.lookup(req.reference)
    assert (looked.outcome, looked.processor_reference) == (Outcome.ACTION_REQUIRED, action.processor_reference)
    assert (await processor.lookup(ref())).outcome is Outcome.NOT_FOUND

    # Same reference, different request: the simulator refuses, the client cannot know: UNKNOWN.
    clash = await processor.authorize(authorize_request(reference=req.reference))
    assert clash.outcome is Outcome.UNKNOWN
    assert clash.message and "409" in clash.message

    # A request the simulator rejects as malformed is final, and its message holds no card data.
    bad = await processor.authorize(authorize_request("4242", card=CardData("42424242", 12, 2031, "321", None)))
    assert (bad.outcome, bad.failure_code) == (Outcome.DECLINED, "processing_error")
    assert "42424242" not in (bad.message or "")

    await sim.http.post("/_sim/config", json={"error_rate": 1.0})
    req = authorize_request()
    assert (await processor.authorize(req)).outcome is Outcome.TRANSIENT
    await sim.http.post("/_sim/config", json={"error_rate": 0.0})
    assert (await processor.lookup(req.reference)).outcome is Outcome.NOT_FOUND


async def test_client_never_raises_when_nothing_listens() -> None:
    processor = SimulatorProcessor("http://127.0.0.1:9", timeout=1.0)  # discard port: refused
    try:
        result = await processor.authorize(authorize_request())
        assert result.outcome is Outcome.TRANSIENT
        assert "4242424242424242" not in (result.message or "")
        assert (await processor.lookup("att_x")).outcome is Outcome.TRANSIENT
    finally:
        await processor.aclose()


# -- captures, cancels, refunds (stretch) -----------------------------------------------------


async def test_capture_refund_cancel(sim: Sim, processor: SimulatorProcessor) -> None:
    req = authorize_request(capture=False)
    auth = await processor.authorize(req)
    assert (auth.outcome, auth.captured) == (Outcome.APPROVED, False)

    refund_early = await processor.refund(ref(), req.reference, 100)
    assert (refund_early.outcome, refund_early.failure_code) == (Outcome.DECLINED, "not_captured")

    cap_ref = ref()
    cap = await processor.capture(cap_ref, req.reference, 1500)
    assert (cap.outcome, cap.captured) == (Outcome.APPROVED, True)
    assert cap.processor_reference is not None and cap.processor_reference.startswith("simop_")
    assert (await processor.capture(cap_ref, req.reference, 1500)).processor_reference == cap.processor_reference
    assert (await processor.capture(cap_ref, req.reference, 1000)).outcome is Outcome.UNKNOWN  # 409
    again = await processor.capture(ref(), req.reference)
    assert (again.outcome, again.failure_code) == (Outcome.DECLINED, "already_captured")

    r1 = await processor.refund(ref(), req.reference, 1000)
    assert r1.outcome is Outcome.APPROVED
    too_much = await processor.refund(ref(), auth.processor_reference or "", 501)
    assert (too_much.outcome, too_much.failure_code) == (Outcome.DECLINED, "amount_too_large")
    rest_ref = ref()
    assert (await processor.refund(rest_ref, req.reference)).outcome is Outcome.APPROVED  # the remaining 500
    assert (await processor.lookup_operation(rest_ref)).outcome is Outcome.APPROVED
    assert (await processor.lookup_operation(ref())).outcome is Outcome.NOT_FOUND

    looked = (await sim.http.get(f"/v1/authorizations/{req.reference}")).json()
    assert (looked["amount_captured"], looked["amount_refunded"]) == (1500, 1500)
    cannot = await processor.cancel(ref(), req.reference)
    assert (cannot.outcome, cannot.failure_code) == (Outcome.DECLINED, "already_captured")

    pending = authorize_request("4000002760003184")
    action = await processor.authorize(pending)
    assert (await processor.cancel(ref(), pending.reference)).outcome is Outcome.APPROVED
    canceled = await processor.lookup(pending.reference)
    assert (canceled.outcome, canceled.failure_code) == (Outcome.DECLINED, "canceled")
    # The shopper's late approval no longer applies.
    await sim.http.post(f"/3ds/{action.processor_reference}", data={"decision": "approve"})
    assert (await processor.lookup(pending.reference)).outcome is Outcome.DECLINED

    missing = await processor.capture(ref(), ref())
    assert missing.outcome is Outcome.DECLINED
    ops = (await sim.http.get("/_sim/operations")).json()["data"]
    assert [o["status"] for o in ops].count("succeeded") == 4
