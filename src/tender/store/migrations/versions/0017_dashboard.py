"""The dashboard: its users (per merchant) and their server-side sessions.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("SELECT 1")  # placeholder: filled in by the work that needs it


def downgrade() -> None:
    raise NotImplementedError("Tender migrations are forward-only")
