"""Stripe Checkout sessions and per-merchant processor accounts.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    -- A session hosted by a processor (Stripe Checkout) instead of Tender's own page: `processor` names it
    -- (NULL: Tender's page). Registration is exactly-once by this row, not by Stripe's idempotency keys (they
    -- expire, emulators ignore them): the row exists ('registering': processor_session_id NULL) before the
    -- call, and Stripe's cs_... id is written in the transaction that answers the merchant.
    ALTER TABLE checkout_sessions ADD COLUMN processor text;
    ALTER TABLE checkout_sessions ADD COLUMN processor_session_id text;
    CREATE UNIQUE INDEX checkout_sessions_processor_session ON checkout_sessions (processor, processor_session_id)
        WHERE processor_session_id IS NOT NULL;

    -- A merchant's own credentials at a processor, encrypted by the vault (bound to the row's id).
    CREATE TABLE processor_accounts (
        id               text PRIMARY KEY,
        merchant_id      text NOT NULL REFERENCES merchants (id),
        processor        text NOT NULL,
        credentials_ct   bytea NOT NULL,      -- vault.encrypt of the JSON credentials, row_id = id
        hint             text NOT NULL,       -- e.g. the secret key's last 4, to tell accounts apart
        created          timestamptz NOT NULL DEFAULT now()
    );
    -- One account per merchant and processor: a new one replaces it (a key rotated at Stripe).
    CREATE UNIQUE INDEX processor_accounts_merchant ON processor_accounts (merchant_id, processor);
    """)


def downgrade() -> None:
    raise NotImplementedError("Tender migrations are forward-only")
