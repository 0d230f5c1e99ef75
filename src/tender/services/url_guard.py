"""Outbound URLs a merchant chooses (webhook endpoints) must not reach the operator's own network.

Two checks, because a name can resolve to anything and change its mind (DNS rebinding):
- `check_url` when an endpoint is saved and again before every request: http(s) only, no credentials,
  and an address literal must be public;
- `GuardedResolver` when a connection is opened: every address a name resolves to that is not public is
  dropped, and a name with none left fails like an unknown host. The connection then goes to an address
  that was checked, so what is checked is what is dialled.
Both are switched off by `TENDER_WEBHOOK_ALLOW_PRIVATE` (local development, tests): then anything goes.
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

MAX_URL_LENGTH = 2048
# Names that always mean this machine or its network, whatever a resolver says.
_LOCAL_NAMES = ("localhost", ".localhost", ".local", ".internal")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")


class BlockedURL(ValueError):
    """The URL may not be used; the message says why (and never contains more than the host)."""


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

# Every block of IANA's IPv4 and IPv6 Special-Purpose Address Registries (checked 2025), and the
# reserved and multicast ranges: none of them is where a merchant's webhook receiver lives. Blocks that
# the registries call globally reachable (protocol anycast such as PCP, TURN, AS112, AMT) are refused
# too: they serve protocols, not HTTP. Translation prefixes (64:ff9b::/96, ::ffff:0:0/96, 2002::/16)
# are judged by the IPv4 address they lead to instead. Listed here rather than left to `is_global`,
# whose lists change between Python releases; `is_global` is still checked as well.
_SPECIAL_V4 = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # this network
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # shared address space (carrier-grade NAT)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments (DS-Lite, PCP and TURN anycast, NAT64 discovery)
        "192.0.2.0/24",  # documentation (TEST-NET-1)
        "192.31.196.0/24",  # AS112-v4
        "192.52.193.0/24",  # AMT
        "192.88.99.0/24",  # deprecated 6to4 relay anycast
        "192.168.0.0/16",  # private
        "192.175.48.0/24",  # direct delegation AS112
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation (TEST-NET-2)
        "203.0.113.0/24",  # documentation (TEST-NET-3)
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the limited broadcast 255.255.255.255
    )
)
# IPv6 unicast on the internet is 2000::/3 (IANA IPv6 Address Space): everything outside it is refused,
# which covers ::/128, ::1, 64:ff9b:1::/48, 100::/64, 100:0:0:1::/64, 5f00::/16, fc00::/7, fe80::/10,
# the deprecated site-local fec0::/10 and ff00::/8. Inside it, the special-purpose blocks:
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
_SPECIAL_V6 = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "2001::/23",  # IETF protocol assignments (Teredo, benchmarking, ORCHID, PCP/TURN/AMT/AS112 anycast)
        "2001:db8::/32",  # documentation
        "2620:4f:8000::/48",  # direct delegation AS112
        "3fff::/20",  # documentation
    )
)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address leads to: mapped, 6to4, NAT64 and the old IPv4-compatible form."""
    found = [v4 for v4 in (ip.ipv4_mapped, ip.sixtofour) if v4 is not None]
    if ip in _NAT64 or (int(ip) >> 32 == 0 and int(ip) > 1):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def _public_v4(ip: ipaddress.IPv4Address) -> bool:
    return ip.is_global and not any(ip in net for net in _SPECIAL_V4)


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone id is not part of the address
    if isinstance(ip, ipaddress.IPv4Address):
        return _public_v4(ip)
    embedded = _embedded_ipv4(ip)
    if embedded:
        return all(_public_v4(v4) for v4 in embedded)
    return ip in _GLOBAL_UNICAST_V6 and not any(ip in net for net in _SPECIAL_V6) and ip.is_global


def _address_literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def check_url(url: str, *, allow_private: bool) -> URL:
    """The parsed URL, or BlockedURL saying what is wrong with it."""
    if len(url) > MAX_URL_LENGTH:
        raise BlockedURL(f"must be at most {MAX_URL_LENGTH} characters")
    try:
        parsed = URL(url)
    except ValueError:
        raise BlockedURL("is not a valid URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise BlockedURL("must be an absolute http:// or https:// URL")
    if parsed.user is not None or parsed.password is not None:
        raise BlockedURL("must not contain credentials; authenticate requests by their signature")
    if parsed.fragment:
        raise BlockedURL("must not contain a fragment")
    if allow_private:
        return parsed
    host = parsed.host.lower().rstrip(".")
    literal = _address_literal(host)
    if literal is not None and not is_public(literal):
        raise BlockedURL("is not a public address")
    if literal is None and _NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]):
        # 127.1, 0x7f.0.0.1, 2130706433: address shorthands that resolvers accept; no real name ends so.
        raise BlockedURL("has a host that is not a canonical address")
    if host == "localhost" or host.endswith(_LOCAL_NAMES) or (literal is None and "." not in host):
        raise BlockedURL("has a host that is not a public host name")
    return parsed


class GuardedResolver(AbstractResolver):
    """Resolves like the default resolver, minus every address that is not public."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = [r for r in await self._inner.resolve(host, port, family) if is_public(r["host"])]
        if not results:
            # An OSError, so aiohttp reports it as a connection error: nothing was sent. With an errno, so
            # aiohttp's message carries ours.
            raise OSError(errno.EACCES, f"{host} resolves to no public address")
        return results

    async def close(self) -> None:
        await self._inner.close()
