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
    op.execute("""
    -- One comparison of Tender's payments and refunds at a processor with that processor's own records for
    -- one business day (services/reconciliation.py). The findings are kept on the run, for the operator
    -- (GET /admin/v1/reconciliations/{id}), not as dead letters: there is no work to retry, only to look into.
    CREATE TABLE reconciliation_runs (
        id                   text PRIMARY KEY,
        processor            text NOT NULL,
        day                  date NOT NULL,
        trigger              text NOT NULL CHECK (trigger IN ('cli', 'worker')),
        status               text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'completed', 'failed')),
        tries                integer NOT NULL DEFAULT 1,
        matched              integer NOT NULL DEFAULT 0,
        missing_in_tender    jsonb NOT NULL DEFAULT '[]',
        missing_at_processor jsonb NOT NULL DEFAULT '[]',
        mismatched           jsonb NOT NULL DEFAULT '[]',
        error                text,
        created              timestamptz NOT NULL DEFAULT now(),
        started              timestamptz NOT NULL DEFAULT now(),  -- taken again after a crash: restarted
        finished             timestamptz
    );
    -- The worker's daily run happens once per processor and day, whichever worker claims it first.
    CREATE UNIQUE INDEX reconciliation_runs_daily ON reconciliation_runs (processor, day) WHERE trigger = 'worker';

    -- Tender's side of a day: the attempts and refunds made at a processor in a time window.
    CREATE INDEX payment_attempts_processor_created ON payment_attempts (processor, created)
        WHERE operation = 'authorize';
    CREATE INDEX refunds_processor_created ON refunds (processor, created);
    """)


def downgrade() -> None:
    raise NotImplementedError("Tender migrations are forward-only")
