"""Starting Tender's real processes on free loopback ports, and stopping them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


@dataclass
class Stack:
    api_url: str
    simulator_url: str
    env: dict[str, str]
    logs: Path
    processes: list[Process] = field(default_factory=list)

    def start(self, name: str, *args: str) -> Process:
        log = self.logs / f"{name}.log"
        out = log.open("ab")
        popen = subprocess.Popen(
            [sys.executable, "-m", "tender", *args], env=self.env, stdout=out, stderr=subprocess.STDOUT
        )
        proc = Process(name, popen, log)
        self.processes.append(proc)
        return proc

    def stop(self) -> None:
        for p in self.processes:
            if p.popen.poll() is None:
                p.popen.send_signal(signal.SIGTERM)
        for p in self.processes:
            try:
                p.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.popen.kill()
                p.popen.wait()

    def all_logs(self) -> str:
        return "\n".join(p.log.read_text(errors="replace") for p in self.processes if p.log.exists())


def wait_until_healthy(url: str, procs: list[Process], timeout: float = 45.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if p.popen.poll() is not None:
                raise RuntimeError(f"{p.name} exited early:\n{p.log.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not healthy after {timeout}s")


def environment(base: dict[str, str], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENDER_")}
    env.update(base)
    env.update(extra)
    return env


async def tender(tender_env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = environment(tender_env, COLUMNS="200")  # wide enough that rich never folds an id
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tender", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def read_banner(proc: subprocess.Popen[str], lines: list[str], timeout: float = 90) -> str:
    """Collect output (a thread keeps reading, so the pipe never fills) until the banner's curl line."""
    assert proc.stdout is not None
    stdout = proc.stdout
    threading.Thread(target=lambda: lines.extend(iter(stdout.readline, "")), daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = "".join(lines)
        if "Try it:" in seen and "Idempotency-Key" in seen.split("Try it:")[1]:
            return seen
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError("no banner from tender up:\n" + "".join(lines)[-4000:])
