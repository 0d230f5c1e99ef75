"""Events and webhooks: the events API, webhook endpoints, and delivery by the worker's webhook pump to a
real receiver on a loopback port, verified with the official `standardwebhooks` library as merchants do."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiohttp.abc import AbstractResolver
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tender.services.merchants import create_merchant
from tender.services.settlement import settle_all
from tender.services.webhook_delivery import DeliveryPolicy
from tender.worker.pumps import DeliveryPump
from tests.support.api import auth
from tests.support.payments import authorizer, drain, get, notification_for, pay, shopper_decides, three_ds_payment
from tests.support.serve import serve
from tests.support.webhooks import delete_made_endpoints, make_endpoint

pytestmark = pytest.mark.integration

DEBIT = "4000056655665556"
DECLINED = "4000000000000002"


# -- a merchant's receiver -------------------------------------------------------------------------------


@dataclass
class Receiver:
    """Records every request; `decide` picks the answer: a status code, or ("late", code) to handle the
    request and answer after the pump's timeout (the pump then sends it again: a true duplicate)."""

    decide: Callable[[], int | tuple[str, int]] = lambda: 204
    late_seconds: float = 0.0
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        self.requests.append(({k.lower(): v for k, v in request.headers.items()}, body))
        answer = self.decide()
        if isinstance(answer, tuple):
            await asyncio.sleep(self.late_seconds)
            answer = answer[1]
        return Response(status_code=answer)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hooks", self.endpoint, methods=["POST"])])

    def verified(self, secret: str) -> list[dict[str, Any]]:
        """Every request's event, each one's signature checked by the standardwebhooks library."""
        hook = Webhook(secret)
        return [dict(hook.verify(body, headers)) for headers, body in self.requests]


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    r = Receiver()
    async with serve(r.app()) as url:
        yield r, url + "/hooks"


def policy(**overrides: Any) -> DeliveryPolicy:
    values: dict[str, Any] = {
        "timeout_seconds": 1.0,
        "retry_base_seconds": 0.01,
        "retry_cap_seconds": 0.05,
        "allow_private": True,  # the receiver is on loopback
        "lease_seconds": 30.0,
    }
    values.update(overrides)
    return DeliveryPolicy(**values)


@pytest.fixture
async def pump(container: Any) -> AsyncIterator[DeliveryPump]:
    p = DeliveryPump(container.db, container.vault, policy())
    yield p
    await p.aclose()


@pytest.fixture(autouse=True)
async def delete_endpoints_afterwards(container: Any) -> AsyncIterator[None]:
    """The database is shared by the session: an endpoint left behind would get later tests' events (a
    settlement run settles every merchant) and send them to a receiver that is gone."""
    yield
    await delete_made_endpoints(container)


async def query(container: Any, sql: str, *params: Any) -> list[dict[str, Any]]:
    async with container.db.connection() as conn:
        cur = await conn.execute(sql, params)
        return [dict(r) for r in await cur.fetchall()]


async def deliver_all(pump: DeliveryPump, container: Any, merchant_id: str, seconds: float = 60.0) -> None:
    """Run the pump until none of the merchant's deliveries is pending."""
    deadline = time.monotonic() + seconds
    while True:
        await pump.run_batch(100)
        pending = await query(
            container,
            "SELECT count(*) AS n FROM webhook_deliveries WHERE merchant_id = %s AND status = 'pending'",
            merchant_id,
        )
        if pending[0]["n"] == 0:
            return
        assert time.monotonic() < deadline, f"{pending[0]['n']} deliveries still pending"
        await asyncio.sleep(0.02)


