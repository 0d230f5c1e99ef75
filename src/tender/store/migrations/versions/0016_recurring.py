"""Recurring payments: customers, saved payment methods, test clocks, subscriptions and invoices.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("SELECT 1")  # placeholder: filled in by the work that needs it


def downgrade() -> None:
    raise NotImplementedError("Tender migrations are forward-only")
