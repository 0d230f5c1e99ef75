"""Payments accepted in batches (services/intake.py, issue 16): concurrent POSTs share one transaction, and every
answer is the one the one-by-one path gives: replays, 409s, duplicate references and velocity refusals included,
nothing half-written."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.support.api import auth, card_payment
from tests.support.payments import authorizer, drain

pytestmark = pytest.mark.integration

DECLINED = "4000000000000002"  # card_declined: counted by the per-card velocity limit


async def burst(api: Any, key: str, bodies: list[dict[str, Any]], keys: list[str | None]) -> list[Any]:
    """POST all at once: the requests meet in the intake while earlier batches are written."""

    async def one(body: dict[str, Any], idem: str | None) -> Any:
        headers = auth(key) | ({"Idempotency-Key": idem} if idem else {})
        return await api.post("/v1/payments", json=body, headers=headers)

    return list(await asyncio.gather(*(one(b, k) for b, k in zip(bodies, keys, strict=True))))


async def rows(container: Any, merchant_id: str) -> dict[str, int]:
    async with container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT (SELECT count(*) FROM payments WHERE merchant_id = %(m)s) AS payments,"
            " (SELECT count(*) FROM vault_cards WHERE merchant_id = %(m)s) AS cards,"
            " (SELECT count(*) FROM idempotency_keys WHERE merchant_id = %(m)s) AS keys,"
            " (SELECT count(*) FROM idempotency_keys WHERE merchant_id = %(m)s AND status_code IS NULL) AS unanswered",
            {"m": merchant_id},
        )
        row = await cur.fetchone()
    return {k: int(v) for k, v in row.items()}


def batch_metrics() -> list[float]:
    """This process's tender_payment_batches_total and tender_payments_batched_total."""
    return [REGISTRY.get_sample_value(f"tender_{m}_total") or 0.0 for m in ("payment_batches", "payments_batched")]


def refs(n: int) -> list[str]:
    run = uuid.uuid4().hex[:8]
    return [f"intake-{run}-{i}" for i in range(n)]


async def test_a_burst_is_written_in_batches_and_each_answer_is_stored_under_its_key(
    api: Any, container: Any, merchant: Any
) -> None:
    before = container.intake.counts.batches, container.intake.counts.payments
    metrics_before = [
        REGISTRY.get_sample_value(f"tender_{m}_total") or 0 for m in ("payment_batches", "payments_batched")
    ]
    references = refs(60)
    keys: list[str | None] = [f"k-{r}" if i % 2 == 0 else None for i, r in enumerate(references)]
    answers = await burst(api, merchant.secret_key, [card_payment(reference=r) for r in references], keys)
    assert [a.status_code for a in answers] == [202] * 60, [a.text for a in answers if a.status_code != 202]
    counts = container.intake.counts
    batches, batched = counts.batches - before[0], counts.payments - before[1]
    assert batched == 60 and batches < 60, (batches, batched)  # at least one batch held several payments
    assert counts.largest > 1
    # /metrics says the same (api/metrics.py: the app hooks the intake's committed batches).
    assert [after - was for after, was in zip(batch_metrics(), metrics_before, strict=True)] == [batches, 60]
    assert await rows(container, merchant.merchant.id) == {"payments": 60, "cards": 60, "keys": 30, "unanswered": 0}
    for answer, reference, key in zip(answers, references, keys, strict=True):
        body = answer.json()
        assert body["reference"] == reference and body["status"] == "processing"
        assert answer.headers["location"] == f"/v1/payments/{body['id']}"
        assert "4242424242424242" not in answer.text and "cvc" not in answer.text
        if key is not None:  # the stored answer, byte for byte
            replay = await api.post(
                "/v1/payments",
                json=card_payment(reference=reference),
                headers=auth(merchant.secret_key) | {"Idempotency-Key": key},
            )
            assert replay.status_code == 202 and replay.headers.get("idempotent-replayed") == "true"
            assert replay.content == answer.content
    # The worker finds every one of them due.
    await drain(authorizer(container))
    async with container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT status, count(*) AS n FROM payments WHERE merchant_id = %s GROUP BY status", (merchant.merchant.id,)
        )
        assert {r["status"]: r["n"] for r in await cur.fetchall()} == {"succeeded": 60}