async def all_events(api: Any, merchant: Any, **params: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        page_params = {"limit": 100, **params, **({"starting_after": after} if after else {})}
        r = await api.get("/v1/events", params=page_params, headers=auth(merchant.secret_key))
        assert r.status_code == 200, r.text
        page = r.json()
        found += page["data"]
        if not page["has_more"]:
            return found
        after = page["data"][-1]["id"]


async def pay_and_process(api: Any, container: Any, merchant: Any, numbers: list[str], **kw: Any) -> list[str]:
    ids = [(await pay(api, merchant, n, **kw))["id"] for n in numbers]
    await drain(authorizer(container))
    return ids


# -- endpoints ---------------------------------------------------------------------------------------------


async def test_an_endpoint_shows_its_secret_once_and_can_be_listed_updated_and_deleted(
    api: Any, container: Any, merchant: Any
) -> None:
    h = auth(merchant.secret_key)
    r = await api.post("/v1/webhook_endpoints", json={"url": "https://shop.example/hooks", "events": ["*"]}, headers=h)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["id"].startswith("we_") and created["object"] == "webhook_endpoint"
    assert created["secret"].startswith("whsec_") and created["enabled"] is True and created["events"] == ["*"]
    # Never again: not on retrieve, list or update.
    got = (await api.get(f"/v1/webhook_endpoints/{created['id']}", headers=h)).json()
    assert "secret" not in got and got["url"] == "https://shop.example/hooks"
    listed = (await api.get("/v1/webhook_endpoints", headers=h)).json()
    assert [e["id"] for e in listed["data"]] == [created["id"]] and "secret" not in listed["data"][0]
    # Stored encrypted: the secret's text is nowhere in the row.
    [row] = await query(container, "SELECT * FROM webhook_endpoints WHERE id = %s", created["id"])
    assert created["secret"].encode() not in orjson.dumps({k: str(v) for k, v in row.items()})

    r = await api.post(
        f"/v1/webhook_endpoints/{created['id']}",
        json={"events": ["payment.succeeded", "refund.failed"], "description": "orders"},
        headers=h,
    )
    assert r.status_code == 200, r.text
    updated = r.json()
    assert updated["events"] == ["payment.succeeded", "refund.failed"] and updated["description"] == "orders"
    assert updated["url"] == "https://shop.example/hooks" and "secret" not in updated
    r = await api.patch(f"/v1/webhook_endpoints/{created['id']}", json={"enabled": False}, headers=h)
    assert r.json()["enabled"] is False

    # Another merchant sees nothing of it.
    other = await create_merchant(container.db, "Other shop")
    assert (await api.get(f"/v1/webhook_endpoints/{created['id']}", headers=auth(other.secret_key))).status_code == 404
    assert (
        await api.delete(f"/v1/webhook_endpoints/{created['id']}", headers=auth(other.secret_key))
    ).status_code == 404

    r = await api.delete(f"/v1/webhook_endpoints/{created['id']}", headers=h)
    assert r.json() == {"id": created["id"], "object": "webhook_endpoint", "deleted": True}
    assert (await api.get(f"/v1/webhook_endpoints/{created['id']}", headers=h)).status_code == 404


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"url": "http://127.0.0.1:9000/hooks"}, "url"),
        ({"url": "http://169.254.169.254/latest/meta-data"}, "url"),
        ({"url": "http://localhost/hooks"}, "url"),
        ({"url": "ftp://shop.example/hooks"}, "url"),
        ({"url": "https://user:pw@shop.example/hooks"}, "url"),
        ({"url": "https://shop.example/hooks", "events": []}, "events"),
        ({"url": "https://shop.example/hooks", "events": ["payment.succeeded", "payment.exploded"]}, "events[1]"),
        ({"url": "https://shop.example/hooks", "events": "payment.succeeded"}, "events"),
        ({"url": "https://shop.example/hooks", "colour": "red"}, "colour"),
        ({"events": ["*"]}, "url"),
    ],
)
async def test_a_bad_endpoint_is_a_400_naming_the_field_and_nothing_is_saved(
    api: Any, container: Any, merchant: Any, body: dict[str, Any], param: str
) -> None:
    r = await api.post("/v1/webhook_endpoints", json=body, headers=auth(merchant.secret_key))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    assert await query(container, "SELECT id FROM webhook_endpoints WHERE merchant_id = %s", merchant.merchant.id) == []


