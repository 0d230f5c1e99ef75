"""Processor health: each processor's circuit breaker and the operator's pause; operator events.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("SELECT 1")  # placeholder: filled in by the work that needs it


def downgrade() -> None:
    raise NotImplementedError("Tender migrations are forward-only")
