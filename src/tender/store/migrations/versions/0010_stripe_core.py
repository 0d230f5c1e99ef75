"""Stripe as a processor: what a payment's attempt at Stripe needs to be found again.

The columns exist since 0001 (payment_attempts.processor_reference, payments.processor_reference); what Stripe
adds is looking them up by the processor's id: an authorize attempt's `pi_...` id is written when it is
registered (before it is confirmed) and is what Stripe's events name, so the webhook route finds the attempt
and the payment by it. Partial: the simulator's rows without one cost nothing.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    CREATE INDEX payment_attempts_processor_reference ON payment_attempts (processor, processor_reference)
        WHERE processor_reference IS NOT NULL;
    CREATE INDEX payments_processor_reference ON payments (processor, processor_reference)
        WHERE processor_reference IS NOT NULL;
    """)


def downgrade() -> None:
    raise NotImplementedError("Tender migrations are forward-only")
