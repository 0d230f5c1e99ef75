"""Routing rules per merchant (issue 14, item 1) over the in-process API: PUT/GET /admin/v1/merchants/{id}/routing,
400s naming the field with nothing written, and payments (API and hosted page) accepted with the processor and
route the merchant's rules choose, the default without rules, and never another merchant's rules.

Three processors are on here: `simulator`, `simulator_b` (a second simulator processor on the same simulator
service) and `stripe` (a client that is never called: only cards may be routed to it, and no payment here is)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tender.processors.simulator import SimulatorProcessor
from tender.processors.stripe import StripeProcessor
from tests.support.api import auth, card_payment
from tests.support.checkout import FORM, card_form, new_session, page_path
from tests.support.money import admin
from tests.support.payments import authorizer, drain

pytestmark = pytest.mark.integration

UPI = {"type": "upi", "upi": {"vpa": "success@upi"}}
WALLET = {"type": "wallet", "wallet": {"provider": "paypal"}}
RETURN_URL = "https://shop.example/back"
MASTERCARD = card_payment("5555555555554444")["payment_method"]


@pytest.fixture(scope="module")
async def routed(container: Any, simulator_url: str) -> AsyncIterator[Any]:
    """The session's container with three processors on (same database, vault and settings)."""
    c = dataclasses.replace(
        container,
        processors={
            "simulator": container.processors["simulator"],
            "simulator_b": SimulatorProcessor(simulator_url, name="simulator_b"),
            "stripe": StripeProcessor("sk_test_never_called", api_base="http://127.0.0.1:9"),
        },
    )
    yield c
    await c.processors["simulator_b"].aclose()
    await c.processors["stripe"].aclose()


@pytest.fixture(scope="module")
async def rapi(routed: Any) -> AsyncIterator[httpx.AsyncClient]:
    from tender.api.app import create_app

    app = create_app(routed)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tender.test") as client:
        yield client


def _path(merchant_id: str) -> str:
    return f"/admin/v1/merchants/{merchant_id}/routing"


async def put_rules(api: httpx.AsyncClient, settings: Any, merchant_id: str, rules: Any) -> httpx.Response:
    return await api.put(_path(merchant_id), json={"rules": rules}, headers=admin(settings))


async def pay(api: httpx.AsyncClient, merchant: Any, **body: Any) -> dict[str, Any]:
    r = await api.post("/v1/payments", json=card_payment(**body), headers=auth(merchant.secret_key))
    assert r.status_code == 202, r.text
    return dict(r.json())


async def stored_route(routed: Any, payment_id: str) -> tuple[str, list[str] | None]:
    async with routed.db.connection() as conn:
        cur = await conn.execute("SELECT processor, route FROM payments WHERE id = %s", (payment_id,))
        row = await cur.fetchone()
    assert row is not None
    return row["processor"], row["route"]


RULES = [
    {"currency": "INR", "processors": ["stripe", "simulator_b"]},  # an APM skips stripe (cards only)
    {"currency": "usd", "card_brand": "mastercard", "processors": ["simulator", "simulator_b"]},
    {"currency": "USD", "processors": ["simulator_b", "simulator"]},
    {"amount_min": 100_000, "amount_max": 200_000, "processors": ["simulator_b"]},
]


async def test_put_then_get_shows_the_rules_and_no_rules_is_the_default(
    rapi: httpx.AsyncClient, settings: Any, merchant: Any
) -> None:
    mid = merchant.merchant.id
    empty = await rapi.get(_path(mid), headers=admin(settings))
    assert empty.status_code == 200, empty.text
    nothing = {"object": "routing", "merchant": mid, "rules": [], "default": ["simulator"], "updated": None}
    assert empty.json() == nothing
    r = await put_rules(rapi, settings, mid, RULES)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "routing" and body["merchant"] == mid and body["default"] == ["simulator"]
    usd = {"currency": "USD", "card_brand": "mastercard", "processors": ["simulator", "simulator_b"]}
    assert body["rules"][1] == usd  # as saved: the currency upper-cased
    assert body["updated"] is not None
    got = await rapi.get(_path(mid), headers=admin(settings))
    assert got.json() == body
    # Replaced as a whole, and an empty list means the default again.
    r = await put_rules(rapi, settings, mid, [])
    assert r.status_code == 200 and r.json()["rules"] == []
    assert (await rapi.get(_path(mid), headers=admin(settings))).json()["rules"] == []


async def test_unknown_merchant_and_keys_other_than_the_admin_key_are_refused(
    rapi: httpx.AsyncClient, settings: Any, merchant: Any
) -> None:
    assert (await rapi.get(_path("mer_nope"), headers=admin(settings))).status_code == 404
    assert (await put_rules(rapi, settings, "mer_nope", RULES)).status_code == 404
    mine = auth(merchant.secret_key)
    assert (await rapi.get(_path(merchant.merchant.id), headers=mine)).status_code == 401
    r = await rapi.put(_path(merchant.merchant.id), json={"rules": []}, headers=mine)
    assert r.status_code == 401


