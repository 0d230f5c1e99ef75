"""Which processors this Tender talks to, built once from Settings by the composition root (bootstrap.py).

Each processor kind is one entry of FACTORIES: a function from Settings to its client, or to None when its
settings leave it off. The simulator is on while TENDER_SIMULATOR_URL is set (by default `tender simulator`
on 127.0.0.1:8001; set it empty to turn the simulator off); Stripe is on while TENDER_STRIPE_SECRET_KEY is set.
Adding a processor is adding its module, with a client that is a `Processor` and a `from_settings`, and naming
it here. TENDER_SIMULATOR_INSTANCES adds more simulators under names of their own (`simulator_b=http://...`), each
a processor like any other for routing, failover and notifications; a name may not be a processor kind's.

New payments go to TENDER_DEFAULT_PROCESSOR ("simulator" by default), which must be on. A payment keeps the
processor it was created with (payments.processor), so every processor that is on stays reachable for the
look-ups, captures, cancels, refunds and notifications of its payments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from tender.config import Settings
from tender.processors import simulator, stripe
from tender.processors.base import Processor

Factory = Callable[[Settings], Processor | None]

FACTORIES: Mapping[str, Factory] = {
    "simulator": simulator.from_settings,
    "stripe": stripe.from_settings,
}


class ProcessorNotConfigured(ValueError):
    """The settings name a processor that is unknown or off: Tender refuses to start rather than take payments
    it cannot send anywhere."""


def build(settings: Settings, factories: Mapping[str, Factory] = FACTORIES) -> dict[str, Processor]:
    """The processors that are on, by name; the default processor is among them."""
    built: dict[str, Processor] = {}
    for name, factory in factories.items():
        processor = factory(settings)
        if processor is not None:
            built[name] = processor
    instances = settings.simulator_instance_urls
    if clash := sorted(set(instances) & set(factories)):
        raise ProcessorNotConfigured(
            f"TENDER_SIMULATOR_INSTANCES names {', '.join(clash)}, a processor kind's name; choose another name"
        )
    built.update(simulator.instances_from_settings(settings))
    default = settings.default_processor
    if default not in built:
        known = "unknown" if default not in factories else "off (its settings are missing)"
        on = ", ".join(built) or "none"
        raise ProcessorNotConfigured(
            f"TENDER_DEFAULT_PROCESSOR={default!r} is {known}; processors on: {on}; known: {', '.join(factories)}"
        )
    return built
