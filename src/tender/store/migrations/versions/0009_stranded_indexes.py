"""Partial indexes for the housekeeping sweep that finds non-final rows without a next step.

The sweep (store/stranded.py) runs every few minutes over payments, refunds, webhook deliveries and checkout
sessions; without these it reads each whole table. Each index holds only the rows it looks for, so it is empty
in a healthy database and costs writes nothing but the predicate's check.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    CREATE INDEX payments_stranded ON payments (id)
        WHERE status IN ('processing', 'requires_action', 'requires_capture') AND next_run_at IS NULL;
    CREATE INDEX refunds_stranded ON refunds (id) WHERE status = 'pending' AND next_run_at IS NULL;
    CREATE INDEX webhook_deliveries_stranded ON webhook_deliveries (id)
        WHERE status = 'pending' AND next_run_at IS NULL;
    CREATE INDEX checkout_sessions_stranded ON checkout_sessions (id) WHERE status = 'open' AND next_run_at IS NULL;
    """)


def downgrade() -> None:
    raise NotImplementedError("Tender migrations are forward-only")
