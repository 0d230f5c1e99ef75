"""Stripe's inbound events: stored, applied at most once. Nothing to change, on purpose.

Stripe's events are stored in processor_events (0002), whose primary key (processor, event_id) already makes
storing and applying one at most once; the attempt an event names by Stripe's own id (`pi_...`) is found
through 0010's index on payment_attempts (processor, processor_reference). The revision stays, empty, so that
the chain stays 0010 -> 0011 -> 0012.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    raise NotImplementedError("Tender migrations are forward-only")
