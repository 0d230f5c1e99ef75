"""Pure domain rules: money, cards, ids and the payment state machine.

No I/O here and no imports from the rest of Tender, so every rule can be tested in isolation.
"""
