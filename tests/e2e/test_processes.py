"""End to end: the real simulator, API and worker processes, driven over HTTP like a merchant would."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.processes import Stack, environment, wait_until_healthy
from tests.support.serve import free_port

pytestmark = pytest.mark.e2e

FINAL = {"succeeded", "failed", "requires_action", "requires_capture", "canceled"}
EXPECTED = {
    "4242424242424242": ("succeeded", None),
    "5555555555554444": ("succeeded", None),
    "4000056655665556": ("succeeded", None),
    "4000000000000002": ("failed", "generic_decline"),
    "4000000000009995": ("failed", "insufficient_funds"),
    "4000000000009987": ("failed", "lost_card"),
    "4000000000000069": ("failed", None),
    "4000000000000127": ("failed", None),
    "4000002760003184": ("requires_action", None),
    "378282246310005": ("succeeded", None),  # amex: any other Luhn-valid number succeeds
}
SECRET_CARD = "4000056655665556"
SECRET_CVC = "739"


@pytest.fixture(scope="module")
def stack(tender_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("e2e-logs")
    api_port, sim_port = free_port(), free_port()
    env = environment(
        tender_env,
        TENDER_PORT=str(api_port),
        TENDER_SIMULATOR_URL=f"http://127.0.0.1:{sim_port}",
        LOG_LEVEL="DEBUG",  # the most talkative setting must still never print card data
    )
    s = Stack(f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{sim_port}", env, logs)
    try:
        sim = s.start(
            "simulator",
            "simulator",
            "--port",
            str(sim_port),
            "--db-path",
            str(logs / "sim.sqlite3"),
            "--notify-url",
            f"{s.api_url}/webhooks/simulator",
            "--no-notify-on-create",
        )
        wait_until_healthy(f"{s.simulator_url}/healthz", [sim])
        api = s.start("api", "api")
        # Two workers share the database: the burst test below shows no payment is charged twice.
        workers = [s.start("worker-1", "worker"), s.start("worker-2", "worker")]
        wait_until_healthy(f"{s.api_url}/readyz", [api, *workers])
        yield s
    finally:
        s.stop()
    print(f"e2e logs: {logs}")


@pytest.fixture(scope="module")
def merchant(stack: Stack, tender_env: dict[str, str]) -> dict[str, Any]:
    r = httpx.post(
        f"{stack.api_url}/admin/v1/merchants",
        json={"name": "E2E shop"},
        headers={"Authorization": f"Bearer {tender_env['TENDER_ADMIN_KEY']}"},
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def card(number: str, cvc: str = "123") -> dict[str, Any]:
    return {
        "type": "card",
        "card": {"number": number, "exp_month": 12, "exp_year": 2031, "cvc": cvc, "holder_name": "E2E"},
    }


async def wait_final(client: httpx.AsyncClient, payment_id: str, within: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        p = (await client.get(f"/v1/payments/{payment_id}")).json()
        if p["status"] in FINAL:
            return dict(p)
        await asyncio.sleep(0.1)
    raise AssertionError(f"{payment_id} still processing after {within}s")


async def test_every_test_card_reaches_its_final_status(stack: Stack, merchant: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {merchant['secret_key']}"}
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=10) as client:
        accepted = {}
        for i, number in enumerate(EXPECTED):
            cvc = "1234" if number.startswith("37") else "123"
            r = await client.post(
                "/v1/payments",
                json={
                    "amount": 1000 + i,
                    "currency": "BRL",
                    "payment_method": card(number, cvc),
                    "reference": f"e2e-{i}",
                },
                headers={"Idempotency-Key": f"e2e-{i}"},
            )
            assert r.status_code == 202, r.text
            assert r.headers["location"] == f"/v1/payments/{r.json()['id']}"
            accepted[number] = r.json()["id"]
        finals = await asyncio.gather(*(wait_final(client, pid) for pid in accepted.values()))
    for (number, (status, decline)), payment in zip(EXPECTED.items(), finals, strict=True):
        assert payment["status"] == status, (number, payment)
        assert payment["decline_code"] == decline
    async with httpx.AsyncClient(base_url=stack.simulator_url) as sim:
        for payment_id in accepted.values():
            records = (await sim.get("/_sim/authorizations", params={"payment": payment_id})).json()
            records = records["data"] if isinstance(records, dict) else records
            assert len(records) == 1, payment_id  # charged exactly once


async def test_a_burst_of_payments_all_complete_and_none_is_charged_twice(
    stack: Stack, merchant: dict[str, Any]
) -> None:
    headers = {"Authorization": f"Bearer {merchant['secret_key']}"}
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=20) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    "/v1/payments",
                    json={"amount": 500 + i, "currency": "USD", "payment_method": card("4242424242424242")},
                )
                for i in range(150)
            )
        )
        assert {r.status_code for r in responses} == {202}
        finals = await asyncio.gather(*(wait_final(client, r.json()["id"]) for r in responses))
    assert {p["status"] for p in finals} == {"succeeded"}
    async with httpx.AsyncClient(base_url=stack.simulator_url) as sim:
        records = (await sim.get("/_sim/authorizations")).json()
        records = records["data"] if isinstance(records, dict) else records
    charged = [r["payment"] for r in records if r["payment"] in {p["id"] for p in finals}]
    assert sorted(charged) == sorted(p["id"] for p in finals)
    worker_logs = [p.log.read_text() for p in stack.processes if p.name.startswith("worker")]
    assert all("worker started" in log for log in worker_logs) and len(worker_logs) == 2


def test_cli_creates_a_merchant_whose_key_works(stack: Stack) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tender", "merchant", "create", "CLI shop", "--json"],
        env=stack.env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    created = json.loads(out.stdout)
    assert created["object"] == "merchant" and created["name"] == "CLI shop"
    r = httpx.get(f"{stack.api_url}/v1/payments", headers={"Authorization": f"Bearer {created['secret_key']}"})
    assert r.status_code == 200
    assert r.json() == {"object": "list", "data": [], "has_more": False, "url": "/v1/payments"}


def test_operations_endpoints(stack: Stack, tender_env: dict[str, str]) -> None:
    assert httpx.get(f"{stack.api_url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{stack.api_url}/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    spec = httpx.get(f"{stack.api_url}/openapi.json").json()
    assert {"/v1/payments", "/v1/payments/{payment_id}", "/admin/v1/merchants"} <= set(spec["paths"])
    assert "amount" in json.dumps(spec["paths"]["/v1/payments"]["post"])
    docs = httpx.get(f"{stack.api_url}/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert httpx.get(f"{stack.api_url}/metrics").status_code == 401  # the operator's only (issue 11)
    metrics = httpx.get(
        f"{stack.api_url}/metrics", headers={"Authorization": f"Bearer {tender_env['TENDER_ADMIN_KEY']}"}
    )
    assert "tender_payments_accepted_total" in metrics.text


async def test_card_data_never_reaches_the_database_logs_or_responses(
    stack: Stack, merchant: dict[str, Any], database_url: str
) -> None:
    import psycopg

    headers = {"Authorization": f"Bearer {merchant['secret_key']}"}
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=10) as client:
        r = await client.post(
            "/v1/payments", json={"amount": 777, "currency": "EUR", "payment_method": card(SECRET_CARD, SECRET_CVC)}
        )
        assert r.status_code == 202
        final = await wait_final(client, r.json()["id"])
        bad = await client.post(
            "/v1/payments",
            json={"amount": 1, "currency": "EUR", "payment_method": card(SECRET_CARD[:-1] + "0", SECRET_CVC)},
        )
        assert bad.status_code == 400
        listing = await client.get("/v1/payments?limit=100")
    for text in (r.text, json.dumps(final), bad.text, listing.text):
        assert SECRET_CARD not in text and SECRET_CARD[:-1] + "0" not in text
        assert f'"{SECRET_CVC}"' not in text
    with psycopg.connect(database_url) as conn:
        tables = [
            t
            for (t,) in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            ).fetchall()
        ]
        for table in tables:
            columns = conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s", (table,)
            ).fetchall()
            for column, kind in columns:
                values = conn.execute(f'SELECT "{column}"::text FROM "{table}"').fetchall()
                for (value,) in values:
                    if value is None:
                        continue
                    if kind == "bytea":  # ciphertext: the clear bytes must not be inside
                        raw = bytes.fromhex(value[2:])
                        assert SECRET_CARD.encode() not in raw, (table, column)
                        # as a JSON value: three bare digits also turn up in timestamps and ids
                        assert f'"{SECRET_CVC}"'.encode() not in raw, (table, column)
                    else:
                        assert SECRET_CARD not in value, (table, column)
                        assert f'"{SECRET_CVC}"' not in value, (table, column)
        assert conn.execute(
            "SELECT count(*) FROM vault_cards v JOIN payments p ON p.card_id = v.id"
            " WHERE p.id = %s AND v.cvc_ct IS NULL",
            (final["id"],),
        ).fetchone() == (1,)
    logs = stack.all_logs()
    assert logs, "the processes wrote no log at all"
    assert SECRET_CARD not in logs and SECRET_CARD[:-1] + "0" not in logs
    assert not re.search(rf"cvc\W{{0,6}}{SECRET_CVC}", logs, re.IGNORECASE)


async def test_3ds_approved_by_the_shopper_is_notified_and_the_shopper_returns(
    stack: Stack, merchant: dict[str, Any]
) -> None:
    headers = {"Authorization": f"Bearer {merchant['secret_key']}"}
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=10) as client:
        r = await client.post(
            "/v1/payments",
            json={
                "amount": 4200,
                "currency": "EUR",
                "payment_method": card("4000002760003184"),
                "return_url": "https://shop.example/order/42",
            },
        )
        payment = await wait_final(client, r.json()["id"])
        assert payment["status"] == "requires_action"
        challenge = payment["next_action"]["url"]
        assert challenge.startswith(stack.simulator_url + "/3ds/")
        async with httpx.AsyncClient() as shopper:
            page = await shopper.get(challenge)
            assert "3-D Secure" in page.text
            back = await shopper.post(challenge, data={"decision": "approve"}, follow_redirects=False)
        assert back.status_code == 303 and back.headers["location"].startswith("https://shop.example/order/42")
        deadline = time.monotonic() + 10  # the notification, not the 60 s look-up, must decide it
        while (p := (await client.get(f"/v1/payments/{payment['id']}")).json())["status"] == "requires_action":
            assert time.monotonic() < deadline, "no notification applied"
            await asyncio.sleep(0.1)
    assert (p["status"], p["amount_captured"], p["next_action"]) == ("succeeded", 4200, None)
