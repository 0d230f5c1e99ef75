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
    op.execute("""
    -- One row per processor (and merchant account at it: '' is Tender's own): its circuit breaker, shared by
    -- every API and worker process, and the operator's pause (kept on the '' row: a pause stops the processor).
    CREATE TABLE processor_health (
        processor            text NOT NULL,
        account              text NOT NULL DEFAULT '',
        state                text NOT NULL DEFAULT 'closed' CHECK (state IN ('closed', 'open', 'half_open')),
        consecutive_failures integer NOT NULL DEFAULT 0,
        -- The failure-rate window: [[bucket start (Unix seconds), calls, failures], ...] (domain/circuit.py).
        buckets              jsonb NOT NULL DEFAULT '[]',
        opened_at            timestamptz,
        retry_at             timestamptz,
        reopened             integer NOT NULL DEFAULT 0,
        probe_successes      integer NOT NULL DEFAULT 0,
        probes_out           integer NOT NULL DEFAULT 0,
        probes_expire        timestamptz,
        paused               boolean NOT NULL DEFAULT false,
        paused_reason        text,
        paused_at            timestamptz,
        updated              timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (processor, account)
    );

    -- What happened that an operator should know about (a circuit opened, a processor paused, ...).
    CREATE TABLE operator_events (
        id      text PRIMARY KEY,
        type    text NOT NULL,
        data    jsonb NOT NULL DEFAULT '{}',
        created timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX operator_events_type ON operator_events (type, id);
    """)


def downgrade() -> None:
    raise NotImplementedError("Tender migrations are forward-only")
