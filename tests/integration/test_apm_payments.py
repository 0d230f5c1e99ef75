"""Alternative payment methods (upi, wallet, netbanking, bnpl) end to end: the API's checks, the payment pump
against the real simulator (served on a loopback port), the shopper's decision on the simulator's approval
page over HTTP, the simulator's own signed notification into Tender (served on a loopback port too) or, when
it is lost, the pump's look-up; then the payable under the "other methods" fee rule. Real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from tender.services.merchants import create_merchant
from tests.support.api import auth
from tests.support.money import set_fee_plan
from tests.support.payments import attempt_of, authorizer, drain, get, make_due, notification_outcomes, sim_records
from tests.support.refunds import drain_refunds, pump
from tests.support.serve import serve

pytestmark = pytest.mark.integration

RETURN_URL = "https://shop.example/back?order=42"
REDIRECT_METHODS = {
    "wallet": {"type": "wallet", "wallet": {"provider": "paypal"}},
    "netbanking": {"type": "netbanking", "netbanking": {"bank": "HDFC"}},
    "bnpl": {"type": "bnpl", "bnpl": {"provider": "klarna"}},
}


def apm_body(method: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"amount": 2500, "currency": "INR", "payment_method": method, "return_url": RETURN_URL}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


async def create(api: Any, merchant: Any, method: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    r = await api.post("/v1/payments", json=apm_body(method, **overrides), headers=auth(merchant.secret_key))
    assert r.status_code == 202, r.text
    return dict(r.json())


async def waiting_for_shopper(api: Any, container: Any, merchant: Any, method: dict[str, Any]) -> dict[str, Any]:
    """An APM payment the worker has sent: `requires_action`, its next_action the simulator's approval page."""
    created = await create(api, merchant, method)
    await drain(authorizer(container))
    p = await get(api, merchant, created["id"])
    assert p["status"] == "requires_action", p
    assert p["next_action"]["type"] == "redirect_to_url"
    assert httpx.URL(p["next_action"]["url"]).path.startswith("/apm/sim_")
    return p


async def shopper_decides(simulator_url: str, payment: dict[str, Any], decision: str) -> httpx.Response:
    """The shopper on the approval page, over HTTP: the page, then a click on one of its buttons."""
    path = httpx.URL(payment["next_action"]["url"]).path
    async with httpx.AsyncClient(base_url=simulator_url) as sim:
        page = await sim.get(path)
        assert page.status_code == 200
        assert ">Approve</button>" in page.text and ">Decline</button>" in page.text
        return await sim.post(path, data={"decision": decision}, follow_redirects=False)


async def click(simulator_url: str, payment: dict[str, Any], decision: str) -> httpx.Response:
    """A decision posted to a page that may no longer offer one (a second click, a click after a cancel)."""
    async with httpx.AsyncClient(base_url=simulator_url) as sim:
        path = httpx.URL(payment["next_action"]["url"]).path
        return await sim.post(path, data={"decision": decision}, follow_redirects=False)


async def decided(api: Any, merchant: Any, payment_id: str, seconds: float = 10.0) -> dict[str, Any]:
    """The payment once it leaves `requires_action` by itself (a notification), without running the worker."""
    async with asyncio.timeout(seconds):
        while (p := await get(api, merchant, payment_id))["status"] == "requires_action":  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    return p


async def event_types(api: Any, merchant: Any, payment_id: str) -> list[str]:
    r = await api.get(f"/v1/events?object={payment_id}&limit=100", headers=auth(merchant.secret_key))
    return [e["type"] for e in reversed(r.json()["data"])]


@pytest.fixture
async def shop(container: Any) -> Any:
    """A merchant of its own, so its payables and balance are this test's alone."""
    return await create_merchant(container.db, "APM shop")


