"""API keys: rolling, with an expiry for the old keys; operator requests under Idempotency-Key.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    -- A roll (POST /admin/v1/merchants/{id}/roll_keys) gives the merchant new keys and sets when the old
    -- ones stop working: at once (expire_old_in 0) or after an overlap. NULL: no expiry.
    ALTER TABLE api_keys ADD COLUMN expires_at timestamptz;

    -- Operator requests (creating a merchant, rolling keys) keep their Idempotency-Key under the scope
    -- 'operator', which is no merchant: the column names a scope now, not necessarily a merchants row.
    -- Merchants' rows are still only ever written with the id their API key resolved to.
    ALTER TABLE idempotency_keys DROP CONSTRAINT IF EXISTS idempotency_keys_merchant_id_fkey;
    """)


def downgrade() -> None:
    raise NotImplementedError("Tender migrations are forward-only")
