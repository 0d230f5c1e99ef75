"""Finding 12: "The simulator's notification secret defaults to a fixed string and is passed on a command line
(visible in `ps`): generate one per data dir like the vault key, and pass it by environment"."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tender import keyfiles
from tender.config import Settings
from tender.processors.simulator import InvalidSignature, SimulatorProcessor, notify_secret
from tests.support.serve import free_port, serve

OLD_DEFAULT = "simsecret_dev"


def test_each_data_dir_gets_its_own_secret_in_an_owner_only_file(tmp_path: Path) -> None:
    one = notify_secret(Settings(data_dir=tmp_path / "one"))
    two = notify_secret(Settings(data_dir=tmp_path / "two"))
    assert one != two and OLD_DEFAULT not in (one, two) and len(one) >= 40
    path = tmp_path / "one" / keyfiles.NOTIFY_SECRET_FILE
    assert path.read_text().strip() == one
    assert path.stat().st_mode & 0o777 == 0o600
    assert notify_secret(Settings(data_dir=tmp_path / "one")) == one  # stable across restarts
    assert notify_secret(Settings(data_dir=tmp_path / "one", simulator_notify_secret="from-env")) == "from-env"


def test_processes_starting_together_agree_on_one_secret(tmp_path: Path) -> None:
    seen: list[str] = []
    start = threading.Barrier(8)

    def make() -> None:
        start.wait()
        seen.append(keyfiles.notify_secret(None, tmp_path))

    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 8 and len(set(seen)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [keyfiles.NOTIFY_SECRET_FILE]  # no leftovers


def test_the_secret_cannot_be_given_on_the_command_line() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "tender", "simulator", "--notify-secret", "s3cret"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 2 and "--notify-secret" in r.stderr


async def test_the_simulator_signs_with_the_data_dirs_secret_which_tender_verifies(tmp_path: Path) -> None:
    """A real `tender simulator` process with no secret configured signs with the data folder's secret, never
    shows it on its command line, and Tender (configured the same way) verifies its notifications."""
    received: list[tuple[dict[str, str], bytes]] = []
    arrived = asyncio.Event()

    async def hook(request: Request) -> Response:
        received.append((dict(request.headers), await request.body()))
        arrived.set()
        return Response(status_code=204)

    data_dir = tmp_path / "data"
    port = free_port()
    async with serve(Starlette(routes=[Route("/webhooks/simulator", hook, methods=["POST"])])) as receiver:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TENDER_")}
        env["TENDER_DATA_DIR"] = str(data_dir)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tender", "simulator", "--port", str(port), "--notify-url",
            f"{receiver}/webhooks/simulator", "--log-level", "warning",
            env=env,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=url, timeout=5) as sim:
                deadline = time.monotonic() + 30
                while True:
                    assert proc.returncode is None and time.monotonic() < deadline, "the simulator did not start"
                    try:
                        if (await sim.get("/healthz")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        await asyncio.sleep(0.1)
                reference = "att_" + uuid.uuid4().hex
                body: dict[str, Any] = {
                    "reference": reference,
                    "payment": "pay_" + uuid.uuid4().hex[:12],
                    "amount": 2500,
                    "currency": "BRL",
                    "capture": True,
                    "card": {"number": "4242424242424242", "exp_month": 10, "exp_year": 2030, "cvc": "123"},
                }
                r = await sim.post("/v1/authorizations", json=body, headers={"Idempotency-Key": reference})
                assert r.status_code in (200, 201), r.text
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), 15)
            secret = (data_dir / keyfiles.NOTIFY_SECRET_FILE).read_text().strip()
            assert secret not in " ".join(psutil.Process(proc.pid).cmdline())
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 15)
    assert received, "no notification arrived"
    headers, raw = received[0]
    tender_side = notify_secret(Settings(data_dir=data_dir))
    assert tender_side == secret
    event = SimulatorProcessor(url, notify_secret=tender_side).verify_notification(headers, raw)
    assert event["data"]["reference"] == reference
    with pytest.raises(InvalidSignature):
        SimulatorProcessor(url, notify_secret=OLD_DEFAULT).verify_notification(headers, raw)
