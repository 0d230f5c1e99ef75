"""TENDER_DATABASE_LISTEN_URL: the LISTEN connections go where it says, the pools where TENDER_DATABASE_URL says.

Behind PgBouncer in transaction mode a LISTEN never hears anything (docs/scaling.md), so these connections must
be able to reach PostgreSQL directly. Here both URLs reach the same database, told apart by their user: the
listen URL logs in as a role of its own, and pg_stat_activity shows who connected as whom.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tender.services.live import APPLICATION_NAME as HUB_APPLICATION
from tender.services.merchants import KEY_LISTENER_APPLICATION
from tender.worker.runner import LISTEN_APPLICATION as WORKER_APPLICATION
from tests.support.api import card_payment
from tests.support.faults import client_session, create_merchant, running_stack

pytestmark = pytest.mark.e2e

LISTENERS = {HUB_APPLICATION, KEY_LISTENER_APPLICATION, WORKER_APPLICATION}


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


async def test_listen_connections_use_the_listen_url(
    tender_env: dict[str, str], listen_role: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    database_url = tender_env["TENDER_DATABASE_URL"]
    env = {"TENDER_DATABASE_LISTEN_URL": make_conninfo(database_url, user=listen_role)}
    logs = tmp_path_factory.mktemp("listen-url")
    with running_stack(tender_env, logs, simulator=[], env=env, workers=1) as stack:
        merchant = await create_merchant(stack.api_url, tender_env["TENDER_ADMIN_KEY"], "Listen URL shop")
        shop = client_session(stack.api_url, merchant["secret_key"], 1)
        async with shop, shop.post("/v1/payments", json=card_payment(), headers={"Prefer": "wait=10"}) as r:
            assert r.status == 202, await r.text()
            payment = await r.json()
        seen = connections(database_url)
    by_role = {app for app, user in seen if user == listen_role}
    # Every listener of this stack (the API's two, the worker's one) logged in through the listen URL ...
    assert by_role == LISTENERS, seen
    # ... and nothing else did: the pools went through TENDER_DATABASE_URL.
    assert ("tender", listen_role) not in seen and any(app == "tender" for app, _ in seen), seen
    assert payment["status"] == "succeeded"  # the API and the worker work with it
