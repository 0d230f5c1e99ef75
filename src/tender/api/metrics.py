"""Prometheus metrics exposed at /metrics."""

from __future__ import annotations

from prometheus_client import Counter

PAYMENTS_ACCEPTED = Counter("tender_payments_accepted_total", "Payments accepted (202) by this API process")