async def test_the_same_key_or_reference_twice_in_a_burst_makes_one_payment(
    api: Any, container: Any, merchant: Any
) -> None:
    [shared_ref, other_ref] = refs(2)
    same_key = [card_payment(reference=other_ref)] * 8
    answers = await burst(api, merchant.secret_key, same_key, ["one-key"] * 8)
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(202) >= 1 and set(statuses) <= {202, 409}, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers if a.status_code == 202}) == 1  # replays of one payment
    same_reference = [card_payment(reference=shared_ref)] * 8
    answers = await burst(api, merchant.secret_key, same_reference, [None] * 8)
    assert sorted(a.status_code for a in answers) == [202] + [409] * 7
    duplicates = [a.json()["error"] for a in answers if a.status_code == 409]
    assert {d["code"] for d in duplicates} == {"duplicate_reference"} and {d["param"] for d in duplicates} == {
        "reference"
    }
    assert (await rows(container, merchant.merchant.id))["payments"] == 2


async def test_a_reference_taken_before_sends_the_batch_one_by_one_with_the_same_answers(
    api: Any, container: Any, merchant: Any
) -> None:
    [taken, *fresh] = refs(12)
    first = await api.post("/v1/payments", json=card_payment(reference=taken), headers=auth(merchant.secret_key))
    assert first.status_code == 202
    bodies = [card_payment(reference=r) for r in [taken, *fresh, taken]]
    keys: list[str | None] = [f"k-{i}-{uuid.uuid4().hex[:6]}" for i in range(len(bodies))]
    answers = await burst(api, merchant.secret_key, bodies, keys)
    by_ref = [(b["reference"], a.status_code) for b, a in zip(bodies, answers, strict=True)]
    assert [s for r, s in by_ref if r == taken] == [409, 409]
    assert [s for r, s in by_ref if r != taken] == [202] * 11
    for a in answers:
        if a.status_code == 409:
            assert a.json()["error"]["payment"] == first.json()["id"]
    # A refused request stored nothing under its key (as one by one): the same key may be used again.
    assert await rows(container, merchant.merchant.id) == {"payments": 12, "cards": 12, "keys": 11, "unanswered": 0}


async def test_a_card_over_its_velocity_limit_is_refused_alone_and_the_rest_of_its_batch_goes_through(
    api: Any, container: Any, merchant: Any
) -> None:
    for _ in range(10):  # the default limit: 10 declines per card and hour
        r = await api.post("/v1/payments", json=card_payment(DECLINED), headers=auth(merchant.secret_key))
        assert r.status_code == 202
    await drain(authorizer(container))
    before = await rows(container, merchant.merchant.id)
    bodies = [card_payment(DECLINED if i % 5 == 0 else "4242424242424242", reference=r) for i, r in enumerate(refs(20))]
    keys: list[str | None] = [f"v-{uuid.uuid4().hex}" for _ in bodies]
    answers = await burst(api, merchant.secret_key, bodies, keys)
    statuses = [a.status_code for a in answers]
    assert statuses == [429 if i % 5 == 0 else 202 for i in range(20)], [a.text for a in answers]
    assert all(int(a.headers["retry-after"]) > 0 for a in answers if a.status_code == 429)
    after = await rows(container, merchant.merchant.id)
    assert after["payments"] - before["payments"] == 16 and after["cards"] - before["cards"] == 16
    assert after["keys"] - before["keys"] == 16 and after["unanswered"] == 0  # no key kept for a refusal


async def test_a_key_used_before_with_another_body_is_refused_inside_a_burst(
    api: Any, container: Any, merchant: Any
) -> None:
    [ref, *others] = refs(10)
    key = f"reuse-{uuid.uuid4().hex}"
    first = await api.post(
        "/v1/payments", json=card_payment(reference=ref), headers=auth(merchant.secret_key) | {"Idempotency-Key": key}
    )
    assert first.status_code == 202
    bodies = [card_payment(reference=ref, amount=999), *(card_payment(reference=r) for r in others)]
    answers = await burst(api, merchant.secret_key, bodies, [key, *(None for _ in others)])
    assert answers[0].status_code == 422 and answers[0].json()["error"]["param"] == "Idempotency-Key"
    assert [a.status_code for a in answers[1:]] == [202] * 9
    assert (await rows(container, merchant.merchant.id))["payments"] == 10


