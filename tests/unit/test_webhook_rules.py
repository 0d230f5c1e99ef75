"""Webhook rules: Standard Webhooks signatures (checked against the official library), event filters, the
retry schedule, and the guard that keeps merchant-chosen URLs off the operator's own network."""

from __future__ import annotations

import base64
import re
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tender.domain.webhooks import (
    ALL_EVENTS,
    EVENT_TYPES,
    new_secret,
    secret_key,
    signature,
    signature_header,
    subscribes,
)
from tender.services.url_guard import MAX_URL_LENGTH, BlockedURL, GuardedResolver, check_url, is_public
from tender.services.webhook_delivery import DeliveryPolicy

# --- signatures ---------------------------------------------------------------------------------------

# The library takes the body as text, so bodies are UTF-8 text; keys are 24 to 64 bytes, as the spec asks.
bodies = st.text().map(str.encode)
message_ids = st.from_regex(r"msg_[A-Za-z0-9]{1,32}", fullmatch=True)
secrets = st.binary(min_size=24, max_size=64).map(lambda key: "whsec_" + base64.b64encode(key).decode())
V1_SIGNATURE = re.compile(r"v1,[A-Za-z0-9+/]{43}=")  # 32 bytes of HMAC-SHA256 in base64


def _headers(message_id: str, timestamp: int, signatures: str) -> dict[str, str]:
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp), "webhook-signature": signatures}


def test_new_secret_is_a_fresh_24_byte_whsec_key() -> None:
    made = [new_secret() for _ in range(20)]
    assert len(set(made)) == len(made)
    for secret in made:
        assert secret.startswith("whsec_")
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        assert len(key) == 24
        assert secret_key(secret) == key
        Webhook(secret)  # the library accepts it as a secret


@given(secret=secrets, message_id=message_ids, body=bodies)
def test_signed_body_verifies_with_the_library(secret: str, message_id: str, body: bytes) -> None:
    now = int(time.time())
    header = signature_header([secret_key(secret)], message_id, now, body)
    assert V1_SIGNATURE.fullmatch(header)
    Webhook(secret).verify(body, _headers(message_id, now, header), json_parse=False)


@given(secret=secrets, message_id=message_ids, body=bodies)
def test_the_library_refuses_what_was_not_signed(secret: str, message_id: str, body: bytes) -> None:
    now = int(time.time())
    header = signature_header([secret_key(secret)], message_id, now, body)
    hook = Webhook(secret)
    with pytest.raises(WebhookVerificationError):
        hook.verify(body + b"x", _headers(message_id, now, header), json_parse=False)  # a tampered body
    with pytest.raises(WebhookVerificationError):
        hook.verify(body, _headers(message_id + "x", now, header), json_parse=False)  # another message
    with pytest.raises(WebhookVerificationError):
        hook.verify(body, _headers(message_id, now - 1, header), json_parse=False)  # another timestamp
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, _headers(message_id, now, header), json_parse=False)  # wrong secret


def test_a_json_body_verifies_and_parses() -> None:
    secret, now = new_secret(), int(time.time())
    body = b'{"id":"evt_1","type":"payment.succeeded","data":{"amount":1000,"note":"caf\xc3\xa9"}}'
    header = signature_header([secret_key(secret)], "msg_1", now, body)
    parsed = Webhook(secret).verify(body, _headers("msg_1", now, header))
    assert parsed["data"] == {"amount": 1000, "note": "café"}


@given(
    secret=secrets,
    message_id=message_ids,
    body=bodies,
    timestamp=st.integers(min_value=0, max_value=2**33),
)
def test_signature_equals_the_library_signature(secret: str, message_id: str, body: bytes, timestamp: int) -> None:
    theirs = Webhook(secret).sign(message_id, datetime.fromtimestamp(timestamp, tz=UTC), body.decode())
    assert signature(secret_key(secret), message_id, timestamp, body) == theirs
    assert signature_header([secret_key(secret)], message_id, timestamp, body) == theirs


def test_known_answer() -> None:
    # Standard Webhooks' published test vector (the same in every official library's tests).
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert signature_header([secret_key(secret)], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == expected


@given(message_id=message_ids, body=bodies)
def test_rotation_signs_with_both_secrets(message_id: str, body: bytes) -> None:
    new, old, now = new_secret(), new_secret(), int(time.time())
    header = signature_header([secret_key(new), secret_key(old)], message_id, now, body)
    parts = header.split(" ")
    assert len(parts) == 2
    assert all(V1_SIGNATURE.fullmatch(part) for part in parts)
    assert parts[0] != parts[1]
    for secret in (new, old):
        Webhook(secret).verify(body, _headers(message_id, now, header), json_parse=False)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, _headers(message_id, now, header), json_parse=False)