async def test_an_idempotent_create_replays_the_secret_but_stores_it_sealed(
    api: Any, container: Any, merchant: Any
) -> None:
    h = {**auth(merchant.secret_key), "Idempotency-Key": "hook-1"}
    body = {"url": "https://shop.example/hooks"}
    first = await api.post("/v1/webhook_endpoints", json=body, headers=h)
    again = await api.post("/v1/webhook_endpoints", json=body, headers=h)
    assert first.status_code == again.status_code == 201
    assert again.content == first.content and again.headers["Idempotent-Replayed"] == "true"
    secret = first.json()["secret"].encode()
    [stored] = await query(
        container, "SELECT response_body FROM idempotency_keys WHERE merchant_id = %s", merchant.merchant.id
    )
    assert secret not in bytes(stored["response_body"]) and b"whsec_" not in bytes(stored["response_body"])
    assert (
        len(await query(container, "SELECT id FROM webhook_endpoints WHERE merchant_id = %s", merchant.merchant.id))
        == 1
    )


# -- events ------------------------------------------------------------------------------------------------


async def test_every_status_change_is_an_event_numbered_per_object(api: Any, container: Any, merchant: Any) -> None:
    ok, declined = await pay_and_process(api, container, merchant, ["4242424242424242", DECLINED])
    [manual] = await pay_and_process(api, container, merchant, ["4242424242424242"], capture=False)
    r = await api.post(f"/v1/payments/{manual}/capture", json={}, headers=auth(merchant.secret_key))
    assert r.status_code == 202
    await drain(authorizer(container))

    events = await all_events(api, merchant)
    by_object: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in reversed(events):  # oldest first
        by_object[e["data"]["object"]["id"]].append(e)
    assert [(e["type"], e["sequence"]) for e in by_object[ok]] == [("payment.succeeded", 1)]
    assert [(e["type"], e["sequence"]) for e in by_object[declined]] == [("payment.failed", 1)]
    assert [(e["type"], e["sequence"]) for e in by_object[manual]] == [
        ("payment.requires_capture", 1),
        ("payment.succeeded", 2),
    ]
    # Each event carries the object as it was then, never card data.
    first, second = by_object[manual]
    assert (first["data"]["object"]["status"], second["data"]["object"]["status"]) == ("requires_capture", "succeeded")
    assert second["data"]["object"]["amount_captured"] == 2500
    assert by_object[declined][0]["data"]["object"]["decline_code"] == "generic_decline"
    raw = orjson.dumps(events)
    assert b"4242424242424242" not in raw and b'"cvc"' not in raw

    # Filters and retrieval.
    h = auth(merchant.secret_key)
    succeeded = await all_events(api, merchant, type="payment.succeeded")
    assert {e["data"]["object"]["id"] for e in succeeded} == {ok, manual}
    family = await all_events(api, merchant, type="payment.*")
    assert len(family) == 4
    both = await all_events(api, merchant, type="payment.failed,payment.requires_capture")
    assert {e["type"] for e in both} == {"payment.failed", "payment.requires_capture"}
    only = await all_events(api, merchant, object=manual)
    assert [e["sequence"] for e in only] == [2, 1]  # newest first
    one = (await api.get(f"/v1/events/{first['id']}", headers=h)).json()
    assert one == first
    for bad in ("payment.exploded", "nothing.*"):
        r = await api.get("/v1/events", params={"type": bad}, headers=h)
        assert r.status_code == 400 and r.json()["error"]["param"] == "type"
    other = await create_merchant(container.db, "Other shop")
    assert (await api.get(f"/v1/events/{first['id']}", headers=auth(other.secret_key))).status_code == 404


