"""Operator events: what an operator should know about, as typed records (stored by store/operator_events.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

CIRCUIT_OPENED = "processor.circuit_opened"
CIRCUIT_HALF_OPENED = "processor.circuit_half_opened"
CIRCUIT_CLOSED = "processor.circuit_closed"
PROCESSOR_PAUSED = "processor.paused"
PROCESSOR_RESUMED = "processor.resumed"
RECONCILIATION_COMPLETED = "reconciliation.completed"

TYPES = (
    CIRCUIT_OPENED,
    CIRCUIT_HALF_OPENED,
    CIRCUIT_CLOSED,
    PROCESSOR_PAUSED,
    PROCESSOR_RESUMED,
    RECONCILIATION_COMPLETED,
)


@dataclass(frozen=True, slots=True)
class OperatorEvent:
    id: str
    type: str
    data: dict[str, Any]
    created: datetime