@pytest.fixture
async def notifying(simulator_app: Any, container: Any) -> AsyncIterator[None]:
    """The simulator notifies a Tender API served on a loopback port (the shared session simulator notifies
    nobody otherwise), and test UPI addresses answer after 0.2 s."""
    from tender.api.app import create_app

    sim = simulator_app.state.simulator
    before = {"notify_url": sim.config.notify_url, "upi_delay_ms": sim.config.upi_delay_ms}
    async with serve(create_app(container)) as tender_url:
        sim.reconfigure({"notify_url": f"{tender_url}/webhooks/simulator", "upi_delay_ms": 200})
        try:
            yield
        finally:
            await sim.notifier.drain(5.0)
            sim.reconfigure(before)


@pytest.fixture
def quick_upi(simulator_app: Any) -> Any:
    sim = simulator_app.state.simulator
    before = sim.config.upi_delay_ms
    sim.reconfigure({"upi_delay_ms": 100})
    yield
    sim.reconfigure({"upi_delay_ms": before})


# -- the API ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "shown"),
    [
        ({"type": "upi", "upi": {"vpa": "Shopper.1@OKHDFC"}}, {"type": "upi", "upi": {"vpa": "shopper.1@okhdfc"}}),
        (REDIRECT_METHODS["wallet"], REDIRECT_METHODS["wallet"]),
        ({"type": "wallet", "wallet": None}, {"type": "wallet", "wallet": {"provider": None}}),
        (REDIRECT_METHODS["netbanking"], REDIRECT_METHODS["netbanking"]),
        ({"type": "netbanking"}, {"type": "netbanking", "netbanking": {"bank": None}}),
        (REDIRECT_METHODS["bnpl"], REDIRECT_METHODS["bnpl"]),
        ({"type": "bnpl", "bnpl": {}}, {"type": "bnpl", "bnpl": {"provider": None}}),
    ],
)
async def test_an_apm_payment_is_accepted_and_shows_its_method(
    api: Any, container: Any, merchant: Any, method: dict[str, Any], shown: dict[str, Any]
) -> None:
    created = await create(api, merchant, method)
    assert (created["status"], created["payment_method"]) == ("processing", shown)
    assert (await get(api, merchant, created["id"]))["payment_method"] == shown
    async with container.db.connection() as conn:
        cur = await conn.execute("SELECT card_id FROM payments WHERE id = %s", (created["id"],))
        assert (await cur.fetchone())["card_id"] is None  # nothing in the vault


async def test_upi_needs_no_return_url(api: Any, merchant: Any) -> None:
    created = await create(api, merchant, {"type": "upi", "upi": {"vpa": "a@upi"}}, return_url=None)
    assert created["return_url"] is None


def _bad_inputs() -> list[tuple[str, dict[str, Any], str, str]]:
    bad, missing, unknown = "parameter_invalid", "parameter_missing", "parameter_unknown"
    pm = "payment_method."

    def upi(vpa: Any, **extra: Any) -> dict[str, Any]:
        return apm_body({"type": "upi", "upi": {"vpa": vpa, **extra}})

    return [
        ("unknown type", apm_body({"type": "crypto"}), pm + "type", bad),
        ("type not a string", apm_body({"type": ["upi"]}), pm + "type", bad),
        ("no type", apm_body({"upi": {"vpa": "a@upi"}}), pm + "type", bad),
        ("upi without upi", apm_body({"type": "upi"}), pm + "upi", missing),
        ("upi without vpa", apm_body({"type": "upi", "upi": {}}), pm + "upi.vpa", missing),
        ("vpa without @", upi("shopper"), pm + "upi.vpa", bad),
        ("vpa two @", upi("a@b@upi"), pm + "upi.vpa", bad),
        ("vpa space", upi("a b@upi"), pm + "upi.vpa", bad),
        ("vpa number", upi(42), pm + "upi.vpa", bad),
        ("vpa too long", upi("a" * 300 + "@upi"), pm + "upi.vpa", bad),
        ("unknown upi key", upi("a@upi", pin="1234"), pm + "upi.pin", unknown),
        ("card in upi", apm_body({"type": "upi", "upi": {"vpa": "a@upi"}, "card": {}}), pm + "card", unknown),
        ("unknown provider", apm_body({"type": "wallet", "wallet": {"provider": "btc"}}), pm + "wallet.provider", bad),
        ("unknown bank", apm_body({"type": "netbanking", "netbanking": {"bank": "hdfc"}}), pm + "netbanking.bank", bad),
        ("bank in wallet", apm_body({"type": "wallet", "wallet": {"bank": "HDFC"}}), pm + "wallet.bank", unknown),
        ("wallet not an object", apm_body({"type": "wallet", "wallet": "paypal"}), pm + "wallet", bad),
        ("bnpl provider number", apm_body({"type": "bnpl", "bnpl": {"provider": 1}}), pm + "bnpl.provider", bad),
        ("wallet, no return_url", apm_body(REDIRECT_METHODS["wallet"], return_url=None), "return_url", missing),
        ("netbanking, no return_url", apm_body({"type": "netbanking"}, return_url=None), "return_url", missing),
        ("bnpl, no return_url", apm_body(REDIRECT_METHODS["bnpl"], return_url=None), "return_url", missing),
        ("bad return_url", apm_body(REDIRECT_METHODS["bnpl"], return_url="javascript:x"), "return_url", bad),
    ]


