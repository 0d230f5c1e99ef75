"""`tender up` supervises its processes: two side by side (different TENDER_PORT and data folders) do not
clash; a worker killed with SIGKILL is restarted with back-off while the API and simulator stay up and
payments still complete; a child that keeps crashing stops everything; no secret is on a command line."""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from tender.keyfiles import NOTIFY_SECRET_FILE
from tests.support.processes import read_banner
from tests.support.serve import free_port

pytestmark = pytest.mark.e2e

CARD = {"number": "4242424242424242", "exp_month": 10, "exp_year": 2030, "cvc": "123", "holder_name": "Up"}


@dataclass
class Up:
    proc: subprocess.Popen[str]
    output: list[str]
    data_dir: Path
    api_url: str
    simulator_url: str
    admin_key: str
    secret_key: str

    def child(self, command: str) -> psutil.Process:
        """The live direct child running `tender <command>`."""
        [found] = children_running(self.proc.pid, command)
        return found

    def log(self) -> str:
        return "".join(self.output)

    def wait_for_log(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.log())
            if found:
                return found
            time.sleep(0.1)
        raise AssertionError(f"{pattern!r} not in the log:\n{self.log()[-4000:]}")


def children_running(pid: int, command: str) -> list[psutil.Process]:
    found = []
    for c in psutil.Process(pid).children():
        try:
            if c.status() != psutil.STATUS_ZOMBIE and c.cmdline()[3:4] == [command]:  # python -m tender <command>
                found.append(c)
        except psutil.Error:
            pass  # gone meanwhile
    return found


def start_up(base: Path, name: str) -> tuple[subprocess.Popen[str], int, Path]:
    api_port = free_port()
    data_dir = base / name
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENDER_")}
    env.update({"TENDER_PORT": str(api_port), "TENDER_DATA_DIR": str(data_dir), "LOG_LEVEL": "WARNING"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "tender", "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    return proc, api_port, data_dir


def ready(proc: subprocess.Popen[str], api_port: int, data_dir: Path) -> Up:
    output: list[str] = []
    try:
        banner = read_banner(proc, output, timeout=180)
    except AssertionError:
        time.sleep(1)  # the reader thread catches up with what the process wrote before it ended
        raise AssertionError(f"no banner from tender up (exit {proc.poll()}):\n" + "".join(output)[-6000:]) from None
    api = re.search(r"API\s+(http://\S+)", banner)
    sim = re.search(r"Simulator\s+(http://\S+)", banner)
    admin = re.search(r"Admin key\s+(\S+)", banner)
    secret = re.search(r"secret key\s+(sk_test_\S+)", banner)
    assert api and sim and admin and secret, banner
    assert api.group(1) == f"http://127.0.0.1:{api_port}"
    return Up(proc, output, data_dir, api.group(1), sim.group(1), admin.group(1), secret.group(1))


@contextmanager
def ups(*names: str) -> Iterator[list[Up]]:
    # Not under pytest's tmp_path: the embedded PostgreSQL runs as another user when we are root, and a
    # pytest session starting meanwhile makes its base folder owner-only again (as conftest's server does).
    base = Path(tempfile.mkdtemp(prefix="tender-up-"))
    started = [start_up(base, name) for name in names]  # side by side, starting at the same time
    try:
        yield [ready(*s) for s in started]
    finally:
        for proc, _, _ in started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        shutil.rmtree(base, ignore_errors=True)


def pay(up: Up) -> str:
    headers = {"Authorization": f"Bearer {up.secret_key}", "Prefer": "wait=20"}
    r = httpx.post(
        f"{up.api_url}/v1/payments",
        headers=headers,
        json={"amount": 2500, "currency": "BRL", "payment_method": {"type": "card", "card": CARD}},
        timeout=30,
    )
    assert r.status_code in (200, 202), r.text
    payment = r.json()
    deadline = time.monotonic() + 30
    while payment["status"] == "processing" and time.monotonic() < deadline:
        payment = httpx.get(f"{up.api_url}/v1/payments/{payment['id']}", headers=headers, timeout=30).json()
    return str(payment["status"])


def test_two_ups_side_by_side_and_a_killed_worker_comes_back() -> None:
    with ups("one", "two") as (one, two):
        side_by_side_and_a_killed_worker_comes_back(one, two)


def side_by_side_and_a_killed_worker_comes_back(one: Up, two: Up) -> None:
    assert one.simulator_url != two.simulator_url  # each simulator beside its own API, not both on 8001
    for up in (one, two):
        sim_port = int(up.simulator_url.rsplit(":", 1)[1])
        api_port = int(up.api_url.rsplit(":", 1)[1])
        assert sim_port == api_port + 1 or sim_port != 8001
        assert httpx.get(f"{up.simulator_url}/healthz").status_code == 200
        assert pay(up) == "succeeded"

    # No secret on any command line (`ps` shows them to every user): they travel by environment.
    secrets = [
        one.admin_key,
        one.secret_key,
        (one.data_dir / NOTIFY_SECRET_FILE).read_text().strip(),
        (one.data_dir / "vault.key").read_text().strip(),
        base64.b64decode((one.data_dir / "vault.key").read_text()).hex(),
    ]
    for process in psutil.Process(one.proc.pid).children(recursive=True):
        try:
            command_line = " ".join(process.cmdline())
        except psutil.Error:
            continue
        assert not [s for s in secrets if s in command_line], command_line

    api, simulator, worker = one.child("api"), one.child("simulator"), one.child("worker")
    worker.kill()  # SIGKILL
    one.wait_for_log(rf"worker \(pid {worker.pid}\) exited with code -9; restarting it in 1 s")
    restarted = one.wait_for_log(r"worker restarted \(pid (\d+)\)")
    assert int(restarted.group(1)) != worker.pid
    assert one.child("worker").pid == int(restarted.group(1))
    assert one.child("api").pid == api.pid and one.child("simulator").pid == simulator.pid  # never stopped
    assert httpx.get(f"{one.api_url}/healthz").status_code == 200
    assert one.proc.poll() is None
    assert pay(one) == "succeeded"  # the new worker does the work
    assert pay(two) == "succeeded"  # the other `tender up` never noticed

    # Ctrl-C still stops everything cleanly.
    children = psutil.Process(one.proc.pid).children(recursive=True)
    one.proc.send_signal(signal.SIGINT)
    assert one.proc.wait(timeout=30) == 0
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, alive


def test_a_child_that_keeps_crashing_stops_everything() -> None:
    with ups("crashy") as (up,):
        keeps_crashing(up)


def keeps_crashing(up: Up) -> None:
    children = psutil.Process(up.proc.pid).children(recursive=True)
    killed: list[int] = []
    deadline = time.monotonic() + 90
    while up.proc.poll() is None and time.monotonic() < deadline:
        for worker in children_running(up.proc.pid, "worker"):
            if worker.pid not in killed:
                killed.append(worker.pid)
                worker.kill()
        time.sleep(0.1)
    assert up.proc.wait(timeout=30) == 1
    assert len(killed) == 5
    up.wait_for_log(r"worker \(pid \d+\) exited with code -9, its 5th exit within 60 s: it keeps crashing")
    for delay in ("1 s", "2 s", "4 s", "8 s"):  # the back-off doubles
        assert f"restarting it in {delay}" in up.log()
    _gone, alive = psutil.wait_procs([c for c in children if c.is_running()], timeout=15)
    assert not alive, alive