@pytest.mark.parametrize(
    ("rules", "param"),
    [
        ([{"processors": ["simulator"]}, {"processors": ["simulator", "paypal"]}], "rules[1].processors[1]"),
        ([{"processors": []}], "rules[0].processors"),
        ([{"currency": "BRL"}], "rules[0].processors"),
        ([{"processors": ["simulator", "simulator"]}], "rules[0].processors[1]"),
        ([{"payment_method_type": "wallet", "processors": ["simulator", "stripe"]}], "rules[0].processors[1]"),
        ([{"processors": ["simulator", "simulator_b"], "split": {"simulator": 50}}], "rules[0].split"),
        ([{"processors": ["simulator"], "split": {"simulator": 50, "simulator_b": 50}}], "rules[0].split"),
        ([{"processors": ["simulator"], "amount_min": 10, "amount_max": 9}], "rules[0].amount_max"),
        ([{"processors": ["simulator"], "amount_min": -1}], "rules[0].amount_min"),
        ([{"processors": ["simulator"], "currency": "ZZZ"}], "rules[0].currency"),
        ([{"processors": ["simulator"], "card_brand": "elo"}], "rules[0].card_brand"),
        ([{"processors": ["simulator"], "payment_method_type": "cash"}], "rules[0].payment_method_type"),
        ([{"processors": ["simulator"], "weight": 3}], "rules[0].weight"),
        ([{"processors": ["simulator"]}] * 51, "rules"),
        ({"processors": ["simulator"]}, "rules"),
    ],
)
async def test_bad_rules_are_a_400_naming_the_field_and_change_nothing(
    rapi: httpx.AsyncClient, settings: Any, merchant: Any, rules: Any, param: str
) -> None:
    mid = merchant.merchant.id
    assert (await put_rules(rapi, settings, mid, [{"processors": ["simulator_b"]}])).status_code == 200
    r = await put_rules(rapi, settings, mid, rules)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param, r.text
    assert "paypal" not in r.text  # a name not on is never quoted back
    assert (await rapi.get(_path(mid), headers=admin(settings))).json()["rules"] == [{"processors": ["simulator_b"]}]


async def test_a_body_without_rules_is_a_400(rapi: httpx.AsyncClient, settings: Any, merchant: Any) -> None:
    r = await rapi.put(_path(merchant.merchant.id), json={}, headers=admin(settings))
    assert r.status_code == 400 and r.json()["error"]["param"] == "rules", r.text


@pytest.mark.parametrize(
    ("body", "processor", "route"),
    [
        ({"currency": "USD"}, "simulator_b", ["simulator_b", "simulator"]),  # by currency
        ({"currency": "USD", "payment_method": MASTERCARD}, "simulator", ["simulator", "simulator_b"]),  # and brand
        ({"payment_method": UPI, "currency": "INR"}, "simulator_b", ["simulator_b"]),  # by method; stripe dropped
        ({"amount": 150_000}, "simulator_b", ["simulator_b"]),  # by amount
        ({"amount": 200_001}, "simulator", ["simulator"]),  # no rule: the default
        ({"amount": 2500}, "simulator", ["simulator"]),
    ],
)
async def test_a_payment_goes_where_the_rules_say(
    rapi: httpx.AsyncClient,
    routed: Any,
    settings: Any,
    merchant: Any,
    body: dict[str, Any],
    processor: str,
    route: list[str],
) -> None:
    assert (await put_rules(rapi, settings, merchant.merchant.id, RULES)).status_code == 200
    payment = await pay(rapi, merchant, **body)
    assert payment["processor"] == processor
    assert await stored_route(routed, payment["id"]) == (processor, route)
    await drain(authorizer(routed))
    h = auth(merchant.secret_key)
    done = (await rapi.get(f"/v1/payments/{payment['id']}", headers=h)).json()
    # A card succeeds; UPI waits for the shopper's app (then it is canceled: nothing left due in the database).
    assert done["status"] == ("requires_action" if body.get("payment_method") == UPI else "succeeded")
    assert done["processor"] == processor
    if done["status"] == "requires_action":
        assert (await rapi.post(f"/v1/payments/{payment['id']}/cancel", headers=h)).status_code == 202
        await drain(authorizer(routed))
        canceled = (await rapi.get(f"/v1/payments/{payment['id']}", headers=h)).json()
        assert canceled["status"] == "canceled" and canceled["processor"] == processor  # voided where it ran
    async with routed.db.connection() as conn:
        cur = await conn.execute("SELECT processor FROM payment_attempts WHERE payment_id = %s", (payment["id"],))
        assert {r["processor"] for r in await cur.fetchall()} == {processor}  # each attempt names who ran it


