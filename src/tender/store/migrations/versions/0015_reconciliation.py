"""Reconciliation runs against each processor's own records and what they found.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("SELECT 1")  # placeholder: filled in by the work that needs it


def downgrade() -> None:
    raise NotImplementedError("Tender migrations are forward-only")
