"""`tender up --stripe`: localstripe (a Stripe emulator) runs beside the simulator, the API and the worker are
wired to it (TENDER_STRIPE_SECRET_KEY, _API_BASE, _WEBHOOK_SECRET), the banner says so, and a card payment
forced to Stripe succeeds through it; Ctrl-C stops localstripe with the rest."""

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

from tests.support.api import card_payment
from tests.support.processes import read_banner
from tests.support.serve import free_port

pytestmark = pytest.mark.e2e


def test_up_with_stripe_runs_localstripe_and_pays_through_it(tmp_path: Path) -> None:
    api_port, sim_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENDER_")}
    env.update({"TENDER_DATA_DIR": str(tmp_path / "data"), "LOG_LEVEL": "WARNING"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "tender", "up", "--stripe", "--port", str(api_port), "--simulator-port", str(sim_port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output: list[str] = []
        banner = read_banner(proc, output)
        secret = re.search(r"secret key\s+(sk_test_\S+)", banner)
        stripe_url = re.search(r"Stripe \(localstripe, an emulator\)\s+(http://\S+)", banner)
        assert secret and stripe_url, banner
        assert "TENDER_STRIPE_SECRET_KEY=sk_test_" in banner and "/webhooks/stripe" in banner
        children = psutil.Process(proc.pid).children(recursive=True)
        assert any("localstripe" in " ".join(c.cmdline()) for c in children)
        headers = {"Authorization": f"Bearer {secret.group(1)}"}
        api = f"http://127.0.0.1:{api_port}"
        r = httpx.post(f"{api}/v1/payments", headers=headers, json=card_payment(processor="stripe"), timeout=30)
        assert r.status_code == 202, r.text
        deadline = time.monotonic() + 30
        payment = r.json()
        while payment["status"] == "processing" and time.monotonic() < deadline:
            time.sleep(0.2)
            payment = httpx.get(f"{api}{r.headers['location']}", headers=headers).json()
        assert payment["status"] == "succeeded", payment
        assert payment["processor"] == "stripe" and str(payment["processor_reference"]).startswith("pi_")
        # The PaymentIntent is localstripe's: it knows it under the key Tender was given.
        pi = httpx.get(
            f"{stripe_url.group(1)}/v1/payment_intents/{payment['processor_reference']}",
            headers={"Authorization": "Bearer sk_test_tender_local"},
        )
        assert pi.status_code == 200 and pi.json()["status"] == "succeeded"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        _gone, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, f"left running: {alive}"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_the_live_check_script_does_nothing_without_a_key_and_refuses_a_live_one() -> None:
    script = Path(__file__).resolve().parents[2] / "scripts" / "stripe_live_check.py"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRIPE_")}
    skipped = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert skipped.returncode == 0 and "STRIPE_API_KEY is not set" in skipped.stdout
    live = subprocess.run(
        [sys.executable, str(script)],
        env={**env, "STRIPE_API_KEY": "sk_live_" + "x" * 12},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert live.returncode == 2 and "not a test-mode key" in live.stderr
