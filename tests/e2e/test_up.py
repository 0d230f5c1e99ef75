"""`tender up` (what `make run` runs) on a fresh data folder: embedded PostgreSQL, migrations, a demo
merchant whose printed key works, and a clean stop of every process on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.processes import read_banner
from tests.support.serve import free_port

pytestmark = pytest.mark.e2e


def test_up_runs_everything_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    api_port, sim_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENDER_")}
    env.update({"TENDER_DATA_DIR": str(tmp_path / "data"), "LOG_LEVEL": "WARNING"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "tender", "up", "--port", str(api_port), "--simulator-port", str(sim_port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output: list[str] = []
        banner = read_banner(proc, output)
        secret = re.search(r"secret key\s+(sk_test_\S+)", banner)
        admin = re.search(r"Admin key\s+(\S+)", banner)
        assert secret and admin, banner
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 3
        headers = {"Authorization": f"Bearer {secret.group(1)}"}
        r = httpx.post(
            f"http://127.0.0.1:{api_port}/v1/payments",
            headers=headers,
            json={
                "amount": 2500,
                "currency": "BRL",
                "payment_method": {
                    "type": "card",
                    "card": {
                        "number": "4242424242424242",
                        "exp_month": 10,
                        "exp_year": 2030,
                        "cvc": "123",
                        "holder_name": "Luke Skywalker",
                    },
                },
            },
        )
        assert r.status_code == 202, r.text
        deadline = time.monotonic() + 30
        status = "processing"
        while status == "processing" and time.monotonic() < deadline:
            time.sleep(0.1)
            status = httpx.get(f"http://127.0.0.1:{api_port}{r.headers['location']}", headers=headers).json()["status"]
        assert status == "succeeded"
        assert (tmp_path / "data" / "vault.key").stat().st_mode & 0o077 == 0  # owner-only key file
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        _gone, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, f"left running: {alive}"
    finally:
        if proc.poll() is None:
            proc.kill()
