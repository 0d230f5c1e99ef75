"""`tender up` (what `make run` runs) and the dashboard: the banner's dashboard URL and demo user sign in over
HTTP, the home page shows the demo payments made at start, and a second start in the same data folder prints
the same user and makes no more payments the same day."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.processes import read_banner
from tests.support.serve import free_port

pytestmark = pytest.mark.e2e

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def start(data: Path, api_port: int) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENDER_")}
    env.update({"TENDER_DATA_DIR": str(data), "LOG_LEVEL": "WARNING"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "tender", "up", "--port", str(api_port), "--simulator-port", str(free_port())],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    return proc, read_banner(proc, [])


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def today_count(client: httpx.Client) -> int:
    home = client.get("/dashboard")
    assert home.status_code == 200, home.text[:500]
    found = re.search(r'data-testid="today-count">(\d+)<', home.text)
    assert found, home.text[:2000]
    return int(found.group(1))


def test_make_run_prints_a_dashboard_user_who_sees_the_demo_payments(tmp_path: Path) -> None:
    api_port = free_port()
    proc, banner = start(tmp_path / "data", api_port)
    try:
        url = re.search(r"Dashboard\s+(http://\S+/dashboard)", banner)
        user = re.search(r"sign in as\s+(\S+)\s+password\s+(\S+)", banner)
        assert url and user, banner
        assert url.group(1) == f"http://127.0.0.1:{api_port}/dashboard"
        assert (tmp_path / "data" / "demo-user.json").stat().st_mode & 0o077 == 0  # owner-only, like the keys
        with httpx.Client(base_url=f"http://127.0.0.1:{api_port}") as client:
            form = client.get("/dashboard/login")
            token = CSRF.search(form.text)
            assert token
            fields = {"csrf_token": token.group(1), "email": user.group(1), "password": user.group(2)}
            assert client.post("/dashboard/login", data=fields).status_code == 303
            deadline = time.monotonic() + 30
            while today_count(client) < 7 and time.monotonic() < deadline:  # accepted at start, in the API
                time.sleep(0.5)
            assert today_count(client) == 7
    finally:
        stop(proc)

    proc, again = start(tmp_path / "data", api_port)
    try:
        same = re.search(r"sign in as\s+(\S+)\s+password\s+(\S+)", again)
        assert same and same.groups() == user.groups()
        with httpx.Client(base_url=f"http://127.0.0.1:{api_port}") as client:
            token = CSRF.search(client.get("/dashboard/login").text)
            assert token
            fields = {"csrf_token": token.group(1), "email": user.group(1), "password": user.group(2)}
            assert client.post("/dashboard/login", data=fields).status_code == 303
            assert today_count(client) == 7  # the same day: no more demo payments
    finally:
        stop(proc)
