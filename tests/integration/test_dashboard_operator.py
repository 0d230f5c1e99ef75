"""The dashboard's operator pages over the in-process app (httpx): merchants (create with the keys shown once,
fee plan and routing edited, reviewed and saved, "view as"), dead letters (retry), processors (pause and
resume), the ledger check and reconciliation runs.

Every page answers 200 to an operator and the 404 page to a merchant's user, whose POSTs (with a valid CSRF
token) do nothing; a POST without the CSRF token is refused (403) and does nothing; a form submitted twice
acts once (the same Idempotency-Key as the admin API).
"""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tender.services import fee_plans, processor_health, reconciliation
from tender.services import routing as routing_service
from tender.services.merchants import NewMerchant, create_merchant
from tests.support.dashboard_client import csrf_of, dashboard_client, new_user, operator_sign_in, sign_in

pytestmark = pytest.mark.integration

_KEY = re.compile(r'name="idempotency_key" value="([^"]+)"')


def key_of(html: str) -> str:
    found = _KEY.search(html)
    assert found, "no idempotency key in the form"
    return found.group(1)


@pytest.fixture
async def operator(container: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with dashboard_client(container) as client:
        r = await operator_sign_in(client, container.settings.admin_key.get_secret_value())
        assert r.status_code == 303
        yield client


@pytest.fixture
async def user(container: Any, merchant: NewMerchant) -> AsyncIterator[httpx.AsyncClient]:
    """A merchant's user, signed in."""
    async with dashboard_client(container) as client:
        r = await sign_in(client, await new_user(container, merchant.merchant.id))
        assert r.status_code == 303
        yield client


async def dead_letter(container: Any, kind: str = "payment", status: str = "open") -> str:
    letter = f"dl_{uuid.uuid4().hex}"
    async with container.db.connection() as conn:
        await conn.execute(
            "INSERT INTO dead_letters (id, kind, object_id, operation, tries, last_error, processor, status)"
            " VALUES (%s, %s, %s, 'authorize', 8, 'processor unreachable: connection refused', 'simulator', %s)",
            (letter, kind, f"pay_{uuid.uuid4().hex[:26]}", status),
        )
    return letter


async def resolve(container: Any, letter: str) -> None:
    async with container.db.connection() as conn:
        await conn.execute("UPDATE dead_letters SET status = 'resolved' WHERE id = %s", (letter,))


async def letter_row(container: Any, letter: str) -> dict[str, Any]:
    async with container.db.connection() as conn:
        cur = await conn.execute("SELECT status, updated FROM dead_letters WHERE id = %s", (letter,))
        row = await cur.fetchone()
    assert row is not None
    return dict(row)


async def test_every_operator_page_is_the_operators_and_a_404_for_a_merchants_user(
    container: Any, merchant: NewMerchant, operator: httpx.AsyncClient, user: httpx.AsyncClient
) -> None:
    letter = await dead_letter(container)
    run = await reconciliation.run(container.db, container.processors["simulator"], datetime.now(UTC).date(), UTC)
    m = merchant.merchant.id
    pages = [
        "/dashboard/operator/merchants", "/dashboard/operator/merchants/new", f"/dashboard/operator/merchants/{m}",
        f"/dashboard/operator/merchants/{m}/fee-plan", f"/dashboard/operator/merchants/{m}/routing",
        "/dashboard/operator/dead-letters", "/dashboard/operator/dead-letters?status=open",
        f"/dashboard/operator/dead-letters/{letter}", f"/dashboard/operator/dead-letters/{letter}/retry",
        "/dashboard/operator/processors", "/dashboard/operator/processors/simulator/pause",
        "/dashboard/operator/processors/simulator/resume", "/dashboard/operator/ledger",
        "/dashboard/operator/reconciliations", "/dashboard/operator/reconciliations?processor=simulator",
        f"/dashboard/operator/reconciliations/{run.run_id}", "/dashboard/operator/reconciliations/run",
    ]  # fmt: skip
    try:
        for path in pages:
            mine = await operator.get(path)
            assert mine.status_code == 200, (path, mine.text[:300])
            assert (
                mine.headers["cache-control"] == "no-store"
                and "frame-ancestors 'none'" in mine.headers["content-security-policy"]
            )
            theirs = await user.get(path)
            assert theirs.status_code == 404, path
            assert "There is nothing here" in theirs.text and letter not in theirs.text
        # Unknown objects are the 404 page too, for the operator.
        unknown = (
            "/dashboard/operator/merchants/mer_nope", "/dashboard/operator/dead-letters/dl_nope",
            "/dashboard/operator/reconciliations/rec_nope", "/dashboard/operator/processors/nope/pause",
            f"/dashboard/operator/merchants/{m}/nope", "/dashboard/operator/processors/simulator/stop",
        )  # fmt: skip
        for path in unknown:
            assert (await operator.get(path)).status_code == 404, path
        # The user's POSTs, with their own valid CSRF token, do nothing.
        csrf = csrf_of((await user.get("/dashboard")).text)
        posts = {
            "/dashboard/operator/merchants/new": {"name": "Sneaky"},
            f"/dashboard/operator/dead-letters/{letter}/retry": {},
            "/dashboard/operator/processors/simulator/pause": {"reason": "sneaky"},
            "/dashboard/operator/reconciliations/run": {"processor": "simulator", "date": "2026-01-01"},
            f"/dashboard/operator/merchants/{m}/fee-plan/review": {"rules": '{"rules": []}'},
            f"/dashboard/operator/merchants/{m}/routing": {"rules": '{"rules": []}'},
        }
        for path, data in posts.items():
            r = await user.post(path, data={**data, "csrf_token": csrf, "idempotency_key": str(uuid.uuid4())})
            assert r.status_code == 404, path
        assert (await letter_row(container, letter))["status"] == "open"
        statuses = await processor_health.statuses(container.db, container.settings.circuit_policy, ["simulator"])
        assert not statuses[0].paused
    finally:
        await resolve(container, letter)


async def test_the_merchants_list_and_view_as(
    container: Any, merchant: NewMerchant, operator: httpx.AsyncClient
) -> None:
    page = await operator.get("/dashboard/operator/merchants")
    m = merchant.merchant
    assert m.name in page.text and f'href="/dashboard/operator/merchants/{m.id}"' in page.text
    assert f'name="merchant" value="{m.id}"' in page.text  # its "view as" form, to D1's merchant choice
    chosen = await operator.post("/dashboard/merchant", data={"csrf_token": csrf_of(page.text), "merchant": m.id})
    assert chosen.status_code == 303
    assert (await operator.get("/dashboard/payments")).status_code == 200
    assert f"<h1>{m.name}</h1>" in (await operator.get("/dashboard")).text


async def test_creating_a_merchant_shows_its_keys_once_and_a_double_submit_creates_one(
    container: Any, api: httpx.AsyncClient, operator: httpx.AsyncClient
) -> None:
    form = await operator.get("/dashboard/operator/merchants/new")
    name = f"Dashboard Shop {uuid.uuid4().hex[:6]}"
    data = {"csrf_token": csrf_of(form.text), "idempotency_key": key_of(form.text), "name": name}
    first = await operator.post("/dashboard/operator/merchants/new", data=data)
    assert first.status_code == 200, first.text[:500]
    secret = re.search(r'data-testid="secret-1">(sk_test_[^<]+)<', first.text)
    assert secret and "pk_test_" in first.text and "Copy the keys now" in first.text
    again = await operator.post("/dashboard/operator/merchants/new", data=data)
    assert again.status_code == 200 and secret.group(1) in again.text and "already sent" in again.text
    async with container.db.connection() as conn:
        cur = await conn.execute("SELECT count(*) AS n FROM merchants WHERE name = %s", (name,))
        assert (await cur.fetchone())["n"] == 1
    # The key shown works on the API.
    me = await api.get("/v1/balance", headers={"Authorization": f"Bearer {secret.group(1)}"})
    assert me.status_code == 200, me.text
    # No name: a 400 naming the field, nothing created.
    form = await operator.get("/dashboard/operator/merchants/new")
    empty = await operator.post(
        "/dashboard/operator/merchants/new",
        data={"csrf_token": csrf_of(form.text), "idempotency_key": key_of(form.text), "name": ""},
    )
    assert empty.status_code == 400 and "param <code>name</code>" in empty.text


async def test_a_fee_plan_is_reviewed_then_saved_and_errors_name_the_field(
    container: Any, merchant: NewMerchant, operator: httpx.AsyncClient
) -> None:
    m = merchant.merchant.id
    edit = await operator.get(f"/dashboard/operator/merchants/{m}/fee-plan")
    assert '"payment_method": "*"' in html.unescape(edit.text)  # the default plan, as JSON to edit
    csrf = csrf_of(edit.text)
    bad = (
        '{"rules": [{"payment_method": "*", "funding": "*", "percent": "2.12345", "delay_days": 30, "starts": "paid"}]}'
    )
    r = await operator.post(
        f"/dashboard/operator/merchants/{m}/fee-plan/review", data={"csrf_token": csrf, "rules": bad}
    )
    assert r.status_code == 400 and "param <code>rules[0].percent</code>" in r.text
    assert "2.12345" in r.text  # the text typed is kept in the box to fix it
    broken = await operator.post(
        f"/dashboard/operator/merchants/{m}/fee-plan/review", data={"csrf_token": csrf, "rules": "{not json"}
    )
    assert broken.status_code == 400 and "param <code>rules</code>" in broken.text
    good = (
        '{"rules": [{"payment_method": "*", "funding": "*", "percent": "3.49", "fixed": {"BRL": 39},'
        ' "delay_days": 14, "starts": "waiting_funds"}, {"payment_method": "card", "funding": "debit",'
        ' "percent": 1.5, "delay_days": 2, "starts": "waiting_funds"}]}'
    )
    review = await operator.post(
        f"/dashboard/operator/merchants/{m}/fee-plan/review", data={"csrf_token": csrf, "rules": good}
    )
    assert review.status_code == 200 and "3.49%" in review.text and "0.39 BRL" in review.text
    assert (await fee_plans.get_plan(container.db, m)).default  # nothing saved by the review
    again = await operator.post(
        f"/dashboard/operator/merchants/{m}/fee-plan/edit", data={"csrf_token": csrf, "rules": good}
    )
    assert again.status_code == 200 and '"percent": "3.49"' in html.unescape(again.text)  # the text reviewed, back
    saved = await operator.post(f"/dashboard/operator/merchants/{m}/fee-plan", data={"csrf_token": csrf, "rules": good})
    assert saved.status_code == 303 and saved.headers["location"].endswith("?done=fee-plan")
    plan = await fee_plans.get_plan(container.db, m)
    assert not plan.default and str(plan.plan.rule_for("card", "debit").percent) == "1.5"
    page = await operator.get(saved.headers["location"])
    assert "Fee plan saved" in page.text and "3.49%" in page.text and "The merchant's own plan." in page.text


async def test_routing_rules_are_checked_like_the_api_and_saved(
    container: Any, merchant: NewMerchant, operator: httpx.AsyncClient
) -> None:
    m = merchant.merchant.id
    edit = await operator.get(f"/dashboard/operator/merchants/{m}/routing")
    csrf = csrf_of(edit.text)
    unknown = '{"rules": [{"currency": "EUR", "processors": ["simulator", "nowhere"]}]}'
    r = await operator.post(
        f"/dashboard/operator/merchants/{m}/routing/review", data={"csrf_token": csrf, "rules": unknown}
    )
    assert r.status_code == 400 and "param <code>rules[0].processors[1]</code>" in r.text
    # Saving straight away (no review) checks the same way, and writes nothing.
    r = await operator.post(f"/dashboard/operator/merchants/{m}/routing", data={"csrf_token": csrf, "rules": unknown})
    assert r.status_code == 400 and (await routing_service.get(container.db, m, default=["simulator"]))["rules"] == []
    good = '{"rules": [{"currency": "EUR", "amount_min": 100, "processors": ["simulator"]}]}'
    review = await operator.post(
        f"/dashboard/operator/merchants/{m}/routing/review", data={"csrf_token": csrf, "rules": good}
    )
    assert review.status_code == 200 and "currency EUR, amount ≥ 100" in review.text
    saved = await operator.post(f"/dashboard/operator/merchants/{m}/routing", data={"csrf_token": csrf, "rules": good})
    assert saved.status_code == 303
    shown = await routing_service.get(container.db, m, default=["simulator"])
    assert shown["rules"] == [{"currency": "EUR", "amount_min": 100, "processors": ["simulator"]}]
    page = await operator.get(saved.headers["location"])
    assert "Routing rules saved" in page.text and "currency EUR" in page.text


async def test_a_dead_letter_is_retried_once_per_form_and_never_without_csrf(
    container: Any, operator: httpx.AsyncClient
) -> None:
    letter = await dead_letter(container)
    try:
        listed = await operator.get("/dashboard/operator/dead-letters?status=open")
        assert letter in listed.text and "processor unreachable: connection refused" in listed.text
        one = await operator.get(f"/dashboard/operator/dead-letters/{letter}")
        assert "authorize" in one.text and "simulator" in one.text and "Retry…" in one.text
        confirm = await operator.get(f"/dashboard/operator/dead-letters/{letter}/retry")
        data = {"csrf_token": csrf_of(confirm.text), "idempotency_key": key_of(confirm.text)}
        refused = await operator.post(
            f"/dashboard/operator/dead-letters/{letter}/retry", data={**data, "csrf_token": "x"}
        )
        assert refused.status_code == 403 and (await letter_row(container, letter))["status"] == "open"
        done = await operator.post(f"/dashboard/operator/dead-letters/{letter}/retry", data=data)
        assert done.status_code == 303 and done.headers["location"].endswith("?done=retry")
        first = await letter_row(container, letter)
        assert first["status"] == "retried"
        twice = await operator.post(f"/dashboard/operator/dead-letters/{letter}/retry", data=data)
        assert twice.status_code == 303
        assert (await letter_row(container, letter))["updated"] == first["updated"]  # the replay did nothing
        shown = await operator.get(done.headers["location"])
        assert "Retry queued" in shown.text and "retried" in shown.text
    finally:
        await resolve(container, letter)
    # A resolved one: the service's error, shown on the confirmation page.
    confirm = await operator.get(f"/dashboard/operator/dead-letters/{letter}/retry")
    data = {"csrf_token": csrf_of(confirm.text), "idempotency_key": key_of(confirm.text)}
    r = await operator.post(f"/dashboard/operator/dead-letters/{letter}/retry", data=data)
    assert r.status_code == 400 and "dead_letter_resolved" in r.text


async def test_pausing_and_resuming_a_processor(container: Any, operator: httpx.AsyncClient) -> None:
    policy = container.settings.circuit_policy

    async def paused() -> bool:
        return (await processor_health.statuses(container.db, policy, ["simulator"]))[0].paused

    reason = f"maintenance window {uuid.uuid4().hex[:6]}"
    try:
        confirm = await operator.get("/dashboard/operator/processors/simulator/pause")
        assert 'id="reason"' in confirm.text
        data = {"csrf_token": csrf_of(confirm.text), "idempotency_key": key_of(confirm.text), "reason": reason}
        refused = await operator.post("/dashboard/operator/processors/simulator/pause", data={**data, "csrf_token": ""})
        assert refused.status_code == 403 and not await paused()
        r = await operator.post("/dashboard/operator/processors/simulator/pause", data=data)
        assert r.status_code == 303 and await paused()
        page = await operator.get(r.headers["location"])
        assert "Processor paused." in page.text and reason in page.text and "processor.paused" in page.text
        assert 'data-testid="resume-simulator"' in page.text
        too_long = await operator.post(
            "/dashboard/operator/processors/simulator/pause",
            data={**data, "idempotency_key": str(uuid.uuid4()), "reason": "x" * 501},
        )
        assert too_long.status_code == 400 and "param <code>reason</code>" in too_long.text
        confirm = await operator.get("/dashboard/operator/processors/simulator/resume")
        data = {"csrf_token": csrf_of(confirm.text), "idempotency_key": key_of(confirm.text)}
        r = await operator.post("/dashboard/operator/processors/simulator/resume", data=data)
        assert r.status_code == 303 and not await paused()
        assert "processor.resumed" in (await operator.get("/dashboard/operator/processors")).text
    finally:
        await processor_health.set_paused(container.db, policy, "simulator", paused=False)


async def test_the_ledger_check_and_reconciliation_runs(container: Any, operator: httpx.AsyncClient) -> None:
    ledger = await operator.get("/dashboard/operator/ledger")
    assert ledger.status_code == 200 and 'data-testid="ledger-result"' in ledger.text
    assert "Entries" in ledger.text and "Balance mismatches" in ledger.text
    run = await reconciliation.run(container.db, container.processors["simulator"], datetime.now(UTC).date(), UTC)
    runs = await operator.get("/dashboard/operator/reconciliations?processor=simulator")
    assert run.run_id in runs.text
    one = await operator.get(f"/dashboard/operator/reconciliations/{run.run_id}")
    assert one.status_code == 200 and "completed" in one.text and "Missing in Tender" in one.text
    bad = await operator.get("/dashboard/operator/reconciliations?starting_after=" + "x" * 100)
    assert bad.status_code in (400, 422)


async def test_a_merchant_created_elsewhere_is_listed(container: Any, operator: httpx.AsyncClient) -> None:
    made = await create_merchant(container.db, f"Listed {uuid.uuid4().hex[:6]}")
    page = await operator.get("/dashboard/operator/merchants")
    assert made.merchant.name in page.text and "default processor" in page.text


async def test_a_reconciliation_run_now_runs_once_per_form(container: Any, operator: httpx.AsyncClient) -> None:
    form = await operator.get("/dashboard/operator/reconciliations/run")
    today = datetime.now(container.settings.business_tz).date().isoformat()
    data = {"csrf_token": csrf_of(form.text), "idempotency_key": key_of(form.text), "processor": "simulator"}
    future = await operator.post("/dashboard/operator/reconciliations/run", data={**data, "date": "2999-01-01"})
    assert future.status_code == 400 and "param <code>date</code>" in future.text
    nowhere = await operator.post(
        "/dashboard/operator/reconciliations/run", data={**data, "processor": "nowhere", "date": today}
    )
    assert nowhere.status_code == 400 and "param <code>processor</code>" in nowhere.text

    async def runs() -> int:
        async with container.db.connection() as conn:
            cur = await conn.execute("SELECT count(*) AS n FROM reconciliation_runs")
            return int((await cur.fetchone())["n"])

    before = await runs()
    first = await operator.post("/dashboard/operator/reconciliations/run", data={**data, "date": today})
    assert first.status_code == 303, first.text[:300]
    again = await operator.post("/dashboard/operator/reconciliations/run", data={**data, "date": today})
    assert again.headers["location"] == first.headers["location"] and await runs() == before + 1
    page = await operator.get(first.headers["location"])
    assert page.status_code == 200 and "completed" in page.text and "hand (the dashboard)" in page.text
