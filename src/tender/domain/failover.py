"""Where a payment's authorization goes when its processor cannot take it: the pure part of failover. No I/O.

A payment's `route` is its ordered list of candidate processors (routing, at acceptance); `processor` is the one
in charge now. The services (services/payment_operations.py) ask this module only for an authorization that
was certainly never charged: never possibly sent, or (a registering processor) never registered. Whether that
holds is theirs to know; what follows from it is decided here:
- before a call (`before_sending`): stay, move to the first usable processor after the current one (in route
  order, wrapping round), or hold until one may be usable again;
- after a TRANSIENT answer (`after_refusal`): move to the first usable processor after the current one, or
  stay and retry there (None).
A decline, an unknown outcome or a look-up never comes here: only the processor that may have charged can
say whether it did.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Gate:
    """What the circuit breaker says of one processor now."""

    usable: bool  # may be sent new work (closed, or a half-open probe slot)
    retry_at: datetime | None = None  # open: when it half-opens; None when usable or paused


OPEN = Gate(True)  # no word from the breaker: usable


@dataclass(frozen=True, slots=True)
class Stay:
    """Send it to the current processor."""


@dataclass(frozen=True, slots=True)
class Move:
    """Send it to `processor` instead; `wrapped`: that one comes before the current one in the route, i.e. the
    route has been gone round once already (the caller then backs off rather than going again at once)."""

    processor: str
    wrapped: bool


@dataclass(frozen=True, slots=True)
class Hold:
    """No processor of the route can take it now: look again at `until` (None: no processor says when; poll)."""

    until: datetime | None


Decision = Stay | Move | Hold


def candidates(route: Sequence[str] | None, current: str) -> list[str]:
    """The route as the processors to try after `current`, in order, wrapping round; `current` not among them.
    Without a route (forced by the request, or accepted before routing) there is no other."""
    if not route:
        return []
    names = list(dict.fromkeys(route))  # a name listed twice is tried once
    if current not in names:
        return names
    at = names.index(current)
    return names[at + 1 :] + names[:at]


def _wrapped(route: Sequence[str] | None, current: str, target: str) -> bool:
    names = list(dict.fromkeys(route or []))
    return current in names and target in names and names.index(target) < names.index(current)


def _gate(gates: Mapping[str, Gate], name: str) -> Gate:
    return gates.get(name, OPEN)


def next_usable(
    route: Sequence[str] | None, current: str, gates: Mapping[str, Gate], *, on: Collection[str]
) -> Move | None:
    """The first processor after `current` that is on and usable now, or None."""
    for name in candidates(route, current):
        if name in on and _gate(gates, name).usable:
            return Move(name, _wrapped(route, current, name))
    return None


def before_sending(
    route: Sequence[str] | None, current: str, gates: Mapping[str, Gate], *, on: Collection[str]
) -> Decision:
    """Before a new authorization leaves: the current processor if it is on and usable, else the next one that
    is, else hold until the earliest moment one of the route's processors that are on half-opens."""
    if current in on and _gate(gates, current).usable:
        return Stay()
    move = next_usable(route, current, gates, on=on)
    if move is not None:
        return move
    names = [current, *candidates(route, current)]
    times = [t for n in names if n in on and (t := _gate(gates, n).retry_at) is not None]
    return Hold(min(times) if times else None)


def after_refusal(
    route: Sequence[str] | None, current: str, gates: Mapping[str, Gate], *, on: Collection[str]
) -> Move | None:
    """After the current processor answered TRANSIENT (it certainly did not charge): the next usable processor,
    or None to retry at the current one with back-off."""
    return next_usable(route, current, gates, on=on)
