"""`tender up`: the whole of Tender on one machine, for development and demos.

Starts (or joins) the embedded PostgreSQL, migrates, makes sure a demo merchant exists, then runs the
simulator, the API and one worker as child processes until Ctrl-C, which stops them all cleanly.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tender.config import Settings
from tender.runtime import resolve_database
from tender.services import merchants
from tender.store import merchants as merchant_store
from tender.store import migrate
from tender.store.db import Database
from tender.vault import load_or_create_key_file

DEMO_NAME = "Demo Shop"


def _secret_file(path: Path, make: str) -> str:
    """A development secret kept in the data folder (mode 0600) so restarts keep the same value."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(make + "\n")
    return make


async def _demo_merchant(url: str, saved: dict[str, Any] | None) -> dict[str, Any] | None:
    """The demo merchant's keys: the saved ones while that merchant exists, else a new merchant's."""
    db = Database(url, min_size=1, max_size=1)
    await db.open()
    try:
        if saved is not None:
            async with db.connection() as conn:
                if await merchant_store.get_merchant(conn, saved["id"]) is not None:
                    return None
        created = await merchants.create_merchant(db, DEMO_NAME)
    finally:
        await db.close()
    return {
        "id": created.merchant.id,
        "name": created.merchant.name,
        "secret_key": created.secret_key,
        "publishable_key": created.publishable_key,
    }


def _demo_keys(url: str, keys_file: Path) -> dict[str, Any]:
    """Kept in the data folder (mode 0600) so every `tender up` can print them: the database has only hashes."""
    saved: dict[str, Any] | None = json.loads(keys_file.read_text()) if keys_file.exists() else None
    created = asyncio.run(_demo_merchant(url, saved))
    if created is None:
        assert saved is not None
        return saved
    fd = os.open(keys_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(created, f, indent=2)
    return created


def _wait_healthy(url: str, procs: list[subprocess.Popen[bytes]], timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            return False
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run_all(settings: Settings, *, simulator_port: int) -> int:
    data_dir = settings.data_dir.expanduser().resolve()
    db = resolve_database(settings)
    migrate.upgrade(db.url)
    admin_key = (
        settings.admin_key.get_secret_value()
        if settings.admin_key
        else _secret_file(data_dir / "admin.key", "adm_" + secrets.token_urlsafe(24))
    )
    vault_key = (
        settings.vault_key.get_secret_value()
        if settings.vault_key
        else base64.b64encode(load_or_create_key_file(data_dir / "vault.key")).decode()
    )
    demo = _demo_keys(db.url, data_dir / "demo-merchant.json")

    api_url = f"http://{settings.host}:{settings.port}"
    simulator_url = f"http://127.0.0.1:{simulator_port}"
    env = {
        **os.environ,
        "TENDER_DATABASE_URL": db.url,
        "TENDER_ADMIN_KEY": admin_key,
        "TENDER_VAULT_KEY": vault_key,
        "TENDER_SIMULATOR_URL": simulator_url,
        "TENDER_HOST": settings.host,
        "TENDER_PORT": str(settings.port),
        "TENDER_DATA_DIR": str(data_dir),
    }
    me = [sys.executable, "-m", "tender"]
    commands = {
        "simulator": [
            *me,
            "simulator",
            "--port",
            str(simulator_port),
            "--db-path",
            str(data_dir / "simulator.sqlite3"),
            "--log-level",
            settings.log_level.lower(),
            # 3-D Secure results reach Tender by signed notification. The synchronous answers the worker
            # already has are not notified again: that would double the API's load for nothing.
            "--notify-url",
            f"{api_url}/webhooks/simulator",
            "--notify-secret",
            settings.simulator_notify_secret.get_secret_value(),
            "--no-notify-on-create",
        ],
        "api": [*me, "api"],
        "worker": [*me, "worker"],
    }
    procs = [subprocess.Popen(cmd, env=env) for cmd in commands.values()]  # noqa: S603
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        if not (_wait_healthy(f"{simulator_url}/healthz", procs) and _wait_healthy(f"{api_url}/readyz", procs)):
            print("tender: a component failed to start; see the log above", file=sys.stderr)
            return 1
        _banner(api_url, simulator_url, admin_key, demo)
        while not stopping:
            for name, p in zip(commands, procs, strict=True):
                if p.poll() is not None:
                    print(f"tender: {name} exited with code {p.returncode}; stopping", file=sys.stderr)
                    return 1
            time.sleep(0.3)
        print("\ntender: stopping...", file=sys.stderr)
        return 0
    finally:
        _stop(procs)


def _banner(api_url: str, simulator_url: str, admin_key: str, demo: dict[str, Any]) -> None:
    body = (
        '{"amount": 2500, "currency": "BRL", "payment_method": {"type": "card", "card": '
        '{"number": "4242424242424242", "exp_month": 10, "exp_year": 2030, "cvc": "123", '
        '"holder_name": "Luke Skywalker"}}}'
    )
    print(
        f"""
Tender is running (Ctrl-C stops everything)
  API         {api_url}   (docs: {api_url}/docs)
  Simulator   {simulator_url}
  Admin key   {admin_key}

Demo merchant {demo["name"]} ({demo["id"]})
  secret key       {demo["secret_key"]}
  publishable key  {demo["publishable_key"]}

Try it:
  curl -i -X POST {api_url}/v1/payments -H "Authorization: Bearer {demo["secret_key"]}" \\
       -H "Idempotency-Key: $(date +%s%N)" -d '{body}'
  tender demo checkout     # a hosted checkout page to pay in your browser
""",
        flush=True,
    )
