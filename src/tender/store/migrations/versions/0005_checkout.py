"""Hosted checkout: checkout sessions, and the payments made in them.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    CREATE TABLE checkout_sessions (
        id                   text PRIMARY KEY,
        merchant_id          text NOT NULL REFERENCES merchants (id),
        amount               bigint NOT NULL CHECK (amount > 0),
        currency             char(3) NOT NULL,
        reference            text NOT NULL,
        description          text,
        success_url          text NOT NULL,
        cancel_url           text NOT NULL,
        url                  text NOT NULL,         -- the hosted page, under the API's public URL when created
        payment_method_types text[] NOT NULL,
        status               text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'complete', 'expired')),
        payment_id           text,                  -- the session's latest payment (a declined one can be retried)
        expires_at           timestamptz NOT NULL,
        -- A due row for the expiry pump: expires_at while open, NULL once complete or expired.
        next_run_at          timestamptz,
        lease_token          uuid,
        tries                integer NOT NULL DEFAULT 0,
        created              timestamptz NOT NULL DEFAULT now(),
        updated              timestamptz NOT NULL DEFAULT now()
    );
    -- An order is registered once: one session per reference that is open or paid (an expired one may be
    -- replaced by a new session).
    CREATE UNIQUE INDEX checkout_sessions_reference ON checkout_sessions (merchant_id, reference)
        WHERE status <> 'expired';
    CREATE INDEX checkout_sessions_merchant ON checkout_sessions (merchant_id, id DESC);
    CREATE INDEX checkout_sessions_due ON checkout_sessions (next_run_at) WHERE next_run_at IS NOT NULL;

    ALTER TABLE payments ADD COLUMN checkout_session_id text REFERENCES checkout_sessions (id);
    CREATE INDEX payments_checkout_session ON payments (checkout_session_id) WHERE checkout_session_id IS NOT NULL;
    ALTER TABLE checkout_sessions ADD CONSTRAINT checkout_sessions_payment
        FOREIGN KEY (payment_id) REFERENCES payments (id);
    """)


def downgrade() -> None:
    raise NotImplementedError("Tender migrations are forward-only")
