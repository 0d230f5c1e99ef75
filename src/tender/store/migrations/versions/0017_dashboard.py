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
    op.execute("""
    -- A person who signs in to the dashboard with an email and a password (Argon2id hash, never the password).
    -- merchant_id NULL: a user of no merchant (kept for later roles; operators sign in with the admin key).
    CREATE TABLE dashboard_users (
        id            text PRIMARY KEY,
        merchant_id   text REFERENCES merchants (id),
        email         text NOT NULL,
        password_hash text NOT NULL,
        -- Set when Tender chose the password (printed once by `tender user create`): the user must choose
        -- their own at the next sign-in before any page.
        must_change_password boolean NOT NULL DEFAULT false,
        created       timestamptz NOT NULL DEFAULT now(),
        last_login    timestamptz
    );
    -- Emails are compared case-insensitively: one address is one user.
    CREATE UNIQUE INDEX dashboard_users_email ON dashboard_users (lower(email));
    CREATE INDEX dashboard_users_merchant ON dashboard_users (merchant_id) WHERE merchant_id IS NOT NULL;

    -- A signed-in browser. The id is the SHA-256 of the cookie's token, so a leaked table signs nobody in.
    -- A user's session, or an operator's (signed in with the admin key: user_id NULL); merchant_id is the
    -- merchant whose data the session sees (a user's own; the one an operator chose, or NULL).
    CREATE TABLE dashboard_sessions (
        id          bytea PRIMARY KEY,
        user_id     text REFERENCES dashboard_users (id) ON DELETE CASCADE,
        operator    boolean NOT NULL DEFAULT false,
        merchant_id text REFERENCES merchants (id),
        csrf_token  text NOT NULL,
        created     timestamptz NOT NULL DEFAULT now(),
        last_seen   timestamptz NOT NULL DEFAULT now(),
        expires     timestamptz NOT NULL,
        CHECK (operator = (user_id IS NULL)),
        CHECK (operator OR merchant_id IS NOT NULL OR user_id IS NOT NULL)
    );
    CREATE INDEX dashboard_sessions_user ON dashboard_sessions (user_id) WHERE user_id IS NOT NULL;
    CREATE INDEX dashboard_sessions_expires ON dashboard_sessions (expires);

    -- Failed sign-ins, counted per email and per address over a sliding window (the rate limit); rows past
    -- the window are deleted as new ones come. Both are keyed hashes (the vault's HMAC key): the table holds
    -- no address, nor the emails people mistyped. The admin key's failures count under one email key.
    CREATE TABLE dashboard_signin_failures (
        id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        email_key   bytea NOT NULL,
        address_key bytea NOT NULL,
        at          timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX dashboard_signin_failures_email ON dashboard_signin_failures (email_key, at);
    CREATE INDEX dashboard_signin_failures_address ON dashboard_signin_failures (address_key, at);
    CREATE INDEX dashboard_signin_failures_at ON dashboard_signin_failures (at);
    """)

    # -- The payments search's indexes (D2: the merchant pages, services/dashboard.py) ----------------------
    # By a card's last 4 digits and by customer, newest first within the merchant, as the page lists them
    # (bench/dashboard.py, 100,000 payments: without them each is a scan of the merchant's payments).
    op.execute("""
    CREATE INDEX payments_merchant_last4
        ON payments (merchant_id, ((payment_method -> 'card' ->> 'last4')), id DESC);
    CREATE INDEX payments_merchant_customer ON payments (merchant_id, customer, id DESC) WHERE customer IS NOT NULL;
    """)


def downgrade() -> None:
    raise NotImplementedError("Tender migrations are forward-only")
