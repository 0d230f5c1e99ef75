"""`tender up`: the whole of Tender on one machine, for development and demos.

Starts (or joins) the embedded PostgreSQL, migrates, makes sure a demo merchant exists, then runs the
simulator, the API and one worker as child processes until Ctrl-C or SIGTERM, which stop them all cleanly.
A child that dies is restarted with back-off (the others keep running); one that keeps dying stops it all.

`tender up --stripe` also runs localstripe (a Stripe emulator, from the same environment) and gives the API and
the worker TENDER_STRIPE_SECRET_KEY (any sk_test_ key works there), TENDER_STRIPE_API_BASE and a webhook secret
it registers with localstripe for POST /webhooks/stripe. Without it, no Stripe setting is needed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tender import keyfiles
from tender.config import Settings
from tender.runtime import resolve_database
from tender.services import dashboard_users, merchants
from tender.store import migrate
from tender.store.db import Database
from tender.vault import load_or_create_key_file

DEMO_NAME = "Demo Shop"
# A child that exits unasked is started again after BACKOFF_FIRST seconds, doubling per crash up to
# BACKOFF_CAP; CRASH_LIMIT crashes within CRASH_WINDOW seconds stop everything (it will not get better).
BACKOFF_FIRST, BACKOFF_CAP = 1.0, 30.0
CRASH_LIMIT, CRASH_WINDOW = 5, 60.0

log = logging.getLogger("tender.up")


async def _demo_merchant(url: str, saved: dict[str, Any] | None) -> dict[str, Any] | None:
    """The demo merchant's keys: the saved ones while they work (an operator may have rolled them), else a
    new merchant's."""
    db = Database(url, min_size=1, max_size=1)
    await db.open()
    try:
        if saved is not None and await merchants.key_is_known(db, saved["secret_key"]):
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


async def _create_demo_user(url: str, merchant_id: str) -> dict[str, Any]:
    db = Database(url, min_size=1, max_size=1)
    await db.open()
    try:
        # One email per demo merchant: a new demo merchant (its keys were rolled) gets a user of its own.
        # Its password is given (not printed by create_user, which would have the user change it first): the
        # banner shows it at every start.
        password = secrets.token_urlsafe(15)
        made = await dashboard_users.create_user(
            db, merchant_id, f"demo-{merchant_id[-6:].lower()}@example.com", password
        )
    finally:
        await db.close()
    return {"merchant_id": merchant_id, "email": made.user.email, "password": password}