async def test_an_invalid_request_in_a_burst_gets_its_400_and_writes_nothing(
    api: Any, container: Any, merchant: Any
) -> None:
    references = refs(10)
    bodies = [card_payment(reference=r) for r in references]
    bodies[3] = card_payment("4242424242424241", reference=references[3])  # fails the Luhn check
    bodies[6] = {**card_payment(reference=references[6]), "currency": "XYZ"}
    answers = await burst(api, merchant.secret_key, bodies, [f"bad-{uuid.uuid4().hex}" for _ in bodies])
    assert answers[3].status_code == 400 and answers[3].json()["error"]["param"] == "payment_method.card.number"
    assert "4242424242424241" not in answers[3].text
    assert answers[6].status_code == 400 and answers[6].json()["error"]["param"] == "currency"
    assert [a.status_code for i, a in enumerate(answers) if i not in (3, 6)] == [202] * 8
    assert await rows(container, merchant.merchant.id) == {"payments": 8, "cards": 8, "keys": 8, "unanswered": 0}


async def test_a_request_its_route_refuses_gets_its_400_alone_and_the_rest_of_its_batch_goes_through(
    api: Any, container: Any, merchant: Any
) -> None:
    # Rules saved on a Tender where simulator_c was on: USD payments have no processor left here.
    async with container.db.transaction() as conn:
        await conn.execute(
            "INSERT INTO routing_rules (merchant_id, rules) VALUES (%s, %s::jsonb)",
            (merchant.merchant.id, '[{"currency": "USD", "processors": ["simulator_c"]}]'),
        )
    references = refs(24)
    bodies = [card_payment(reference=r, currency="USD" if i % 6 == 0 else "BRL") for i, r in enumerate(references)]
    for keys in ([None] * 12 + [f"route-{uuid.uuid4().hex}" for _ in range(12)],):
        answers = await burst(api, merchant.secret_key, bodies, keys)
        for i, answer in enumerate(answers):
            if i % 6 == 0:
                assert answer.status_code == 400 and answer.json()["error"]["param"] == "processor", answer.text
            else:
                assert answer.status_code == 202, answer.text
    assert await rows(container, merchant.merchant.id) == {"payments": 20, "cards": 20, "keys": 10, "unanswered": 0}


async def test_a_stalled_batch_holds_up_the_requests_behind_it_only_until_the_spare_writer_starts(
    api: Any, container: Any, merchant: Any
) -> None:
    """One batch is written at a time; one stuck on a lock (another transaction holds its merchant's row) lets a
    second writer take the requests behind it after `stall_seconds`, instead of holding them up to the lock timeout."""
    from tender.services.merchants import create_merchant

    blocked = await create_merchant(container.db, f"Locked {uuid.uuid4().hex[:6]}")
    locked, release = asyncio.Event(), asyncio.Event()

    async def hold_the_merchant_row() -> None:
        async with container.db.transaction() as conn:  # the payment's foreign key check waits for it
            await conn.execute("SELECT id FROM merchants WHERE id = %s FOR UPDATE", (blocked.merchant.id,))
            locked.set()
            await release.wait()

    holder = asyncio.create_task(hold_the_merchant_row())
    await locked.wait()
    stuck = asyncio.create_task(api.post("/v1/payments", json=card_payment(), headers=auth(blocked.secret_key)))
    try:
        await asyncio.sleep(0.05)
        assert not stuck.done()  # its batch waits for the lock
        others = [card_payment(reference=r) for r in refs(10)]
        answers = await asyncio.wait_for(burst(api, merchant.secret_key, others, [None] * 10), 5)
        assert [a.status_code for a in answers] == [202] * 10
        assert not stuck.done()  # the others went past it
    finally:
        release.set()
        await holder
    answer = await stuck
    assert answer.status_code == 202 and answer.json()["status"] == "processing"
    assert (await rows(container, blocked.merchant.id))["payments"] == 1