@pytest.mark.parametrize(("case", "body", "param", "code"), _bad_inputs(), ids=[c[0] for c in _bad_inputs()])
async def test_bad_apm_input_is_400_naming_the_param(
    api: Any, merchant: Any, case: str, body: dict[str, Any], param: str, code: str
) -> None:
    r = await api.post("/v1/payments", json=body, headers=auth(merchant.secret_key))
    assert r.status_code == 400, (case, r.text)
    error = r.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code), case
    assert param.rsplit(".", 1)[-1] in error["message"]
    listed = await api.get("/v1/payments?limit=1", headers=auth(merchant.secret_key))
    assert listed.json()["data"] == []  # nothing was stored


# -- redirect methods: the approval page, then the notification or the look-up ----------------------


@pytest.mark.parametrize("kind", ["wallet", "netbanking", "bnpl"])
async def test_approved_on_the_page_succeeds_by_the_notification(
    api: Any, container: Any, merchant: Any, simulator_url: str, simulator_app: Any, notifying: None, kind: str
) -> None:
    p = await waiting_for_shopper(api, container, merchant, REDIRECT_METHODS[kind])
    back = await shopper_decides(simulator_url, p, "approve")
    assert (back.status_code, back.headers["location"]) == (303, RETURN_URL)
    done = await decided(api, merchant, p["id"])  # the worker is not run: only the notification can do it
    assert (done["status"], done["amount_captured"], done["next_action"], done["failure_code"]) == (
        "succeeded",
        2500,
        None,
        None,
    )
    reference = (await attempt_of(container, p["id"]))["id"]
    assert "applied" in await notification_outcomes(container, reference)
    assert await event_types(api, merchant, p["id"]) == ["payment.requires_action", "payment.succeeded"]
    # A second click changes nothing, at the simulator or here; the simulator charged once.
    again = await click(simulator_url, p, "decline")
    assert again.status_code == 303
    [record] = await sim_records(simulator_app, p["id"])
    assert (record["status"], record["captured"], record["request_count"], record["method"]) == (
        "approved",
        True,
        1,
        kind,
    )
    await simulator_app.state.simulator.notifier.drain(5.0)
    assert (await get(api, merchant, p["id"]))["status"] == "succeeded"


@pytest.mark.parametrize("kind", ["wallet", "netbanking", "bnpl"])
async def test_declined_on_the_page_fails_by_the_notification(
    api: Any, container: Any, merchant: Any, simulator_url: str, notifying: None, kind: str
) -> None:
    p = await waiting_for_shopper(api, container, merchant, REDIRECT_METHODS[kind])
    back = await shopper_decides(simulator_url, p, "decline")
    assert back.status_code == 303
    done = await decided(api, merchant, p["id"])
    assert (done["status"], done["failure_code"], done["decline_code"], done["amount_captured"]) == (
        "failed",
        "payment_method_provider_decline",
        f"{kind}_declined",
        0,
    )
    assert done["failure_message"]
    assert await event_types(api, merchant, p["id"]) == ["payment.requires_action", "payment.failed"]