async def test_without_rules_payments_go_to_the_default_and_others_rules_do_not_apply(
    rapi: httpx.AsyncClient, routed: Any, settings: Any, merchant: Any
) -> None:
    from tender.services.merchants import create_merchant

    other = await create_merchant(routed.db, f"Other {uuid.uuid4().hex[:6]}")
    assert (await put_rules(rapi, settings, other.merchant.id, [{"processors": ["simulator_b"]}])).status_code == 200
    mine = await pay(rapi, merchant, currency="USD")
    theirs = await pay(rapi, other, currency="USD")
    assert mine["processor"] == "simulator" and await stored_route(routed, mine["id"]) == ("simulator", ["simulator"])
    assert theirs["processor"] == "simulator_b"
    await drain(authorizer(routed))


async def test_a_forced_processor_is_the_whole_route(
    rapi: httpx.AsyncClient, routed: Any, settings: Any, merchant: Any
) -> None:
    assert (await put_rules(rapi, settings, merchant.merchant.id, [{"processors": ["simulator_b"]}])).status_code == 200
    payment = await pay(rapi, merchant, processor="simulator")
    assert await stored_route(routed, payment["id"]) == ("simulator", ["simulator"])
    r = await rapi.post(
        "/v1/payments", json=card_payment(payment_method=UPI, processor="stripe"), headers=auth(merchant.secret_key)
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "payment_method.type"
    await drain(authorizer(routed))


async def test_a_split_sends_a_share_to_each_first(
    rapi: httpx.AsyncClient, routed: Any, settings: Any, merchant: Any
) -> None:
    rules = [{"processors": ["simulator", "simulator_b"], "split": {"simulator": 50, "simulator_b": 50}}]
    assert (await put_rules(rapi, settings, merchant.merchant.id, rules)).status_code == 200
    firsts = [(await pay(rapi, merchant))["processor"] for _ in range(40)]
    # 40 fair draws: both sides at least once but for a chance of 2 * 2**-40.
    assert set(firsts) == {"simulator", "simulator_b"}
    await drain(authorizer(routed))


async def test_nothing_left_to_take_the_payment_is_a_400_and_nothing_is_written(
    rapi: httpx.AsyncClient, routed: Any, settings: Any, merchant: Any
) -> None:
    h = auth(merchant.secret_key)
    # Stripe takes cards only: a wallet payment routed there alone has no processor left.
    assert (await put_rules(rapi, settings, merchant.merchant.id, [{"processors": ["stripe"]}])).status_code == 200
    r = await rapi.post("/v1/payments", json=card_payment(payment_method=WALLET, return_url=RETURN_URL), headers=h)
    assert r.status_code == 400 and r.json()["error"]["param"] == "payment_method.type", r.text
    # A processor the rules name but that is off here (rules saved on a Tender where it was on).
    async with routed.db.transaction() as conn:
        await conn.execute(
            "UPDATE routing_rules SET rules = %s::jsonb WHERE merchant_id = %s",
            ('[{"processors": ["simulator_c"]}]', merchant.merchant.id),
        )
    r = await rapi.post("/v1/payments", json=card_payment(), headers=h)
    assert r.status_code == 400 and r.json()["error"]["param"] == "processor", r.text
    assert "simulator_c" not in r.text
    assert (await rapi.get("/v1/payments", headers=h)).json()["data"] == []
    async with routed.db.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM vault_cards WHERE merchant_id = %s", (merchant.merchant.id,)
        )
        assert (await cur.fetchone())["n"] == 0


async def test_the_hosted_page_routes_by_the_same_rules(
    rapi: httpx.AsyncClient, routed: Any, settings: Any, merchant: Any
) -> None:
    assert (await put_rules(rapi, settings, merchant.merchant.id, RULES)).status_code == 200
    session = await new_session(rapi, merchant, currency="USD")
    r = await rapi.post(page_path(session) + "/pay", content=card_form(), headers=FORM)
    assert r.status_code == 303, r.text
    payments = (await rapi.get("/v1/payments", headers=auth(merchant.secret_key))).json()["data"]
    assert [p["processor"] for p in payments] == ["simulator_b"]
    assert await stored_route(routed, payments[0]["id"]) == ("simulator_b", ["simulator_b", "simulator"])
    await drain(authorizer(routed))


async def test_the_cli_sets_and_shows_a_merchants_rules(
    merchant: Any, tender_env: dict[str, str], tmp_path: Any
) -> None:
    import asyncio
    import json
    import os
    import subprocess
    import sys

    # The processors on for the CLI are the environment's: the simulator only (TENDER_SIMULATOR_URL's default).
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENDER_")} | tender_env

    def tender(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tender", "merchant", "routing", merchant.merchant.id, *args],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    good = tmp_path / "rules.json"
    good.write_text(json.dumps([{"currency": "usd", "processors": ["simulator"]}]))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rules": [{"processors": ["simulator", "stripe"]}]}))  # stripe is off there

    done = await asyncio.to_thread(tender, "--set", str(good))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rules"] == [{"currency": "USD", "processors": ["simulator"]}]
    refused = await asyncio.to_thread(tender, "--set", str(bad))
    assert refused.returncode == 1 and "rules[0].processors[1]" in refused.stderr
    shown = await asyncio.to_thread(tender)
    assert shown.returncode == 0 and json.loads(shown.stdout) == json.loads(done.stdout)  # unchanged by the 400
