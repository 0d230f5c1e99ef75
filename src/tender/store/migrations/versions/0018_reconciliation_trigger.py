"""Reconciliation runs started from the operator's dashboard are stored as such (they were stored as `cli`).

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    ALTER TABLE reconciliation_runs DROP CONSTRAINT reconciliation_runs_trigger_check;
    ALTER TABLE reconciliation_runs ADD CONSTRAINT reconciliation_runs_trigger_check
        CHECK (trigger IN ('cli', 'worker', 'dashboard'));
    """)


def downgrade() -> None:
    raise NotImplementedError("Tender migrations are forward-only")
