"""Routing: per-merchant rules, each payment's candidate processors, failover, and dead letters naming the processor.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    -- A merchant's routing rules, validated by domain/routing.py on save; no row: the default (["simulator"]).
    CREATE TABLE routing_rules (
        merchant_id text PRIMARY KEY REFERENCES merchants (id),
        rules       jsonb NOT NULL,
        updated     timestamptz NOT NULL DEFAULT now()
    );

    -- The processors a payment may run on, in order, chosen when it was accepted; `processor` is the one in
    -- charge now. It moves down the list only when the one before certainly charged nothing. NULL: only
    -- `processor` (payments from before routing, or a processor forced by the request).
    ALTER TABLE payments ADD COLUMN route text[];

    -- An authorization attempt that the processor certainly never processed (refused connection, an explicit
    -- "not processed", an open circuit or a pause): the payment went on to the next processor.
    ALTER TABLE payment_attempts DROP CONSTRAINT payment_attempts_status_check;
    ALTER TABLE payment_attempts ADD CONSTRAINT payment_attempts_status_check
        CHECK (status IN ('pending', 'approved', 'declined', 'action_required', 'not_processed'));

    -- Dead letters show the processor whose work is stuck (NULL: not a processor's work, e.g. a webhook).
    ALTER TABLE dead_letters ADD COLUMN processor text;
    """)


def downgrade() -> None:
    raise NotImplementedError("Tender migrations are forward-only")
