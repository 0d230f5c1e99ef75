"""The simulator's settings, including the fault knobs that tests and operators turn at run time."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast


class ConfigError(ValueError):
    """A setting is out of range or of the wrong type; `param` names it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message


@dataclass
class SimulatorConfig:
    db_path: str | None = None  # None: in memory, gone with the process
    public_url: str = "http://127.0.0.1:8001"  # base of the 3-D Secure challenge page URLs
    notify_url: str | None = None  # where signed notifications go; None: none are sent
    # In-process default (tests); `tender simulator` always passes a configured or generated secret.
    notify_secret: str = "simsecret_dev"  # noqa: S105
    # A real acquirer notifies every authorization, not just 3-D Secure results; that lets Tender
    # learn the outcome of a call whose answer it lost. Off: only asynchronous changes are notified.
    notify_on_create: bool = True
    # How long the test UPI addresses (success@upi, failure@upi) take to answer a collect request.
    upi_delay_ms: int = 1500
    # Fault knobs. Rates are probabilities (not money), drawn independently in the order
    # error, drop, timeout for each request to a charging endpoint.
    latency_ms: int = 0
    latency_jitter_ms: int = 0
    error_rate: float = 0.0  # 503 before anything is charged
    timeout_rate: float = 0.0  # charged, then the answer waits timeout_seconds
    timeout_seconds: float = 15.0
    drop_rate: float = 0.0  # the connection is cut, before or after charging (a coin decides)
    # The coin's bias: the share of drops that come after the charge (1.0: every dropped request charged,
    # the answer lost; fault tests of "charged, then unknown" need that without the before-charge half).
    drop_after_charge_share: float = 0.5
    seed: int | None = None

    def __post_init__(self) -> None:
        self.public_url = self.public_url.rstrip("/")
        for name in ("latency_ms", "latency_jitter_ms"):
            if getattr(self, name) < 0:
                raise ConfigError(name, "must be >= 0")
        if not 0 <= self.upi_delay_ms <= 3_600_000:
            raise ConfigError("upi_delay_ms", "must be between 0 and 3600000")
        for name in ("error_rate", "timeout_rate", "drop_rate", "drop_after_charge_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(name, "must be between 0 and 1")
        if not 0.0 <= self.timeout_seconds <= 3600.0:
            raise ConfigError("timeout_seconds", "must be between 0 and 3600")

    def public_view(self) -> dict[str, Any]:
        """Everything but the secret, for the admin endpoint."""
        view = dataclasses.asdict(self)
        del view["notify_secret"]
        return view


# What `POST /_sim/config` may change at run time, with the JSON types each accepts.
_INT = (int,)
_NUM = (int, float)
RUNTIME_KNOBS: dict[str, tuple[type, ...]] = {
    "latency_ms": _INT,
    "latency_jitter_ms": _INT,
    "error_rate": _NUM,
    "timeout_rate": _NUM,
    "timeout_seconds": _NUM,
    "drop_rate": _NUM,
    "drop_after_charge_share": _NUM,
    "seed": _INT,
    "notify_url": (str,),
    "notify_on_create": (bool,),
    "upi_delay_ms": _INT,
}
_NULLABLE = {"seed", "notify_url"}


def updated(config: SimulatorConfig, changes: Mapping[str, Any]) -> SimulatorConfig:
    """A copy of `config` with `changes` applied, or ConfigError naming the first bad field."""
    clean: dict[str, Any] = {}
    for name, value in changes.items():
        types = RUNTIME_KNOBS.get(name)
        if types is None:
            raise ConfigError(name, "is not a run-time setting")
        if value is None and name in _NULLABLE:
            clean[name] = None
            continue
        # bool is an int in Python; JSON true is not a number of milliseconds.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ConfigError(name, f"must be of type {' or '.join(t.__name__ for t in types)}")
        clean[name] = float(cast(float, value)) if types is _NUM else value
    return dataclasses.replace(config, **clean)
