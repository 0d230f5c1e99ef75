"""Finding 14: "`/metrics` is public: serve it only to the operator key or on a separate listen address"."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tender.config import Settings
from tests.support.api import auth
from tests.support.processes import environment
from tests.support.serve import free_port

pytestmark = pytest.mark.integration


async def test_metrics_need_the_operator_key(api: Any, settings: Any, merchant: Any) -> None:
    anonymous = await api.get("/metrics")
    assert anonymous.status_code == 401 and "tender_" not in anonymous.text
    assert anonymous.json()["error"]["type"] == "authentication_error"
    assert (await api.get("/metrics", headers=auth(merchant.secret_key))).status_code == 401
    assert (await api.get("/metrics", headers=auth("adm_wrong"))).status_code == 401
    operator = await api.get("/metrics", headers=auth(settings.admin_key.get_secret_value()))
    assert operator.status_code == 200 and "tender_payments_accepted_total" in operator.text


async def test_metrics_public_opens_them(container: Any) -> None:
    from tender.api.app import create_app

    public = dataclasses.replace(container, settings=container.settings.model_copy(update={"metrics_public": True}))
    app = create_app(public)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tender.test") as client:
        r = await client.get("/metrics")
    assert r.status_code == 200 and "tender_payments_accepted_total" in r.text


def test_the_metrics_address_must_be_host_and_port() -> None:
    assert Settings(metrics_address="127.0.0.1:9100").metrics_address == "127.0.0.1:9100"
    assert Settings(metrics_address="[::1]:9100").metrics_address == "[::1]:9100"
    for bad in ("9100", "localhost", "host:port", "127.0.0.1:0", "127.0.0.1:70000", ":9100"):
        with pytest.raises(ValueError, match="host:port"):
            Settings(metrics_address=bad)


def test_a_separate_metrics_address_serves_them_without_a_key(tender_env: dict[str, str], tmp_path: Path) -> None:
    api_port, metrics_port = free_port(), free_port()
    env = environment(tender_env, TENDER_PORT=str(api_port), TENDER_METRICS_ADDRESS=f"127.0.0.1:{metrics_port}")
    log = (tmp_path / "api.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "tender", "api"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "api.log").read_text()
            assert time.monotonic() < deadline, "the API did not start"
            try:
                if httpx.get(f"http://127.0.0.1:{api_port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
        assert scraped.status_code == 200 and "tender_payments_accepted_total" in scraped.text
        assert httpx.get(f"http://127.0.0.1:{api_port}/metrics", timeout=5).status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    with pytest.raises(httpx.ConnectError):  # the listener ended with the API
        httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2)
