"""Live status against real PostgreSQL: `Prefer: wait` on GET and POST, the SSE stream, and the one
LISTEN connection per process behind them (fan-out to many waiters, recovery after the connection dies,
the periodic re-check when notifications are lost)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from tender.services.merchants import create_merchant
from tender.worker.pumps import PaymentPump
from tests.support.api import auth, card_payment

pytestmark = pytest.mark.integration

CREATED: list[str] = []  # every payment made here, taken off the work queue at the end of the module


# -- fixtures and helpers ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def app(container: Any) -> AsyncIterator[Any]:
    """The API app with its hub started as its lifespan would (the ASGI test transport runs no lifespan)."""
    from tender.api.app import create_app

    application = create_app(container)
    # No periodic re-check within a test's time: every test here proves that notifications wake waiters
    # (test_waiters_recheck_when_no_notification_comes covers the re-check).
    application.state.hub.recheck_seconds = 120.0
    await application.state.hub.start()
    assert application.state.hub.listening
    yield application
    await application.state.hub.stop()
    # Leave no payment of ours due: later test modules pump the shared database.
    async with container.db.connection() as conn:
        await conn.execute("UPDATE payments SET next_run_at = NULL WHERE id = ANY(%s)", (CREATED,))


@pytest.fixture(scope="module")
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tender.test", timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
async def server_url(app: Any) -> AsyncIterator[str]:
    """The same app on a real loopback port: the ASGI test transport does not stream."""
    from tests.support.serve import serve

    async with serve(app) as url:
        yield url


@pytest.fixture
def hub(app: Any) -> Any:
    return app.state.hub


async def create(client: httpx.AsyncClient, merchant: Any, **overrides: Any) -> str:
    r = await client.post("/v1/payments", json=card_payment(**overrides), headers=auth(merchant.secret_key))
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "processing"
    CREATED.append(r.json()["id"])
    return str(r.json()["id"])


async def set_status(container: Any, payment_ids: str | list[str], status: str) -> float:
    """Change the status in SQL (the trigger announces it); returns the loop time right after the commit."""
    ids = [payment_ids] if isinstance(payment_ids, str) else payment_ids
    async with container.db.connection() as conn:
        await conn.execute(
            "UPDATE payments SET status = %s, next_run_at = NULL, updated = now() WHERE id = ANY(%s)", (status, ids)
        )
    return asyncio.get_running_loop().time()


async def set_status_later(container: Any, payment_id: str, status: str, delay: float) -> float:
    await asyncio.sleep(delay)
    return await set_status(container, payment_id, status)


async def until(condition: Any, within: float = 10.0, what: str = "the condition") -> None:
    for _ in range(int(within / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{what} did not hold within {within} s")


def now() -> float:
    return asyncio.get_running_loop().time()


# -- Prefer: wait on GET ----------------------------------------------------------------------------------


async def test_get_wait_answers_as_soon_as_the_status_changes(
    client: httpx.AsyncClient, container: Any, merchant: Any
) -> None:
    pid = await create(client, merchant)
    started = now()
    change = asyncio.create_task(set_status_later(container, pid, "succeeded", 0.5))
    r = await client.get(f"/v1/payments/{pid}", headers={**auth(merchant.secret_key), "Prefer": "wait=5"})
    answered = now()
    changed = await change
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "succeeded"
    assert r.headers["preference-applied"] == "wait=5"
    assert changed <= answered  # it held the answer until the change ...
    assert answered - started < 3  # ... and not until the 5 s ran out


async def test_get_wait_on_a_payment_that_stays_processing_answers_after_n_seconds(
    client: httpx.AsyncClient, merchant: Any
) -> None:
    pid = await create(client, merchant)
    started = now()
    r = await client.get(f"/v1/payments/{pid}", headers={**auth(merchant.secret_key), "Prefer": "wait=1"})
    elapsed = now() - started
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "processing"
    assert r.headers["preference-applied"] == "wait=1"
    assert 0.95 <= elapsed < 3


async def test_wait_above_30_is_capped_and_says_so(client: httpx.AsyncClient, container: Any, merchant: Any) -> None:
    pid = await create(client, merchant)
    change = asyncio.create_task(set_status_later(container, pid, "failed", 0.3))
    started = now()
    r = await client.get(
        f"/v1/payments/{pid}", headers={**auth(merchant.secret_key), "Prefer": "respond-async, WAIT=999"}
    )
    await change
    assert r.status_code == 200, r.text
    assert r.headers["preference-applied"] == "wait=30"
    assert r.json()["status"] == "failed"
    assert now() - started < 3


@pytest.mark.parametrize(
    "prefer", ["wait=abc", "wait=-1", "wait=1.5", "wait", "wait=", "wait=2s", "return=minimal", "wait=abc, wait=2"]
)
async def test_invalid_or_unknown_preferences_are_ignored(
    client: httpx.AsyncClient, merchant: Any, prefer: str
) -> None:
    pid = await create(client, merchant)
    started = now()
    r = await client.get(f"/v1/payments/{pid}", headers={**auth(merchant.secret_key), "Prefer": prefer})
    assert r.status_code == 200, r.text
    assert "preference-applied" not in r.headers
    assert r.json()["status"] == "processing"
    assert now() - started < 0.9  # answered at once (the shortest valid wait here would be 2 s)


async def test_wait_on_a_final_payment_answers_at_once(
    client: httpx.AsyncClient, container: Any, merchant: Any
) -> None:
    pid = await create(client, merchant)
    await set_status(container, pid, "succeeded")
    started = now()
    r = await client.get(f"/v1/payments/{pid}", headers={**auth(merchant.secret_key), "Prefer": "wait=10"})
    assert r.json()["status"] == "succeeded"
    assert r.headers["preference-applied"] == "wait=10"
    assert now() - started < 2


async def test_wait_on_another_merchants_payment_is_an_immediate_404(
    client: httpx.AsyncClient, container: Any, merchant: Any, hub: Any
) -> None:
    pid = await create(client, merchant)
    other = await create_merchant(container.db, "Other shop")
    r = await client.get(f"/v1/payments/{pid}", headers={**auth(other.secret_key), "Prefer": "wait=5"})
    assert r.status_code == 404
    assert r.json()["error"]["type"] == "not_found"
    assert "preference-applied" not in r.headers
    assert hub.waiting(pid) == 0  # the subscription was released


# -- Prefer: wait on POST ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "status"),
    [("4242424242424242", "succeeded"), ("4000000000000002", "failed"), ("4000002760003184", "requires_action")],
)
async def test_post_wait_answers_with_the_outcome_when_the_pump_runs(
    client: httpx.AsyncClient, container: Any, merchant: Any, number: str, status: str
) -> None:
    post = asyncio.create_task(
        client.post(
            "/v1/payments",
            json=card_payment(number),
            headers={**auth(merchant.secret_key), "Prefer": "wait=10"},
        )
    )
    pump = PaymentPump(container.db, container.vault, container.processors)
    async with asyncio.timeout(15):
        while not post.done():
            await pump.run_batch(1000)
            await asyncio.sleep(0.05)
    r = post.result()
    assert r.status_code == 202, r.text  # still "accepted": the request was taken on asynchronously
    body = r.json()
    CREATED.append(body["id"])
    assert r.headers["location"] == f"/v1/payments/{body['id']}"
    assert r.headers["preference-applied"] == "wait=10"
    assert body["status"] == status
    if status == "failed":
        assert (body["failure_code"], body["decline_code"]) == ("card_declined", "generic_decline")


async def test_post_wait_on_a_payment_nobody_processes_answers_processing_after_n_seconds(
    client: httpx.AsyncClient, merchant: Any
) -> None:
    started = now()
    r = await client.post(
        "/v1/payments", json=card_payment(), headers={**auth(merchant.secret_key), "Prefer": "wait=1"}
    )
    CREATED.append(r.json()["id"])
    assert r.status_code == 202
    assert r.json()["status"] == "processing"
    assert r.headers["preference-applied"] == "wait=1"
    assert now() - started >= 0.95


async def test_idempotent_replay_is_byte_identical_and_does_not_wait(
    client: httpx.AsyncClient, container: Any, merchant: Any
) -> None:
    headers = {**auth(merchant.secret_key), "Idempotency-Key": uuid.uuid4().hex}
    first = await client.post("/v1/payments", json=card_payment(), headers=headers)
    assert first.status_code == 202
    pid = first.json()["id"]
    CREATED.append(pid)

    started = now()
    replay = await client.post("/v1/payments", json=card_payment(), headers={**headers, "Prefer": "wait=3"})
    assert now() - started < 2  # the payment is still processing: a wait would have taken 3 s
    assert replay.status_code == first.status_code
    assert replay.content == first.content
    assert replay.headers["location"] == first.headers["location"]
    assert replay.headers["idempotent-replayed"] == "true"
    assert "preference-applied" not in replay.headers

    await set_status(container, pid, "succeeded")
    again = await client.post("/v1/payments", json=card_payment(), headers={**headers, "Prefer": "wait=3"})
    assert again.content == first.content  # the stored answer, not the payment as it is now
    assert again.json()["status"] == "processing"


async def test_replay_of_a_waited_post_returns_the_stored_acceptance(
    client: httpx.AsyncClient, container: Any, merchant: Any
) -> None:
    """The documented choice: what is stored and replayed is the acceptance (202, status processing)."""
    headers = {**auth(merchant.secret_key), "Idempotency-Key": uuid.uuid4().hex}
    post = asyncio.create_task(
        client.post("/v1/payments", json=card_payment(), headers={**headers, "Prefer": "wait=5"})
    )
    pump = PaymentPump(container.db, container.vault, container.processors)
    async with asyncio.timeout(15):
        while not post.done():
            await pump.run_batch(1000)
            await asyncio.sleep(0.05)
    first = post.result()
    CREATED.append(first.json()["id"])
    assert first.json()["status"] == "succeeded"
    replay = await client.post("/v1/payments", json=card_payment(), headers={**headers, "Prefer": "wait=5"})
    assert replay.status_code == 202
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["id"] == first.json()["id"]
    assert replay.json()["status"] == "processing"


# -- Server-Sent Events -----------------------------------------------------------------------------------


async def sse(response: httpx.Response) -> AsyncIterator[dict[str, str]]:
    """Events as dicts of their fields; a comment line comes as {"comment": text}."""
    event: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if event:
                yield event
            event = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            name, _, value = line.partition(":")
            event[name] = value.removeprefix(" ")
    if event:
        yield event


async def test_sse_streams_the_payment_then_every_change_and_ends_after_a_final_status(
    server_url: str, client: httpx.AsyncClient, container: Any, merchant: Any
) -> None:
    pid = await create(client, merchant)
    async with (
        asyncio.timeout(15),
        httpx.AsyncClient(base_url=server_url, timeout=10) as http,
        http.stream("GET", f"/v1/payments/{pid}/events", headers=auth(merchant.secret_key)) as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache"
        assert r.headers["x-accel-buffering"] == "no"
        events = sse(r)

        first = await anext(events)
        assert (first["event"], first["id"]) == ("payment.updated", f"{pid}.1")
        payment = orjson.loads(first["data"])
        assert (payment["id"], payment["object"], payment["status"]) == (pid, "payment", "processing")

        await set_status(container, pid, "requires_action")
        second = await anext(events)
        assert second["id"] == f"{pid}.2"
        assert orjson.loads(second["data"])["status"] == "requires_action"

        await set_status(container, pid, "succeeded")
        third = await anext(events)
        assert (third["event"], third["id"]) == ("payment.updated", f"{pid}.3")
        assert orjson.loads(third["data"])["status"] == "succeeded"

        assert [e async for e in events] == []  # and the stream is over


async def test_sse_on_a_final_payment_sends_one_event_and_ends(
    server_url: str, client: httpx.AsyncClient, container: Any, merchant: Any
) -> None:
    pid = await create(client, merchant)
    await set_status(container, pid, "failed")
    async with asyncio.timeout(10), httpx.AsyncClient(base_url=server_url, timeout=10) as http:
        r = await http.get(f"/v1/payments/{pid}/events", headers=auth(merchant.secret_key))
    assert r.status_code == 200
    assert r.text.count("event: payment.updated") == 1
    data = [line for line in r.text.splitlines() if line.startswith("data: ")]
    assert orjson.loads(data[0].removeprefix("data: "))["status"] == "failed"


async def test_sse_for_another_merchants_payment_is_a_json_404(
    server_url: str, client: httpx.AsyncClient, container: Any, merchant: Any
) -> None:
    pid = await create(client, merchant)
    other = await create_merchant(container.db, "Nosy shop")
    async with asyncio.timeout(10), httpx.AsyncClient(base_url=server_url, timeout=10) as http:
        r = await http.get(f"/v1/payments/{pid}/events", headers=auth(other.secret_key))
        unknown = await http.get("/v1/payments/pay_nope/events", headers=auth(merchant.secret_key))
        anonymous = await http.get(f"/v1/payments/{pid}/events")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]["type"] == "not_found"
    assert unknown.status_code == 404
    assert anonymous.status_code == 401


async def test_sse_keeps_alive_and_lets_go_when_the_client_disconnects(
    server_url: str, client: httpx.AsyncClient, merchant: Any, hub: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tender.http import sse as stream

    monkeypatch.setattr(stream, "KEEPALIVE_SECONDS", 0.2)
    pid = await create(client, merchant)
    async with asyncio.timeout(10), httpx.AsyncClient(base_url=server_url, timeout=10) as http:
        async with http.stream("GET", f"/v1/payments/{pid}/events", headers=auth(merchant.secret_key)) as r:
            events = sse(r)
            assert (await anext(events))["event"] == "payment.updated"
            assert await anext(events) == {"comment": "keep-alive"}
            assert await anext(events) == {"comment": "keep-alive"}
            assert hub.waiting(pid) == 1
        # The client hung up while the payment is still processing: the stream stops and unsubscribes.
        await until(lambda: hub.waiting(pid) == 0, within=5)


# -- the hub: one connection for many waiters, recovery, re-check -----------------------------------------


async def database_connections(container: Any) -> int:
    async with await psycopg.AsyncConnection.connect(container.db.url, autocommit=True) as conn:
        cur = await conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


def pool_in_use(container: Any) -> int:
    stats = container.db.pool.get_stats()
    return int(stats["pool_size"] - stats["pool_available"])


async def test_a_thousand_waiters_cost_no_connections_and_all_wake(
    client: httpx.AsyncClient, container: Any, merchant: Any, hub: Any
) -> None:
    pids: list[str] = []
    for _ in range(20):
        pids += await asyncio.gather(*(create(client, merchant) for _ in range(50)))
    headers = {**auth(merchant.secret_key), "Prefer": "wait=20"}
    limit = container.db.pool.max_size + 5

    peak = 0

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, await database_connections(container))
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    try:
        waiters = [asyncio.create_task(client.get(f"/v1/payments/{pid}", headers=headers)) for pid in pids]
        await until(lambda: hub.waiting() == len(pids), within=15, what="1,000 subscriptions")
        await until(lambda: pool_in_use(container) == 0, within=10)  # every first read is done ...
        assert hub.waiting() == len(pids)  # ... and all 1,000 still wait, holding no connection
        assert not any(w.done() for w in waiters)
        while_waiting = await database_connections(container)

        changed = await set_status(container, pids, "succeeded")
        responses = await asyncio.gather(*waiters)
        woke_in = now() - changed
    finally:
        sampler.cancel()
    assert while_waiting <= limit
    assert peak <= limit, f"{peak} connections while 1,000 requests waited (pool max {container.db.pool.max_size})"
    assert all(r.status_code == 200 for r in responses)
    assert all(r.json()["status"] == "succeeded" for r in responses)
    assert {r.json()["id"] for r in responses} == set(pids)
    assert all(r.headers["preference-applied"] == "wait=20" for r in responses)
    assert woke_in < 15  # woken by their notifications, not by the 20 s running out
    assert hub.waiting() == 0


async def test_the_hub_recovers_when_its_listen_connection_is_killed(
    client: httpx.AsyncClient, container: Any, merchant: Any, hub: Any
) -> None:
    pid = await create(client, merchant)
    waiter = asyncio.create_task(
        client.get(f"/v1/payments/{pid}", headers={**auth(merchant.secret_key), "Prefer": "wait=20"})
    )
    await until(lambda: hub.waiting(pid) == 1)
    connections = hub.connections

    async with await psycopg.AsyncConnection.connect(container.db.url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE query = 'LISTEN \"payment_status\"' AND datname = current_database()"
        )
        assert [row[0] for row in await cur.fetchall()] == [True]

    await until(lambda: hub.connections > connections and hub.listening, within=10, what="reconnect")
    await asyncio.sleep(0.2)  # the reconnect woke the waiter, which re-read `processing` and waits again
    assert not waiter.done()
    assert hub.waiting(pid) == 1

    changed = await set_status(container, pid, "succeeded")
    async with asyncio.timeout(5):
        r = await waiter
    assert r.json()["status"] == "succeeded"
    assert now() - changed < 3


async def test_a_change_while_nobody_listened_is_seen_after_the_reconnect(container: Any) -> None:
    """Subscribed while the connection is down: the reconnect itself wakes the subscriber."""
    from tender.services.live import PaymentStatusHub

    hub = PaymentStatusHub(container.db.url, backoff_initial=0.5, backoff_max=0.5)
    await hub.start()
    try:
        async with hub.subscribe("pay_whatever") as sub:
            async with await psycopg.AsyncConnection.connect(container.db.url, autocommit=True) as conn:
                await conn.execute("SELECT pg_terminate_backend(%s)", (hub.backend_pid,))
            await until(lambda: not hub.listening, within=5)
            assert await sub.wait(5)  # the reconnect woke it, with no notification at all
            assert hub.listening
            assert hub.connections == 2
    finally:
        await hub.stop()


async def test_waiters_recheck_when_no_notification_comes(
    container: Any, client: httpx.AsyncClient, merchant: Any
) -> None:
    """A hub that hears nothing (stopped here) still answers truthfully: waiters re-read periodically."""
    from tender.api.app import create_app

    deaf = create_app(container)
    await deaf.state.hub.stop()  # never listens, and does not start itself on first use
    deaf.state.hub.recheck_seconds = 0.3
    pid = await create(client, merchant)
    change = asyncio.create_task(set_status_later(container, pid, "succeeded", 0.5))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=deaf), base_url="http://tender.test") as c:
        started = now()
        r = await c.get(f"/v1/payments/{pid}", headers={**auth(merchant.secret_key), "Prefer": "wait=10"})
    await change
    assert r.json()["status"] == "succeeded"
    assert now() - started < 3
    assert deaf.state.hub.connections == 0
