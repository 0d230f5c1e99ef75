"""The processing pipeline: capture/cancel operations, dead letters, inbound processor events, live status.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    ALTER TABLE payment_attempts DROP CONSTRAINT payment_attempts_operation_check;
    ALTER TABLE payment_attempts ADD CONSTRAINT payment_attempts_operation_check
        CHECK (operation IN ('authorize', 'capture', 'cancel'));
    ALTER TABLE payment_attempts DROP CONSTRAINT payment_attempts_status_check;
    ALTER TABLE payment_attempts ADD CONSTRAINT payment_attempts_status_check
        CHECK (status IN ('pending', 'approved', 'declined', 'action_required'));
    -- capture: the amount to capture (NULL: the whole authorization)
    ALTER TABLE payment_attempts ADD COLUMN amount bigint CHECK (amount > 0);
    -- an operation once unanswered may have reached the processor: never give up on it silently
    ALTER TABLE payment_attempts ADD COLUMN maybe_sent boolean NOT NULL DEFAULT false;

    -- Every status change is announced to API processes (Prefer: wait, the SSE stream). The payload is the
    -- payment id only: listeners read the payment itself, so a lost notification costs latency, not truth.
    CREATE FUNCTION notify_payment_status() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('payment_status', NEW.id);
        RETURN NULL;
    END $$;
    CREATE TRIGGER payments_notify_status AFTER UPDATE OF status ON payments
        FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION notify_payment_status();

    -- Work that exhausted its automatic retries, for an operator to inspect and retry.
    CREATE TABLE dead_letters (
        id          text PRIMARY KEY,
        kind        text NOT NULL,              -- 'payment', later 'webhook_delivery', ...
        object_id   text NOT NULL,
        operation   text NOT NULL,
        status      text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'retried', 'resolved')),
        tries       integer NOT NULL,
        last_error  text,
        history     jsonb NOT NULL DEFAULT '[]',
        created     timestamptz NOT NULL DEFAULT now(),
        updated     timestamptz NOT NULL DEFAULT now()
    );
    CREATE UNIQUE INDEX dead_letters_open ON dead_letters (kind, object_id, operation) WHERE status = 'open';
    CREATE INDEX dead_letters_status ON dead_letters (status, id DESC);

    -- Inbound processor notifications, kept for audit; the primary key makes applying one at most once.
    CREATE TABLE processor_events (
        processor   text NOT NULL,
        event_id    text NOT NULL,
        type        text NOT NULL,
        payload     jsonb NOT NULL,
        received    timestamptz NOT NULL DEFAULT now(),
        outcome     text,                       -- what applying it did: 'applied', 'stale', 'unknown_reference'
        PRIMARY KEY (processor, event_id)
    );
    """)


def downgrade() -> None:
    raise NotImplementedError("Tender migrations are forward-only")
