"""Event retention: the last sequence of each object whose events were purged.

An object's next event continues its sequence from the largest stored (store/events.py); once retention has
deleted an object's events, this row is where its numbering goes on from, so a receiver never sees a sequence
go back. One small row per purged object instead of keeping its newest event (most payments have one event).

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    CREATE TABLE event_sequences (
        object_id text PRIMARY KEY,
        last      integer NOT NULL
    );
    """)


def downgrade() -> None:
    raise NotImplementedError("Tender migrations are forward-only")
