"""localstripe (PyPI), a Stripe emulator, as its own process on a free port, for the Stripe tests.

`--from-scratch`: it otherwise loads the state it pickled to a fixed file in the temp dir (another run's).
What it does and does not do (read from its source, localstripe/resources.py): PaymentMethods from raw card
numbers, PaymentIntents (create, confirm, manual capture with amount_to_capture, cancel, list, retrieve with
expand), Refunds (create by payment_intent, list by payment_intent); 4000000000000341 is declined when charged,
4000002760003184 asks for authentication (next_action use_stripe_sdk, completed by its own
POST /v1/payment_intents/{id}/_authenticate); it ignores Idempotency-Key and rejects return_url.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from tests.support.serve import free_port

KEY = "sk_test_tender"  # localstripe takes any sk_test_ key


@contextmanager
def running_localstripe(startup_seconds: float = 30.0) -> Iterator[str]:
    """localstripe's base URL while it runs; stopped (by its own pid) afterwards."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "localstripe", "--from-scratch", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_seconds
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"localstripe exited with {process.returncode}")
            try:
                if httpx.get(url + "/v1/customers", auth=(KEY, ""), timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("localstripe did not start")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def intents_of(url: str, payment_id: str) -> list[dict[str, Any]]:
    """Every PaymentIntent localstripe holds for one Tender payment (metadata[tender_payment]), with its charge."""
    found: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=url, auth=(KEY, "")) as client:
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 100, "expand[]": "data.latest_charge"}
            if after:
                params["starting_after"] = after
            page = (await client.get("/v1/payment_intents", params=params)).json()
            found += [pi for pi in page["data"] if pi.get("metadata", {}).get("tender_payment") == payment_id]
            if not page.get("has_more") or not page["data"]:
                return found
            after = page["data"][-1]["id"]


async def authenticate(url: str, intent_id: str, *, success: bool) -> None:
    """Play the shopper on 3-D Secure: localstripe's own endpoint, with the PaymentIntent's client secret."""
    async with httpx.AsyncClient(base_url=url, auth=(KEY, "")) as client:
        pi = (await client.get(f"/v1/payment_intents/{intent_id}")).json()
        r = await client.post(
            f"/v1/payment_intents/{intent_id}/_authenticate",
            data={"client_secret": pi["client_secret"], "success": "true" if success else "false"},
        )
        r.raise_for_status()
