"""A new card into the vault's row: the number (and CVC, for a payment) encrypted under the row's own id, the
keyed fingerprint. One place for both kinds of card: a payment's (services/payments.py, services/intake.py) and a
saved one (services/payment_methods.py), which never keeps a CVC."""

from __future__ import annotations

from tender.domain import cards
from tender.domain.ids import VAULT_CARD, new_id
from tender.store.payments import NewCard
from tender.vault import Vault


def new_card(vault: Vault, merchant_id: str, card: cards.ValidatedCard, *, keep_cvc: bool) -> NewCard:
    card_id = new_id(VAULT_CARD)
    return NewCard(
        id=card_id,
        merchant_id=merchant_id,
        number_ct=vault.encrypt(card.number, row_id=card_id),
        cvc_ct=vault.encrypt(card.cvc, row_id=card_id + ":cvc") if keep_cvc else None,
        fingerprint=vault.fingerprint(card.number, merchant_id=merchant_id),
        brand=card.brand,
        last4=card.last4,
        exp_month=card.exp_month,
        exp_year=card.exp_year,
        funding=card.funding,
        holder_name=card.holder_name,
    )