async def test_a_notification_records_its_change_once_however_often_it_comes(
    api: Any, container: Any, merchant: Any, simulator_url: str
) -> None:
    p = await three_ds_payment(api, container, merchant)
    await shopper_decides(simulator_url, p, "approve")
    [attempt] = await query(container, "SELECT id FROM payment_attempts WHERE payment_id = %s", p["id"])
    body, headers = await notification_for(simulator_url, attempt["id"])
    for _ in range(2):  # the same notification twice: deduplicated by its id
        await api.post("/webhooks/simulator", content=body, headers=headers)
    body2, headers2 = await notification_for(simulator_url, attempt["id"])  # the same news, another id: stale
    await api.post("/webhooks/simulator", content=body2, headers=headers2)
    events = await all_events(api, merchant, object=p["id"])
    assert [(e["type"], e["sequence"]) for e in reversed(events)] == [
        ("payment.requires_action", 1),
        ("payment.succeeded", 2),
    ]
    assert events[0]["data"]["object"]["next_action"] is None


# -- delivery ----------------------------------------------------------------------------------------------


async def test_a_flaky_receiver_ends_with_every_event_exactly_once_after_deduplication(
    api: Any, container: Any, receiver: tuple[Receiver, str], pump: DeliveryPump
) -> None:
    recv, url = receiver
    rng = random.Random(5)

    def flaky() -> int | tuple[str, int]:
        roll = rng.random()
        if roll < 0.25:
            return 500
        if roll < 0.35:
            return 503
        if roll < 0.45:
            return ("late", 200)  # handled, but answered after the timeout: sent again
        return 204

    recv.decide, recv.late_seconds = flaky, 1.3
    merchant = await create_merchant(container.db, "Flaky shop")
    endpoint = await make_endpoint(container, merchant, url)
    numbers = ["4242424242424242", DEBIT, DECLINED] * 12
    await pay_and_process(api, container, merchant, numbers)
    await settle_all(
        container.db, as_of=time_plus_days(31), max_groups=50
    )  # payable.paid and settlement.created events too
    await deliver_all(pump, container, merchant.merchant.id)

    events = await all_events(api, merchant)
    types = Counter(e["type"] for e in events)
    assert types["payment.succeeded"] == 24 and types["payment.failed"] == 12 and types["payable.paid"] == 24
    assert types["settlement.created"] >= 1

    received = recv.verified(endpoint["secret"])  # raises if any signature is wrong
    ids = [e["id"] for e in received]
    assert len(ids) > len(set(ids)), "the receiver should have seen duplicates (late answers, retries)"
    # After deduplication by webhook-id (the event id): every event exactly once, as the API shows it.
    unique = {e["id"]: e for e in received}
    assert set(unique) == {e["id"] for e in events}
    assert all(unique[e["id"]] == e for e in events)
    assert all(headers["webhook-id"] == orjson.loads(body)["id"] for headers, body in recv.requests)
    # Orderable: each object's sequences are 1..n.
    per_object: dict[str, list[int]] = defaultdict(list)
    for e in unique.values():
        per_object[e["data"]["object"]["id"]].append(e["sequence"])
    assert all(sorted(s) == list(range(1, len(s) + 1)) for s in per_object.values())

    # The deliveries API accounts for every request the receiver saw.
    deliveries = await all_deliveries(api, merchant, endpoint["id"])
    assert {d["status"] for d in deliveries} == {"succeeded"} and len(deliveries) == len(events)
    assert sum(len(d["attempts"]) for d in deliveries) == len(recv.requests)
    failed_attempts = [a for d in deliveries for a in d["attempts"][:-1]]
    assert failed_attempts and all(a["status_code"] in (500, 503, None) for a in failed_attempts)
    assert any(a["status_code"] is None and "no answer" in (a["error"] or "") for a in failed_attempts)
    assert all(d["attempts"][-1]["status_code"] in (200, 204) for d in deliveries)


def time_plus_days(days: int) -> date:
    return (datetime.now(UTC) + timedelta(days=days)).date()


