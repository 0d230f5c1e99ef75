"""The card-acquirer simulator: a separate small ASGI service Tender's `simulator` processor talks to.

It answers like an acquirer (test cards, 3-D Secure, idempotency on the attempt reference, signed
notifications, status look-ups), injects faults on demand, and keeps its own record of what it
charged so tests can prove nothing was charged twice. Run it with `python -m tender.simulator`.
"""

from __future__ import annotations

from tender.simulator.app import create_app
from tender.simulator.config import SimulatorConfig

__all__ = ["SimulatorConfig", "create_app"]