# --- event filters ------------------------------------------------------------------------------------


@given(event_type=st.sampled_from(EVENT_TYPES) | st.text())
def test_all_events_matches_anything(event_type: str) -> None:
    assert subscribes([ALL_EVENTS], event_type)
    assert subscribes(["payment.succeeded", ALL_EVENTS], event_type)


@given(filters=st.lists(st.sampled_from(EVENT_TYPES), unique=True), event_type=st.sampled_from(EVENT_TYPES))
def test_a_list_matches_only_its_members(filters: list[str], event_type: str) -> None:
    assert subscribes(filters, event_type) is (event_type in filters)


def test_filters_are_exact_names() -> None:
    assert not subscribes([], "payment.succeeded")
    assert not subscribes(["payment.*"], "payment.succeeded")  # no prefix patterns: "*" alone means all
    assert not subscribes(["payment"], "payment.succeeded")
    assert not subscribes(["Payment.Succeeded"], "payment.succeeded")


# --- retry schedule -----------------------------------------------------------------------------------


def _ceiling(attempt: int, base: float, cap: float) -> float:
    return min(cap, base * 2.0 ** (attempt - 1))


def _attempts_within(window: float, delay: Callable[[int], float]) -> tuple[int, float]:
    """How many attempts fit: as in DeliveryOperations._schedule_retry, a retry is scheduled while it falls
    inside the window counted from the first attempt (the requests' own time is left out)."""
    attempts, elapsed = 1, 0.0
    while elapsed + delay(attempts) <= window:
        elapsed += delay(attempts)
        attempts += 1
    return attempts, elapsed


def test_default_policy_retries_for_about_three_days() -> None:
    policy = DeliveryPolicy()
    base, cap, window = policy.retry_base_seconds, policy.retry_cap_seconds, policy.retry_for.total_seconds()
    fewest, last_fewest = _attempts_within(window, lambda n: _ceiling(n, base, cap))  # every wait the longest
    most, last_most = _attempts_within(window, lambda n: _ceiling(n, base, cap) / 2)  # every wait the shortest
    assert 10 <= fewest < most <= 40
    # Either way the last retry comes within one capped wait of the end: the three days are used.
    assert last_fewest > window - cap
    assert last_most > window - cap


# --- URL guard ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://example.com/hooks", "http:// or https://"),
        ("/hooks", "http:// or https://"),
        ("example.com/hooks", "http:// or https://"),
        ("http://[::1", "not a valid URL"),
        ("https://user:password@example.com/hooks", "credentials"),
        ("https://user@example.com/hooks", "credentials"),
        ("https://example.com/hooks#part", "fragment"),
        ("https://example.com/" + "a" * MAX_URL_LENGTH, str(MAX_URL_LENGTH)),
        ("http://127.0.0.1/hooks", "is not a public address"),
        ("http://10.1.2.3/", "is not a public address"),
        ("http://192.168.0.1/", "is not a public address"),
        ("http://172.16.0.1/", "is not a public address"),
        ("http://169.254.169.254/latest/meta-data/", "is not a public address"),  # cloud metadata
        ("http://[::1]/", "is not a public address"),
        ("http://[::ffff:127.0.0.1]/", "is not a public address"),  # IPv4-mapped loopback
        ("http://[fc00::1]/", "is not a public address"),  # unique local
        ("http://[fe80::1%25eth0]/", "is not a public address"),  # link-local with a zone id
        ("http://0.0.0.0/", "is not a public address"),
        ("http://100.64.0.1/", "is not a public address"),  # shared address space (CGNAT)
        ("http://224.0.0.1/", "is not a public address"),  # multicast
        ("http://[ff02::1]/", "is not a public address"),  # IPv6 multicast
        ("http://localhost/", "not a public host name"),
        ("http://LocalHost./", "not a public host name"),
        ("http://foo.localhost/", "not a public host name"),
        ("http://printer.local/", "not a public host name"),
        ("http://metadata.google.internal/", "not a public host name"),
        ("http://intranet/", "not a public host name"),  # a single label: resolved by search domains
        # Address shorthands resolvers accept for 127.0.0.1, and IPv6 forms that lead to private IPv4.
        ("http://2130706433/", "is not a canonical address"),
        ("http://127.1/", "is not a canonical address"),
        ("http://0x7f.0.0.1/", "is not a canonical address"),
        ("http://0177.0.0.1/", "is not a canonical address"),
        ("http://[64:ff9b::a9fe:a9fe]/", "is not a public address"),  # NAT64 of 169.254.169.254
        ("http://[2002:a9fe:a9fe::]/", "is not a public address"),  # 6to4 of 169.254.169.254
        ("http://[::127.0.0.1]/", "is not a public address"),  # IPv4-compatible loopback
    ],
)
def test_check_url_refuses(url: str, problem: str) -> None:
    with pytest.raises(BlockedURL) as caught:
        check_url(url, allow_private=False)
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hooks?token=s3cret",
        "http://localhost:8080/hooks/s3cret?token=s3cret",
        "http://10.0.0.1/s3cret/hooks?token=s3cret",
        "https://user:pw@example.com/s3cret?token=s3cret",
        "https://example.com/s3cret?token=s3cret#frag",
    ],
)
def test_refusal_names_no_more_than_the_host(url: str) -> None:
    with pytest.raises(BlockedURL) as caught:
        check_url(url, allow_private=False)
    message = str(caught.value)
    assert "s3cret" not in message
    assert "token" not in message
    assert "/" not in message


