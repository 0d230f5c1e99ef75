"""Pure domain rules and records: money, cards, ids, fees, ledger entries and the payment state machine.

No I/O here and no imports from the rest of Tender (not even config or errors), so every rule can be
tested in isolation; it knows nothing of connections or transactions. The store fills its records and
the services apply its rules.
"""