@pytest.mark.parametrize(("kind", "decision", "status"), [
    ("wallet", "approve", "succeeded"),
    ("netbanking", "approve", "succeeded"),
    ("bnpl", "approve", "succeeded"),
    ("wallet", "decline", "failed"),
])  # fmt: skip
async def test_a_lost_notification_is_made_up_by_the_lookup(
    api: Any, container: Any, merchant: Any, simulator_url: str, kind: str, decision: str, status: str
) -> None:
    p = await waiting_for_shopper(api, container, merchant, REDIRECT_METHODS[kind])  # the simulator notifies nobody
    await shopper_decides(simulator_url, p, decision)
    await make_due(container, p["id"])  # the look-up time has come
    await drain(authorizer(container))
    done = await get(api, merchant, p["id"])
    assert (done["status"], done["next_action"]) == (status, None)
    reference = (await attempt_of(container, p["id"]))["id"]
    assert await notification_outcomes(container, reference) == []
    assert await event_types(api, merchant, p["id"]) == ["payment.requires_action", f"payment.{status}"]


async def test_cancel_while_waiting_for_the_shopper(
    api: Any, container: Any, merchant: Any, simulator_url: str, simulator_app: Any
) -> None:
    p = await waiting_for_shopper(api, container, merchant, REDIRECT_METHODS["bnpl"])
    r = await api.post(f"/v1/payments/{p['id']}/cancel", headers=auth(merchant.secret_key))
    assert r.status_code == 202
    await drain(authorizer(container))
    assert (await get(api, merchant, p["id"]))["status"] == "canceled"
    late = await click(simulator_url, p, "approve")  # too late: the approval no longer applies
    assert late.status_code == 303
    [record] = await sim_records(simulator_app, p["id"])
    assert (record["status"], record["captured"]) == ("canceled", False)


async def test_manual_capture_of_an_apm(api: Any, container: Any, merchant: Any, simulator_url: str) -> None:
    created = await create(api, merchant, REDIRECT_METHODS["wallet"], capture=False)
    await drain(authorizer(container))
    p = await get(api, merchant, created["id"])
    await shopper_decides(simulator_url, p, "approve")
    await make_due(container, p["id"])
    await drain(authorizer(container))
    assert (await get(api, merchant, p["id"]))["status"] == "requires_capture"
    r = await api.post(f"/v1/payments/{p['id']}/capture", json={"amount": 1000}, headers=auth(merchant.secret_key))
    assert r.status_code == 202
    await drain(authorizer(container))
    done = await get(api, merchant, p["id"])
    assert (done["status"], done["amount_captured"]) == ("succeeded", 1000)


# -- UPI collect requests: the test addresses answer without a page ---------------------------------


@pytest.mark.parametrize(
    ("vpa", "status", "decline_code"), [("success@upi", "succeeded", None), ("failure@upi", "failed", "upi_declined")]
)
async def test_upi_test_address_answers_by_notification(
    api: Any, container: Any, shop: Any, notifying: None, vpa: str, status: str, decline_code: str | None
) -> None:
    created = await create(api, shop, {"type": "upi", "upi": {"vpa": vpa}}, return_url=None)
    await drain(authorizer(container))
    done = await decided(api, shop, created["id"])
    assert (done["status"], done["decline_code"], done["next_action"]) == (status, decline_code, None)
    if status == "failed":
        assert done["failure_code"] == "payment_method_provider_decline"
    assert await event_types(api, shop, created["id"]) == ["payment.requires_action", f"payment.{status}"]


@pytest.mark.parametrize(("vpa", "status"), [("success@upi", "succeeded"), ("failure@upi", "failed")])
async def test_upi_test_address_answer_found_by_lookup(
    api: Any, container: Any, merchant: Any, quick_upi: None, vpa: str, status: str
) -> None:
    created = await create(api, merchant, {"type": "upi", "upi": {"vpa": vpa}})
    await drain(authorizer(container))
    p = await get(api, merchant, created["id"])
    assert p["status"] == "requires_action"  # the shopper's UPI app has not answered yet
    await asyncio.sleep(0.3)
    await make_due(container, p["id"])
    await drain(authorizer(container))
    assert (await get(api, merchant, p["id"]))["status"] == status