def _demo_user(url: str, demo: dict[str, Any], user_file: Path) -> dict[str, Any]:
    """The demo merchant's dashboard user, made once per data folder; its password is kept there (mode 0600),
    like the demo keys, so every `tender up` can print it (the database has only its Argon2 hash)."""
    saved: dict[str, Any] | None = json.loads(user_file.read_text()) if user_file.exists() else None
    if saved is not None and saved.get("merchant_id") == demo["id"]:
        return saved
    created = asyncio.run(_create_demo_user(url, demo["id"]))
    fd = os.open(user_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(created, f, indent=2)
    return created


# A few payments for the dashboard to show: successes in two currencies, declines, one to capture later.
_DEMO_PAYMENTS = (
    ("4242424242424242", 2500, "BRL", True),
    ("4242424242424242", 12990, "BRL", True),
    ("5555555555554444", 4900, "USD", True),
    ("4000056655665556", 1999, "USD", True),
    ("4000000000000002", 7500, "BRL", True),
    ("4000000000009995", 3200, "USD", True),
    ("4242424242424242", 8800, "BRL", False),
)


def _demo_payments(api_url: str, secret_key: str) -> int:
    """Make the demo payments through the API, over HTTP as a merchant would, unless the demo merchant already
    has a payment today (a restart the same day adds none). Returns how many were accepted."""
    headers = {"Authorization": f"Bearer {secret_key}"}
    try:
        latest = httpx.get(f"{api_url}/v1/payments?limit=1", headers=headers, timeout=10).json().get("data") or []
        if latest and str(latest[0]["created"])[:10] == time.strftime("%Y-%m-%d", time.gmtime()):
            return 0  # ISO 8601 UTC: the same day
        made = 0
        for n, (number, amount, currency, capture) in enumerate(_DEMO_PAYMENTS):
            card = {"number": number, "exp_month": 10, "exp_year": 2030, "cvc": "123", "holder_name": "Demo Shopper"}
            body = {
                "amount": amount,
                "currency": currency,
                "capture": capture,
                "description": f"Demo order {n + 1}",
                "payment_method": {"type": "card", "card": card},
            }
            r = httpx.post(f"{api_url}/v1/payments", headers={**headers, "Idempotency-Key": secrets.token_hex(16)},
                           json=body, timeout=10)  # fmt: skip
            made += r.status_code == 202
        return made
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:  # a demo nicety: never stops `tender up`
        log.warning("demo payments not made: %s", type(exc).__name__)
        return 0


def _wait_healthy(
    url: str,
    children: list[Child],
    stopping: Callable[[], bool],
    timeout: float = 60,
    headers: dict[str, str] | None = None,
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stopping():
        if any(c.proc.poll() is not None for c in children):
            return False
        try:
            if httpx.get(url, timeout=1, headers=headers).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def _port_free(host: str, port: int) -> bool:
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no clash
            s.bind((host, port))
    except OSError:
        return False
    return True


def choose_simulator_port(api_port: int, requested: int | None, offset: int = 1) -> int:
    """The requested port, else the API's + `offset` when free (two `make run` with different TENDER_PORT do
    not clash), else any free port."""
    if requested is not None:
        return requested
    if api_port + offset < 65536 and _port_free("127.0.0.1", api_port + offset):
        return api_port + offset
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Child:
    """One supervised process: restarted when it exits unasked, after a back-off that doubles per crash."""

    name: str
    command: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] = field(init=False)
    started: float = field(init=False)
    backoff: float = BACKOFF_FIRST
    restart_at: float | None = None
    crashes: deque[float] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(self.command, env=self.env)  # noqa: S603 (our own command, no shell)
        self.started = time.monotonic()
        self.restart_at = None

    def crashed(self, now: float) -> bool:
        """Note an exit; False when it is one crash too many (CRASH_LIMIT within CRASH_WINDOW seconds)."""
        if now - self.started > CRASH_WINDOW:
            self.backoff = BACKOFF_FIRST  # it had been running fine: start the back-off over
        self.crashes.append(now)
        while self.crashes and now - self.crashes[0] > CRASH_WINDOW:
            self.crashes.popleft()
        if len(self.crashes) >= CRASH_LIMIT:
            return False
        self.restart_at = now + self.backoff
        self.backoff = min(self.backoff * 2, BACKOFF_CAP)
        return True


def supervise(children: list[Child], stopping: Callable[[], bool], *, poll: float = 0.2) -> int:
    """Restart children that exit until `stopping()`: 0, or 1 when one keeps crashing."""
    while not stopping():
        now = time.monotonic()
        for c in children:
            if c.restart_at is not None:
                if now >= c.restart_at:
                    c.start()
                    log.warning("%s restarted (pid %d)", c.name, c.proc.pid)
                continue
            code = c.proc.poll()
            if code is None or stopping():
                continue
            pid, delay = c.proc.pid, c.backoff
            if not c.crashed(now):
                log.error(
                    "%s (pid %d) exited with code %s, its %d%s exit within %d s: it keeps crashing; stopping"
                    " everything",
                    c.name, pid, code, len(c.crashes), _ordinal(len(c.crashes)), CRASH_WINDOW,
                )  # fmt: skip
                return 1
            log.warning("%s (pid %d) exited with code %s; restarting it in %g s", c.name, pid, code, delay)
        time.sleep(poll)
    return 0


def _ordinal(n: int) -> str:
    return "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


def _stop(children: list[Child]) -> None:
    procs = [c.proc for c in children]
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


@dataclass(frozen=True)
class LocalStripe:
    """localstripe for `tender up --stripe`: where it listens and what the API and worker are told."""

    port: int
    secret_key: str = "sk_test_tender_local"  # noqa: S105  (not a secret: localstripe takes any sk_test_ key)
    webhook_secret: str = field(default_factory=lambda: "whsec_" + secrets.token_urlsafe(24))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            "TENDER_STRIPE_SECRET_KEY": self.secret_key,
            "TENDER_STRIPE_API_BASE": self.url,
            "TENDER_STRIPE_WEBHOOK_SECRET": self.webhook_secret,
        }

    def command(self) -> list[str]:
        # --from-scratch: otherwise it loads the state it pickles to a fixed file in the temp dir.
        return [sys.executable, "-m", "localstripe", "--from-scratch", "--port", str(self.port)]

    def register_webhook(self, api_url: str) -> None:
        """localstripe signs its events with our secret and POSTs them to Tender (its /_config API)."""
        r = httpx.post(
            f"{self.url}/_config/webhooks/tender",
            data={"url": f"{api_url}/webhooks/stripe", "secret": self.webhook_secret},
            timeout=5,
        )
        r.raise_for_status()


