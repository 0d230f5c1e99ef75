"""TENDER_DATABASE_LISTEN_URL: the LISTEN connections go where it says, the pools where TENDER_DATABASE_URL says.

Behind PgBouncer in transaction mode a LISTEN never hears anything (docs/scaling.md), so these connections must
be able to reach PostgreSQL directly. Here both URLs reach the same database, told apart by their user: the
listen URL logs in as a role of its own, and pg_stat_activity shows who connected as whom.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tender.services.live import APPLICATION_NAME as HUB_APPLICATION
from tender.worker.runner import LISTEN_APPLICATION as WORKER_APPLICATION
from tests.support.api import card_payment
from tests.support.processes import Stack, environment, wait_until_healthy
from tests.support.serve import free_port

pytestmark = pytest.mark.e2e

LISTENERS = {HUB_APPLICATION, "tender-api-keys", WORKER_APPLICATION}


@pytest.fixture
def listen_role(pg_server_url: str) -> Iterator[str]:
    """A login role for the listen URL alone (roles are the server's: dropped afterwards)."""
    role = f"tender_listen_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    yield role
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def connections(database_url: str) -> list[tuple[str, str]]:
    """(application_name, user) of every Tender connection to the test database now."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT application_name, usename FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name LIKE 'tender%%'"
        ).fetchall()
    return [(app, user) for app, user in rows]


def test_listen_connections_use_the_listen_url(
    tender_env: dict[str, str], listen_role: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    database_url = tender_env["TENDER_DATABASE_URL"]
    logs = tmp_path_factory.mktemp("listen-url")
    api_port, sim_port = free_port(), free_port()
    env = environment(
        tender_env,
        TENDER_PORT=str(api_port),
        TENDER_SIMULATOR_URL=f"http://127.0.0.1:{sim_port}",
        TENDER_DATABASE_LISTEN_URL=make_conninfo(database_url, user=listen_role),
    )
    stack = Stack(f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{sim_port}", env, logs)
    try:
        sim = stack.start(
            "simulator", "simulator", "--port", str(sim_port), "--db-path", str(logs / "sim.sqlite3"),
            "--notify-url", f"{stack.api_url}/webhooks/simulator",
        )  # fmt: skip
        wait_until_healthy(f"{stack.simulator_url}/healthz", [sim])
        api = stack.start("api", "api")
        worker = stack.start("worker", "worker")
        wait_until_healthy(f"{stack.api_url}/readyz", [api, worker])
        merchant = _merchant(stack, tender_env["TENDER_ADMIN_KEY"])
        payment = _pay_and_wait(stack, merchant["secret_key"])
        seen = connections(database_url)
        by_role = {app for app, user in seen if user == listen_role}
        # Every listener of this stack (the API's two, the worker's one) logged in through the listen URL ...
        assert by_role == LISTENERS, seen
        # ... and nothing else did: the pools went through TENDER_DATABASE_URL.
        assert ("tender", listen_role) not in seen and any(app == "tender" for app, _ in seen), seen
        assert payment["status"] == "succeeded"  # the API and the worker work with it
    finally:
        stack.stop()


def _merchant(stack: Stack, admin_key: str) -> dict[str, Any]:
    r = httpx.post(
        f"{stack.api_url}/admin/v1/merchants",
        json={"name": "Listen URL shop"},
        headers={"Authorization": f"Bearer {admin_key}"},
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def _pay_and_wait(stack: Stack, key: str) -> dict[str, Any]:
    r = httpx.post(
        f"{stack.api_url}/v1/payments",
        json=card_payment(),
        headers={"Authorization": f"Bearer {key}", "Prefer": "wait=10"},
        timeout=20,
    )
    assert r.status_code == 202, r.text
    return dict(r.json())
