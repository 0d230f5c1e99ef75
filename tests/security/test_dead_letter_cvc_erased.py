"""Finding 11: "A dead-lettered authorization keeps its encrypted CVC for ever: erase it after a bounded time."
Housekeeping erases the CVC of a payment still processing after TENDER_CVC_RETENTION_HOURS; from then on the
authorization is only looked up, never sent again: the processor's answer is applied if it has one, else the
payment fails `processor_unreachable`. Every path that ends an authorization erases the CVC at once. Real
PostgreSQL, the real simulator (in process), the API in process."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from tender.config import Settings
from tender.processors.base import AuthorizeRequest, CardData
from tender.services import maintenance
from tests.support.api import auth
from tests.support.payments import attempt_of, authorizer, drain, get, make_due, pay

pytestmark = pytest.mark.integration


async def cvc_of(container: Any, payment_id: str) -> bytes | None:
    async with container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT v.cvc_ct FROM vault_cards v JOIN payments p ON p.card_id = v.id WHERE p.id = %s", (payment_id,)
        )
        row = await cur.fetchone()
    assert row is not None
    return row["cvc_ct"] if row["cvc_ct"] is None else bytes(row["cvc_ct"])


async def execute(container: Any, query: str, *params: Any) -> None:
    async with container.db.connection() as conn:
        await conn.execute(query, params)


async def dead_lettered(api: Any, container: Any, merchant: Any, simulator_url: str) -> dict[str, Any]:
    """A card payment whose processor refused every try (503): processing, a dead letter, its CVC still kept."""
    a = authorizer(container, max_tries=2, janitor_seconds=3600)
    async with httpx.AsyncClient(base_url=simulator_url) as sim:
        await sim.post("/_sim/config", json={"error_rate": 1.0})
        try:
            created = await pay(api, merchant)
            for _ in range(2):
                await make_due(container, created["id"])
                await a.run_batch(1000)
        finally:
            await sim.post("/_sim/config", json={"error_rate": 0.0})
    assert (await get(api, merchant, created["id"]))["status"] == "processing"
    assert await cvc_of(container, created["id"]) is not None
    return created


async def sim_authorizations(simulator_url: str, payment_id: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=simulator_url) as sim:
        return list((await sim.get("/_sim/authorizations", params={"payment": payment_id})).json()["data"])


def test_the_retention_is_configurable_and_a_day_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().cvc_retention_hours == 24
    monkeypatch.setenv("TENDER_CVC_RETENTION_HOURS", "2")
    assert Settings().cvc_retention_hours == 2
    monkeypatch.setenv("TENDER_CVC_RETENTION_HOURS", "0")
    with pytest.raises(ValueError, match="cvc_retention_hours"):
        Settings()


async def test_a_young_dead_letter_keeps_its_cvc_an_old_one_loses_it_with_a_log_line(
    api: Any, container: Any, merchant: Any, simulator_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    p = await dead_lettered(api, container, merchant, simulator_url)
    await maintenance.erase_expired_cvcs(container.db, hours=24)
    assert await cvc_of(container, p["id"]) is not None  # within the retention: an operator may still retry

    await execute(container, "UPDATE payments SET created = now() - interval '25 hours' WHERE id = %s", p["id"])
    with caplog.at_level(logging.WARNING, logger="tender.services.maintenance"):
        erased = await maintenance.erase_expired_cvcs(container.db, hours=24)
    assert erased >= 1
    assert await cvc_of(container, p["id"]) is None
    assert any("erased the CVC of" in r.getMessage() for r in caplog.records)


async def test_after_erasure_a_payment_the_processor_never_saw_fails_and_is_never_sent(
    api: Any, container: Any, merchant: Any, simulator_url: str
) -> None:
    p = await dead_lettered(api, container, merchant, simulator_url)
    admin = auth(container.settings.admin_key.get_secret_value())
    await execute(container, "UPDATE payments SET created = now() - interval '25 hours' WHERE id = %s", p["id"])
    await maintenance.erase_expired_cvcs(container.db, hours=24)
    # An operator retries the dead letter: fresh tries, but the authorization can only be looked up now.
    letters = (await api.get("/admin/v1/dead_letters?status=open&limit=100", headers=admin)).json()["data"]
    [letter] = [d for d in letters if d["object_id"] == p["id"]]
    assert (await api.post(f"/admin/v1/dead_letters/{letter['id']}/retry", headers=admin)).status_code == 200

    await drain(authorizer(container))

    done = await get(api, merchant, p["id"])
    assert (done["status"], done["failure_code"]) == ("failed", "processor_unreachable")
    assert "nothing was charged" in done["failure_message"]
    assert await sim_authorizations(simulator_url, p["id"]) == []  # never sent, with or without a CVC
    attempt = await attempt_of(container, p["id"])
    assert (attempt["status"], attempt["finished"] is not None) == ("declined", True)
    async with container.db.connection() as conn:
        cur = await conn.execute("SELECT next_run_at FROM payments WHERE id = %s", (p["id"],))
        assert (await cur.fetchone())["next_run_at"] is None  # final: nothing hangs
    resolved = (await api.get("/admin/v1/dead_letters?status=resolved&limit=100", headers=admin)).json()["data"]
    assert letter["id"] in {d["id"] for d in resolved}


async def test_after_erasure_an_authorization_the_processor_has_is_applied(
    api: Any, container: Any, merchant: Any, simulator_url: str
) -> None:
    """A call that reached the processor although Tender never heard back: the look-up needs no CVC."""
    p = await dead_lettered(api, container, merchant, simulator_url)
    attempt = await attempt_of(container, p["id"])
    await container.processors["simulator"].authorize(
        AuthorizeRequest(
            reference=attempt["id"],
            payment_id=p["id"],
            amount=2500,
            currency="BRL",
            capture=True,
            card=CardData("4242424242424242", 10, 2030, "123", None),
        )
    )  # the dead letter's call, landing late
    await execute(container, "UPDATE payments SET created = now() - interval '25 hours' WHERE id = %s", p["id"])
    assert await maintenance.erase_expired_cvcs(container.db, hours=24) >= 1
    # Erasure makes it due at once: the janitor's look-up finds the charge.
    await authorizer(container, max_tries=2, janitor_seconds=3600).run_batch(1000)
    done = await get(api, merchant, p["id"])
    assert (done["status"], done["amount_captured"]) == ("succeeded", 2500)
    assert len(await sim_authorizations(simulator_url, p["id"])) == 1


@pytest.mark.parametrize(
    ("number", "capture", "status"),
    [
        ("4242424242424242", True, "succeeded"),
        ("4242424242424242", False, "requires_capture"),
        ("4000000000000002", True, "failed"),
        ("4000002760003184", True, "requires_action"),
    ],
)
async def test_every_end_of_authorization_erases_the_cvc_at_once(
    api: Any, container: Any, merchant: Any, number: str, capture: bool, status: str
) -> None:
    created = await pay(api, merchant, number, capture=capture, return_url="https://shop.example/back")
    assert await cvc_of(container, created["id"]) is not None  # kept until the processor has answered
    await drain(authorizer(container))
    assert (await get(api, merchant, created["id"]))["status"] == status
    assert await cvc_of(container, created["id"]) is None