async def test_upi_other_address_waits_for_the_page(
    api: Any, container: Any, merchant: Any, simulator_url: str, notifying: None
) -> None:
    p = await waiting_for_shopper(api, container, merchant, {"type": "upi", "upi": {"vpa": "shopper@okaxis"}})
    back = await shopper_decides(simulator_url, p, "approve")
    assert (back.status_code, back.headers["location"]) == (303, RETURN_URL)
    assert (await decided(api, merchant, p["id"]))["status"] == "succeeded"


# -- money --------------------------------------------------------------------------------------------


async def test_an_apm_capture_earns_the_other_methods_payable(
    api: Any, container: Any, shop: Any, settings: Any, notifying: None
) -> None:
    created = await create(api, shop, {"type": "upi", "upi": {"vpa": "success@upi"}}, amount=12345)
    await drain(authorizer(container))
    assert (await decided(api, shop, created["id"]))["status"] == "succeeded"
    r = await api.get(f"/v1/payables?payment={created['id']}", headers=auth(shop.secret_key))
    [payable] = r.json()["data"]
    today = datetime.now(settings.business_tz).date()
    # API.md's default plan: other methods 2 % (246.9 rounds half up to 247), waiting_funds, +2 days.
    assert (payable["amount"], payable["fee"], payable["net"], payable["currency"]) == (12345, 247, 12098, "INR")
    assert (payable["status"], payable["payment_method"], payable["funding"]) == ("waiting_funds", "upi", "other")
    assert payable["payment_date"] == (today + timedelta(days=2)).isoformat()
    balance = (await api.get("/v1/balance", headers=auth(shop.secret_key))).json()
    assert balance["waiting_funds"] == [{"currency": "INR", "amount": 12098}]


async def test_a_method_rule_of_the_fee_plan_applies_to_its_apm(
    api: Any, container: Any, shop: Any, settings: Any, simulator_url: str
) -> None:
    await set_fee_plan(
        api,
        settings,
        shop.merchant.id,
        [
            {"payment_method": "wallet", "funding": "*", "percent": "1.5", "delay_days": 1, "starts": "waiting_funds"},
            {"payment_method": "*", "funding": "*", "percent": "9", "delay_days": 9, "starts": "waiting_funds"},
        ],
    )
    wallet = await waiting_for_shopper(api, container, shop, REDIRECT_METHODS["wallet"])
    bnpl = await waiting_for_shopper(api, container, shop, REDIRECT_METHODS["bnpl"])
    for p in (wallet, bnpl):
        await shopper_decides(simulator_url, p, "approve")
        await make_due(container, p["id"])
    await drain(authorizer(container))
    today = datetime.now(settings.business_tz).date()
    fees = {}
    for p in (wallet, bnpl):
        r = await api.get(f"/v1/payables?payment={p['id']}", headers=auth(shop.secret_key))
        [payable] = r.json()["data"]
        fees[payable["payment_method"]] = (payable["fee"], payable["funding"], payable["payment_date"])
    assert fees == {
        "wallet": (38, "other", (today + timedelta(days=1)).isoformat()),  # 37.5 rounds half up
        "bnpl": (225, "other", (today + timedelta(days=9)).isoformat()),
    }


async def test_an_apm_refund(api: Any, container: Any, shop: Any, simulator_url: str) -> None:
    p = await waiting_for_shopper(api, container, shop, REDIRECT_METHODS["netbanking"])
    await shopper_decides(simulator_url, p, "approve")
    await make_due(container, p["id"])
    await drain(authorizer(container))
    r = await api.post("/v1/refunds", json={"payment": p["id"], "amount": 500}, headers=auth(shop.secret_key))
    assert r.status_code == 202, r.text
    await drain_refunds(pump(container))
    done = await get(api, shop, p["id"])
    assert (done["status"], done["amount_refunded"]) == ("succeeded", 500)
