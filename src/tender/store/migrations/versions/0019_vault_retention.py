"""A one-off card's number leaves the vault once its payment is final.

Nothing reads it after that (captures, refunds, look-ups and reconciliation go by the processor's reference),
so keeping it only widens what a stolen database or vault key would expose. A saved card (payment_methods) keeps
its number for the charges to come. The worker erases numbers as payments end (services/payment_transitions.py);
this erases those of payments that ended before this migration. `payment_methods (card_id)` is the index both
need to tell a saved card (it also serves saving a payment's card, which looked it up by a scan).

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    ALTER TABLE vault_cards ALTER COLUMN number_ct DROP NOT NULL;
    COMMENT ON COLUMN vault_cards.number_ct IS
        'NULL once the one-off payment it was given for is final; a saved card (payment_methods) keeps it';
    CREATE INDEX payment_methods_card ON payment_methods (card_id);
    UPDATE vault_cards c SET number_ct = NULL, cvc_ct = NULL
      FROM payments p
     WHERE p.card_id = c.id AND p.payment_method_id IS NULL AND p.status IN ('succeeded', 'failed', 'canceled')
       AND c.number_ct IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM payment_methods m WHERE m.card_id = c.id);
    """)


def downgrade() -> None:
    raise NotImplementedError("Tender migrations are forward-only")