@pytest.mark.parametrize(
    "url",
    ["https://example.com/hooks", "http://93.184.216.34:8080/x", "https://[2606:4700::1111]/", "https://example.com."],
)
def test_check_url_accepts_public_urls(url: str) -> None:
    assert str(check_url(url, allow_private=False)).rstrip("/") == url.rstrip("/")


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/hooks", "http://localhost/hooks", "http://intranet/x"])
def test_allow_private_lets_local_urls_through(url: str) -> None:
    assert check_url(url, allow_private=True).path.startswith("/")


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1/x", "http://user:pw@localhost/", "http://localhost/#x", "http://localhost/" + "a" * 2048]
)
def test_allow_private_still_checks_the_shape(url: str) -> None:
    with pytest.raises(BlockedURL):
        check_url(url, allow_private=True)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:4700::1111", True),
        ("127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:93.184.216.34", True),  # a mapped public address is public
        ("fe80::1%eth0", False),
        ("224.0.0.1", False),
        ("255.255.255.255", False),
        ("198.18.0.1", False),  # benchmarking
        ("2001:db8::1", False),  # documentation
        ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("2002:808:808::1", True),  # 6to4 of 8.8.8.8
        ("2002:c0a8:1::1", False),  # 6to4 of 192.168.0.1
        ("::", False),
        ("::1", False),
    ],
)
def test_is_public(address: str, public: bool) -> None:
    assert is_public(address) is public


# --- guarded resolver ---------------------------------------------------------------------------------


class FixedResolver(AbstractResolver):
    """DNS is the outside world here: this stands in for it with a fixed answer, whatever the name."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses
        self.calls: list[tuple[str, int, int]] = []
        self.closed = False

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.calls.append((host, port, family))
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self.addresses
        ]

    async def close(self) -> None:
        self.closed = True


async def test_public_addresses_pass_through() -> None:
    inner = FixedResolver("93.184.216.34", "2606:4700::1111")
    results = await GuardedResolver(inner).resolve("example.com", 443, socket.AF_UNSPEC)
    assert results == await inner.resolve("example.com", 443, socket.AF_UNSPEC)
    assert inner.calls[0] == ("example.com", 443, socket.AF_UNSPEC)


async def test_private_addresses_are_dropped_from_a_mixed_answer() -> None:
    inner = FixedResolver("10.0.0.5", "93.184.216.34", "::1", "::ffff:127.0.0.1", "169.254.169.254", "1.1.1.1")
    results = await GuardedResolver(inner).resolve("rebind.example", 80)
    assert [r["host"] for r in results] == ["93.184.216.34", "1.1.1.1"]
    assert all(r["hostname"] == "rebind.example" and r["port"] == 80 for r in results)


@pytest.mark.parametrize("addresses", [("127.0.0.1",), ("10.0.0.1", "fe80::1%eth0", "169.254.169.254"), ()])
async def test_no_public_address_fails_like_an_unknown_host(addresses: tuple[str, ...]) -> None:
    with pytest.raises(OSError, match=r"internal\.example") as caught:
        await GuardedResolver(FixedResolver(*addresses)).resolve("internal.example", 443)
    assert caught.value.errno is not None


async def test_close_closes_the_inner_resolver() -> None:
    inner = FixedResolver("93.184.216.34")
    await GuardedResolver(inner).close()
    assert inner.closed
