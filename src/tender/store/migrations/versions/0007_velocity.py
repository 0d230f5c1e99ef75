"""Security limits: the declines and look-ups counted by the velocity limits.

Declines are not copied anywhere: they are the failed payments themselves, counted in a sliding window
(services/velocity.py). This adds what that counting needs: an index on failed payments by card fingerprint,
the keyed hash of the shopper's address for payments made on the hosted page (never the address itself), and
when a shopper coming back to the page last asked for a processor look-up.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    -- Declines per card fingerprint within a merchant, newest first. Only failed payments are indexed: the
    -- query filters the counted failure codes itself, so changing that list needs no new index.
    CREATE INDEX payments_card_declines
        ON payments (merchant_id, (payment_method -> 'card' ->> 'fingerprint'), updated DESC)
        WHERE status = 'failed';

    -- Declines per checkout session (payments_checkout_session covers the session; a session has few payments).

    -- Declines per shopper's address on the hosted page: HMAC-SHA256 of the merchant and the address under a key
    -- derived from the vault key, so rows cannot be linked to an address without the key, nor across merchants.
    -- Purged by the worker's housekeeping once they are out of every window.
    CREATE TABLE checkout_client_addresses (
        payment_id   text PRIMARY KEY REFERENCES payments (id),
        address_hash bytea NOT NULL,
        created      timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX checkout_client_addresses_hash ON checkout_client_addresses (address_hash, created);
    CREATE INDEX checkout_client_addresses_created ON checkout_client_addresses (created);

    -- `?returned=1` on the hosted page asks for a processor look-up at most once per interval per payment,
    -- whichever API process serves it.
    ALTER TABLE payments ADD COLUMN shopper_lookup_at timestamptz;
    """)


def downgrade() -> None:
    raise NotImplementedError("Tender migrations are forward-only")
