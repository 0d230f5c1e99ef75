"""Idempotency keys: a keyed request fingerprint that never covers a card number or CVC.

Until now `request_hash` was an unkeyed SHA-256 of the request, from which a card's number and CVC could
be found by trying the few digits the stored last4, expiry and a guessed BIN leave open. The new
fingerprint is an HMAC under a key derived from the vault key, which a migration does not have, so the
old hashes cannot be rehashed: they are erased, from every row (any body may have held a card, in a
metadata value as well as in `payment_method`). The rows themselves stay, so that a retry of a request
made before the upgrade still replays its first answer instead of charging again; a NULL hash only means
"cannot compare", and such a replay is answered from the key alone. They are purged with the others
(`IDEMPOTENCY_KEY_HOURS` after they were made).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    ALTER TABLE idempotency_keys ALTER COLUMN request_hash DROP NOT NULL;
    UPDATE idempotency_keys SET request_hash = NULL;
    COMMENT ON COLUMN idempotency_keys.request_hash IS
        'HMAC-SHA256 (vault-derived key) of the request, card number as its keyed fingerprint, CVC left out;'
        ' NULL: made before 0006, not comparable (a replay replays)';
    """)


def downgrade() -> None:
    raise NotImplementedError("Tender migrations are forward-only")