def default_api_workers() -> int:
    """One API process per core, at most 4: the API is the busiest process (issue 16: on 2 cores, two API
    processes accepted 1.9 times as many payments per second as one)."""
    return max(1, min(os.cpu_count() or 1, 4))


# Connections the children's pools may hold in all, below the embedded server's max_connections (100): the rest
# is for LISTEN connections, the CLI and psql.
_POOLS_BUDGET = 80


def run_all(
    settings: Settings,
    *,
    simulator_port: int | None = None,
    stripe: bool = False,
    workers: int = 1,
    api_workers: int = 1,
) -> int:
    data_dir = settings.data_dir.expanduser().resolve()
    if not _port_free(settings.host, settings.port):
        print(
            f"tender: {settings.host}:{settings.port} is in use (another `tender up`?): set TENDER_PORT",
            file=sys.stderr,
        )
        return 1
    sim_port = choose_simulator_port(settings.port, simulator_port)
    db = resolve_database(settings)
    migrate.upgrade(db.url)
    admin_key = (
        settings.admin_key.get_secret_value()
        if settings.admin_key
        else keyfiles.load_or_create(data_dir / "admin.key", lambda: "adm_" + secrets.token_urlsafe(24))
    )
    vault_key = (
        settings.vault_key.get_secret_value()
        if settings.vault_key
        else base64.b64encode(load_or_create_key_file(data_dir / "vault.key")).decode()
    )
    configured_secret = settings.simulator_notify_secret
    notify_secret = keyfiles.notify_secret(
        configured_secret.get_secret_value() if configured_secret else None, data_dir
    )
    demo = _demo_keys(db.url, data_dir / "demo-merchant.json")
    demo_user = _demo_user(db.url, demo, data_dir / "demo-user.json")
    local_stripe = LocalStripe(choose_simulator_port(settings.port, None, offset=2)) if stripe else None

    api_url = f"http://{settings.host}:{settings.port}"
    simulator_url = f"http://127.0.0.1:{sim_port}"
    # Secrets go to the children by environment only: a command line is visible to every user (`ps`).
    env = {
        **os.environ,
        "TENDER_DATABASE_URL": db.url,
        "TENDER_ADMIN_KEY": admin_key,
        "TENDER_VAULT_KEY": vault_key,
        "TENDER_SIMULATOR_NOTIFY_SECRET": notify_secret,
        "TENDER_SIM_NOTIFY_SECRET": notify_secret,
        "TENDER_SIMULATOR_URL": simulator_url,
        "TENDER_HOST": settings.host,
        "TENDER_PORT": str(settings.port),
        "TENDER_DATA_DIR": str(data_dir),
        **(local_stripe.env() if local_stripe else {}),
    }
    processes = api_workers + workers
    if "TENDER_DB_POOL_MAX" not in os.environ and processes * settings.db_pool_max > _POOLS_BUDGET:
        env["TENDER_DB_POOL_MAX"] = str(max(5, _POOLS_BUDGET // processes))  # every process still fits
    me = [sys.executable, "-m", "tender"]
    commands = {
        "simulator": [
            *me,
            "simulator",
            "--port",
            str(sim_port),
            "--db-path",
            str(data_dir / "simulator.sqlite3"),
            "--log-level",
            settings.log_level.lower(),
            # 3-D Secure results reach Tender by signed notification. The synchronous answers the worker
            # already has are not notified again: that would double the API's load for nothing.
            "--notify-url",
            f"{api_url}/webhooks/simulator",
            "--no-notify-on-create",
        ],
        # API processes share the port (uvicorn's workers); worker processes share the database's due rows.
        "api": [*me, "api", *(["--workers", str(api_workers)] if api_workers > 1 else [])],
        **{("worker" if n == 1 else f"worker-{n}"): [*me, "worker"] for n in range(1, workers + 1)},
    }
    if local_stripe is not None:
        commands = {"localstripe": local_stripe.command(), **commands}
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    children: list[Child] = []
    try:
        children.extend(Child(name, command, env) for name, command in commands.items())
        ready = _wait_healthy(f"{simulator_url}/healthz", children, lambda: stopping) and _wait_healthy(
            f"{api_url}/readyz", children, lambda: stopping
        )
        if ready and local_stripe is not None:
            ready = _wait_healthy(
                f"{local_stripe.url}/v1/customers",
                children,
                lambda: stopping,
                headers={"Authorization": f"Bearer {local_stripe.secret_key}"},
            )
            if ready:
                local_stripe.register_webhook(api_url)
        if stopping:
            return 0
        if not ready:
            print("tender: a component failed to start; see the log above", file=sys.stderr)
            return 1
        _demo_payments(api_url, demo["secret_key"])
        _banner(api_url, simulator_url, admin_key, demo, local_stripe, demo_user)
        code = supervise(children, lambda: stopping)
        if code == 0:
            print("\ntender: stopping...", file=sys.stderr)
        return code
    finally:
        _stop(children)


def _banner(
    api_url: str,
    simulator_url: str,
    admin_key: str,
    demo: dict[str, Any],
    local_stripe: LocalStripe | None = None,
    demo_user: dict[str, Any] | None = None,
) -> None:
    body = (
        '{"amount": 2500, "currency": "BRL", "payment_method": {"type": "card", "card": '
        '{"number": "4242424242424242", "exp_month": 10, "exp_year": 2030, "cvc": "123", '
        '"holder_name": "Luke Skywalker"}}}'
    )
    stripe_lines = ""
    if local_stripe is not None:
        stripe_body = body.replace('{"amount"', '{"processor": "stripe", "amount"', 1)
        stripe_lines = f"""
Stripe (localstripe, an emulator)  {local_stripe.url}
  TENDER_STRIPE_SECRET_KEY={local_stripe.secret_key}  TENDER_STRIPE_API_BASE={local_stripe.url}
  its webhooks go to {api_url}/webhooks/stripe, signed with the TENDER_STRIPE_WEBHOOK_SECRET given to the API
  A payment through Stripe:
  curl -i -X POST {api_url}/v1/payments -H "Authorization: Bearer {demo["secret_key"]}" \\
       -H "Idempotency-Key: $(date +%s%N)" -H "Prefer: wait=10" -d '{stripe_body}'
"""
    dashboard_lines = (
        f"""
Dashboard     {api_url}/dashboard
  sign in as  {demo_user["email"]}  password  {demo_user["password"]}
  operators sign in there with the admin key
"""
        if demo_user
        else ""
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
{dashboard_lines}
Try it:
  curl -i -X POST {api_url}/v1/payments -H "Authorization: Bearer {demo["secret_key"]}" \\
       -H "Idempotency-Key: $(date +%s%N)" -d '{body}'
  tender demo checkout     # a hosted checkout page to pay in your browser
{stripe_lines}""",
        flush=True,
    )