async def all_deliveries(api: Any, merchant: Any, endpoint_id: str, **params: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        page_params = {"limit": 100, **params, **({"starting_after": after} if after else {})}
        r = await api.get(
            f"/v1/webhook_endpoints/{endpoint_id}/deliveries", params=page_params, headers=auth(merchant.secret_key)
        )
        assert r.status_code == 200, r.text
        page = r.json()
        found += page["data"]
        if not page["has_more"]:
            return found
        after = page["data"][-1]["id"]


async def test_a_delivery_that_keeps_failing_gives_up_after_its_window_and_a_retry_sends_it(
    api: Any, container: Any, settings: Any, receiver: tuple[Receiver, str]
) -> None:
    recv, url = receiver
    recv.decide = lambda: 503
    merchant = await create_merchant(container.db, "Down shop")
    endpoint = await make_endpoint(container, merchant, url, ["payment.succeeded"])
    [payment] = await pay_and_process(api, container, merchant, ["4242424242424242"])
    short = DeliveryPump(container.db, container.vault, policy(retry_for=timedelta(seconds=2)))
    try:
        await deliver_all(short, container, merchant.merchant.id)
        [delivery] = await all_deliveries(api, merchant, endpoint["id"])
        assert delivery["status"] == "failed" and delivery["next_attempt"] is None
        assert len(delivery["attempts"]) >= 2 and {a["status_code"] for a in delivery["attempts"]} == {503}
        assert all(a["error"] == "HTTP 503" for a in delivery["attempts"])
        [dead] = await query(
            container, "SELECT * FROM dead_letters WHERE kind = 'webhook_delivery' AND object_id = %s", delivery["id"]
        )
        assert dead["status"] == "open" and dead["last_error"] == "HTTP 503"

        recv.decide = lambda: 200  # the merchant fixed it; the operator retries the dead letter
        admin = {"Authorization": f"Bearer {settings.admin_key.get_secret_value()}"}
        r = await api.post(f"/admin/v1/dead_letters/{dead['id']}/retry", headers=admin)
        assert r.status_code == 200, r.text
        await deliver_all(short, container, merchant.merchant.id)
        [delivery] = await all_deliveries(api, merchant, endpoint["id"])
        assert delivery["status"] == "succeeded" and delivery["attempts"][-1]["status_code"] == 200
        [dead] = await query(container, "SELECT status FROM dead_letters WHERE id = %s", dead["id"])
        assert dead["status"] == "resolved"
        event_ids = {orjson.loads(body)["id"] for _, body in recv.requests}
        assert event_ids == {delivery["event"]}
        assert (await get(api, merchant, payment))["status"] == "succeeded"
    finally:
        await short.aclose()


async def test_an_endpoint_failing_too_long_is_disabled_and_an_event_says_so(
    api: Any, container: Any, receiver: tuple[Receiver, str]
) -> None:
    recv, url = receiver
    merchant = await create_merchant(container.db, "Broken shop")
    broken = await make_endpoint(container, merchant, url.replace("/hooks", "/missing"))  # always 404
    watcher = await make_endpoint(container, merchant, url, ["webhook_endpoint.disabled"])
    impatient = DeliveryPump(container.db, container.vault, policy(disable_after=timedelta(0)))
    try:
        await pay_and_process(api, container, merchant, ["4242424242424242", "4242424242424242"])
        await deliver_all(impatient, container, merchant.merchant.id)
    finally:
        await impatient.aclose()
    h = auth(merchant.secret_key)
    got = (await api.get(f"/v1/webhook_endpoints/{broken['id']}", headers=h)).json()
    assert (got["enabled"], got["disabled_reason"]) == (False, "failing")
    [disabled] = await all_events(api, merchant, type="webhook_endpoint.disabled")
    assert disabled["data"]["object"]["id"] == broken["id"] and "secret" not in disabled["data"]["object"]
    # The other endpoint heard about it; the disabled one's deliveries stopped.
    assert [e["type"] for e in recv.verified(watcher["secret"])] == ["webhook_endpoint.disabled"]
    deliveries = await all_deliveries(api, merchant, broken["id"])
    assert {d["status"] for d in deliveries} == {"failed"}
    assert {a["status_code"] for d in deliveries for a in d["attempts"]} == {404}
    # New events no longer go to it.
    before = len(deliveries)
    await pay_and_process(api, container, merchant, ["4242424242424242"])
    assert len(await all_deliveries(api, merchant, broken["id"])) == before


async def test_an_event_can_be_redelivered_under_the_same_id(
    api: Any, container: Any, merchant: Any, receiver: tuple[Receiver, str], pump: DeliveryPump
) -> None:
    recv, url = receiver
    h = auth(merchant.secret_key)
    [payment] = await pay_and_process(api, container, merchant, ["4242424242424242"])
    [event] = await all_events(api, merchant)
    r = await api.post(f"/v1/events/{event['id']}/redeliver", json={}, headers=h)
    assert r.status_code == 400 and r.json()["error"]["code"] == "no_webhook_endpoint"  # nobody listens yet

    endpoint = await make_endpoint(container, merchant, url, ["payment.succeeded"])
    r = await api.post(f"/v1/events/{event['id']}/redeliver", json={}, headers=h)
    assert r.status_code == 202, r.text
    [queued] = r.json()["data"]
    assert (queued["event"], queued["endpoint"], queued["status"]) == (event["id"], endpoint["id"], "pending")
    await deliver_all(pump, container, merchant.merchant.id)
    r = await api.post(f"/v1/events/{event['id']}/redeliver", json={"endpoint": endpoint["id"]}, headers=h)
    assert r.status_code == 202
    await deliver_all(pump, container, merchant.merchant.id)

    received = recv.verified(endpoint["secret"])
    assert [e["id"] for e in received] == [event["id"], event["id"]]
    [delivery] = await all_deliveries(api, merchant, endpoint["id"])
    assert delivery["status"] == "succeeded" and len(delivery["attempts"]) == 2
    r = await api.post(f"/v1/events/{event['id']}/redeliver", json={"endpoint": "we_nope"}, headers=h)
    assert r.status_code == 400 and r.json()["error"]["param"] == "endpoint"
    assert (await get(api, merchant, payment))["status"] == "succeeded"


async def test_after_a_rotation_both_secrets_verify_for_a_day(
    api: Any, container: Any, merchant: Any, receiver: tuple[Receiver, str], pump: DeliveryPump
) -> None:
    recv, url = receiver
    endpoint = await make_endpoint(container, merchant, url)
    r = await api.post(f"/v1/webhook_endpoints/{endpoint['id']}/rotate_secret", headers=auth(merchant.secret_key))
    assert r.status_code == 200, r.text
    new_secret = r.json()["secret"]
    assert new_secret.startswith("whsec_") and new_secret != endpoint["secret"]
    await pay_and_process(api, container, merchant, ["4242424242424242"])
    await deliver_all(pump, container, merchant.merchant.id)
    [(headers, _)] = recv.requests
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert recv.verified(endpoint["secret"]) == recv.verified(new_secret)  # either secret alone verifies
    with pytest.raises(WebhookVerificationError):
        recv.verified("whsec_" + "A" * 32)

    # Once the overlap is over, only the new secret signs.
    await query_exec(
        container, "UPDATE webhook_endpoints SET previous_secret_expires = now() WHERE id = %s", endpoint["id"]
    )
    recv.requests.clear()
    await pay_and_process(api, container, merchant, ["4242424242424242"])
    await deliver_all(pump, container, merchant.merchant.id)
    recv.verified(new_secret)
    with pytest.raises(WebhookVerificationError):
        recv.verified(endpoint["secret"])


async def query_exec(container: Any, sql: str, *params: Any) -> None:
    async with container.db.connection() as conn:
        await conn.execute(sql, params)


class RebindingDNS(AbstractResolver):
    """DNS is the outside world here: a resolver that answers loopback for every name."""

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[Any]:
        return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": family, "proto": 0, "flags": 0}]

    async def close(self) -> None:
        return None


async def test_the_pump_refuses_private_addresses_unless_the_operator_allows_them(
    api: Any, container: Any, merchant: Any, receiver: tuple[Receiver, str]
) -> None:
    recv, url = receiver  # http://127.0.0.1:<port>/hooks
    by_address = await make_endpoint(container, merchant, url)
    # A public name that resolves to loopback, as a rebinding DNS server would answer.
    by_name = await make_endpoint(container, merchant, url.replace("127.0.0.1", "hooks.shop.test"))
    guarded = DeliveryPump(
        container.db, container.vault, policy(allow_private=False, retry_for=timedelta(0)), resolver=RebindingDNS()
    )
    try:
        await pay_and_process(api, container, merchant, ["4242424242424242"])
        await deliver_all(guarded, container, merchant.merchant.id)
    finally:
        await guarded.aclose()
    assert recv.requests == []  # nothing reached the receiver
    [blocked] = await all_deliveries(api, merchant, by_address["id"])
    assert blocked["status"] == "failed" and "not a public address" in blocked["attempts"][0]["error"]
    [resolved] = await all_deliveries(api, merchant, by_name["id"])
    assert resolved["status"] == "failed" and "no public address" in resolved["attempts"][0]["error"]


async def test_a_slow_endpoint_holds_up_nobody_elses_deliveries(api: Any, container: Any) -> None:
    slow, fast = Receiver(late_seconds=2.0), Receiver()
    slow.decide = lambda: ("late", 204)  # answers in 2 s: within the timeout, so a success, only slow
    patient = DeliveryPump(
        container.db, container.vault, policy(timeout_seconds=5.0, patience_seconds=0.3, per_endpoint=2)
    )
    async with serve(slow.app()) as slow_url, serve(fast.app()) as fast_url:
        sluggish = await create_merchant(container.db, "Sluggish shop")
        brisk = await create_merchant(container.db, "Brisk shop")
        await make_endpoint(container, sluggish, slow_url + "/hooks")
        await make_endpoint(container, brisk, fast_url + "/hooks")
        await pay_and_process(api, container, sluggish, ["4242424242424242"] * 4)
        await pay_and_process(api, container, brisk, ["4242424242424242"] * 2)
        try:
            started = time.monotonic()
            await patient.run_batch(100)
            assert time.monotonic() - started < 1.5  # did not wait for the slow endpoint's 2 s
            statuses = await query(
                container,
                "SELECT merchant_id, status, count(*) AS n FROM webhook_deliveries WHERE merchant_id = ANY(%s)"
                " GROUP BY 1, 2",
                [sluggish.merchant.id, brisk.merchant.id],
            )
            by = {(r["merchant_id"], r["status"]): r["n"] for r in statuses}
            assert by.get((brisk.merchant.id, "succeeded")) == 2  # written while the slow ones still run
            assert by.get((sluggish.merchant.id, "pending")) == 4
            assert patient.in_flight == 2  # two at most to one endpoint; the other two were put back
            await deliver_all(patient, container, sluggish.merchant.id)
            assert len({h["webhook-id"] for h, _ in slow.requests}) == 4 and len(fast.requests) == 2
        finally:
            await patient.aclose()


async def test_old_delivery_attempts_are_purged_and_the_delivery_keeps_its_last_answer(
    api: Any, container: Any, merchant: Any, receiver: tuple[Receiver, str], pump: DeliveryPump
) -> None:
    from tender.services.maintenance import purge_webhook_attempts

    _, url = receiver
    endpoint = await make_endpoint(container, merchant, url)
    await pay_and_process(api, container, merchant, ["4242424242424242"])
    await deliver_all(pump, container, merchant.merchant.id)
    [delivery] = await all_deliveries(api, merchant, endpoint["id"])
    await query_exec(
        container,
        "UPDATE webhook_attempts SET attempted = now() - interval '31 days' WHERE delivery_id = %s",
        delivery["id"],
    )
    assert await purge_webhook_attempts(container.db, days=container.settings.webhook_attempt_days) >= 1
    [after] = await all_deliveries(api, merchant, endpoint["id"])
    assert after["attempts"] == [] and after["status"] == "succeeded"
    rows = await query(container, "SELECT last_status_code FROM webhook_deliveries WHERE id = %s", delivery["id"])
    assert rows[0]["last_status_code"] == 204
