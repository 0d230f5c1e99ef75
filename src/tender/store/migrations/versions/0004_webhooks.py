"""Events and webhooks: a per-object event sequence, webhook endpoints, deliveries and their attempts.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    -- Events of one object are numbered 1, 2, 3... in the order they happened, so a merchant can order them
    -- whatever order they arrive in. Every path that records an event holds the object's lock (its row, or
    -- the settlement's advisory lock); the unique index turns any race we missed into an error, not a tie.
    ALTER TABLE events ADD COLUMN sequence integer;
    UPDATE events e SET sequence = s.n
        FROM (SELECT id, row_number() OVER (PARTITION BY object_id ORDER BY id) AS n FROM events) s
        WHERE s.id = e.id;
    ALTER TABLE events ALTER COLUMN sequence SET NOT NULL;
    DROP INDEX events_object;
    CREATE UNIQUE INDEX events_object_sequence ON events (object_id, sequence);
    CREATE INDEX events_merchant_type ON events (merchant_id, type, id DESC);

    CREATE TABLE webhook_endpoints (
        id              text PRIMARY KEY,
        merchant_id     text NOT NULL REFERENCES merchants (id),
        url             text NOT NULL,
        description     text,
        events          text[] NOT NULL,         -- '{*}' or event types
        enabled         boolean NOT NULL DEFAULT true,
        disabled_reason text,                    -- 'failing' when Tender disabled it; NULL when the merchant did
        -- The signing secret, AES-256-GCM under the vault key (it must be read back to sign, so no hash).
        secret_ct       bytea NOT NULL,
        -- After a rotation the old secret signs alongside the new one until it expires.
        previous_secret_ct      bytea,
        previous_secret_expires timestamptz,
        failing_since   timestamptz,             -- first failed attempt since the last success
        created         timestamptz NOT NULL DEFAULT now(),
        updated         timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX webhook_endpoints_merchant ON webhook_endpoints (merchant_id, id DESC);

    -- One row per (event, endpoint): a due row for the delivery pump, retried until it succeeds or the
    -- retry window (TENDER_WEBHOOK_RETRY_HOURS) from `retry_from` has passed. A redelivery makes the same
    -- row due again and restarts its window.
    CREATE TABLE webhook_deliveries (
        id               text PRIMARY KEY,
        merchant_id      text NOT NULL,
        endpoint_id      text NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
        event_id         text NOT NULL REFERENCES events (id),
        status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'failed')),
        tries            integer NOT NULL DEFAULT 0,   -- claims since created or redelivered
        next_run_at      timestamptz,
        lease_token      uuid,
        retry_from       timestamptz NOT NULL DEFAULT now(),
        attempts         integer NOT NULL DEFAULT 0,   -- requests sent, ever
        last_status_code integer,
        last_error       text,
        last_attempt_at  timestamptz,
        created          timestamptz NOT NULL DEFAULT now(),
        updated          timestamptz NOT NULL DEFAULT now(),
        UNIQUE (endpoint_id, event_id)
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_run_at) WHERE next_run_at IS NOT NULL;
    CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id DESC);
    CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);
    CREATE TRIGGER webhook_deliveries_notify_work AFTER INSERT ON webhook_deliveries
        FOR EACH STATEMENT EXECUTE FUNCTION notify_work();

    -- Every request sent, for the merchant to see why a delivery failed.
    CREATE TABLE webhook_attempts (
        id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        delivery_id text NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
        attempted   timestamptz NOT NULL,
        status_code integer,
        latency_ms  integer NOT NULL,
        error       text
    );
    CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);
    """)


def downgrade() -> None:
    raise NotImplementedError("Tender migrations are forward-only")
