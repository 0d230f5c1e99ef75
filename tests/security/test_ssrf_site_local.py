"""Finding 16a: "the SSRF guard accepts site-local `fec0::/10`" (and other IANA special-purpose blocks)."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from tender.services.url_guard import BlockedURL, GuardedResolver, check_url, is_public
from tests.support.api import auth

# Blocks of the IANA special-purpose registries (and the IPv6 space outside 2000::/3) that the guard let
# through before: Python's `is_global` calls them global.
NOT_PUBLIC = [
    "fec0::1",  # site-local (deprecated, RFC 3879): routed inside a site like a private network
    "fed0:1:2::3",
    "feff:ffff::1",
    "64:ff9b:1::a00:1",  # local-use IPv4/IPv6 translation (RFC 8215)
    "3fff::1",  # documentation (RFC 9637)
    "5f00::1",  # segment routing SIDs (RFC 9602)
    "2620:4f:8000::1",  # AS112 direct delegation
    "192.88.99.1",  # deprecated 6to4 relay anycast
    "192.0.0.9",  # IETF protocol assignments: PCP anycast
    "192.31.196.1",  # AS112-v4
]
STILL_PUBLIC = ["93.184.216.34", "2606:4700::1111", "2a00:1450:4001::1", "::ffff:93.184.216.34", "2002:808:808::1"]


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_special_purpose_addresses_are_not_public(address: str) -> None:
    assert is_public(address) is False


@pytest.mark.parametrize("address", STILL_PUBLIC)
def test_public_addresses_stay_public(address: str) -> None:
    assert is_public(address) is True


@pytest.mark.parametrize("host", ["[fec0::1]", "[fec0::1%25eth0]", "[64:ff9b:1::a00:1]"])
def test_a_site_local_literal_is_refused_when_saved(host: str) -> None:
    with pytest.raises(BlockedURL, match="not a public address"):
        check_url(f"https://{host}/hooks", allow_private=False)


class SiteLocalDNS(AbstractResolver):
    """DNS is the outside world here: it answers a site-local address for every name."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host, host="fec0::5", port=port, family=socket.AF_INET6, proto=0, flags=socket.AI_NUMERICHOST
            )
        ]

    async def close(self) -> None:
        return None


async def test_a_name_resolving_to_site_local_is_not_dialled() -> None:
    with pytest.raises(OSError, match="no public address"):
        await GuardedResolver(SiteLocalDNS()).resolve("hooks.shop.example", 443, socket.AF_UNSPEC)


@pytest.mark.integration
async def test_the_api_refuses_a_site_local_webhook_url(api: Any, merchant: Any) -> None:
    r = await api.post(
        "/v1/webhook_endpoints",
        headers=auth(merchant.secret_key),
        json={"url": "https://[fec0::1]/hooks", "events": ["*"]},
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "url"
