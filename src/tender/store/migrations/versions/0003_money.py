"""Money after capture: fee plans, the double-entry ledger, payables, settlements, refunds, the event outbox.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    -- A merchant without a row here has the default plan (domain/fees.py DEFAULT_PLAN).
    CREATE TABLE fee_plans (
        merchant_id text PRIMARY KEY REFERENCES merchants (id),
        rules       jsonb NOT NULL,
        updated     timestamptz NOT NULL DEFAULT now()
    );

    -- The ledger. An account per owner, kind and currency; its id says all three, e.g.
    -- 'merchant:mer_...:pending:BRL', 'platform:fees:BRL', 'processor:simulator:receivable:BRL', so posting
    -- needs no look-up. `balance` is the sum of its postings (debits positive, credits negative), kept by the
    -- trigger below in the same statement as the postings; `tender ledger verify` recomputes it.
    CREATE TABLE ledger_accounts (
        id          text PRIMARY KEY,
        kind        text NOT NULL CHECK (kind IN ('merchant_pending', 'merchant_available', 'merchant_paid_out',
                                                  'platform_fees', 'processor_receivable')),
        owner       text NOT NULL,
        currency    char(3) NOT NULL,
        balance     bigint NOT NULL DEFAULT 0,
        created     timestamptz NOT NULL DEFAULT now()
    );

    -- A journal entry's header says what moved, as the merchant sees it (a balance transaction): gross
    -- `amount`, `fee`, `net`; its lines are the postings. Entries and lines are append-only.
    CREATE TABLE journal_entries (
        id           text PRIMARY KEY,
        merchant_id  text NOT NULL REFERENCES merchants (id),
        type         text NOT NULL CHECK (type IN ('payment', 'refund', 'settlement')),
        source_id    text NOT NULL,
        currency     char(3) NOT NULL,
        amount       bigint NOT NULL,
        fee          bigint NOT NULL,
        net          bigint NOT NULL CHECK (net = amount - fee),
        available_on date NOT NULL,
        created      timestamptz NOT NULL DEFAULT now()
    );
    -- A payment is posted once, a refund once, whatever retries or races happen above.
    CREATE UNIQUE INDEX journal_entries_once ON journal_entries (type, source_id) WHERE type IN ('payment', 'refund');
    CREATE INDEX journal_entries_merchant ON journal_entries (merchant_id, id DESC);
    CREATE INDEX journal_entries_source ON journal_entries (source_id);

    CREATE TABLE journal_lines (
        entry_id    text NOT NULL REFERENCES journal_entries (id),
        account_id  text NOT NULL REFERENCES ledger_accounts (id),
        currency    char(3) NOT NULL,
        amount      bigint NOT NULL CHECK (amount <> 0),   -- > 0 debit, < 0 credit
        PRIMARY KEY (entry_id, account_id)
    );
    CREATE INDEX journal_lines_account ON journal_lines (account_id);

    -- Balanced on write: the lines one INSERT statement adds must sum to zero per entry and currency, and
    -- each line's currency must be its account's. Then the accounts' balances move, locked in id order so
    -- that concurrent postings to the same accounts queue instead of deadlocking. NO KEY UPDATE, not UPDATE:
    -- the lines' foreign keys already hold KEY SHARE locks on the accounts, which UPDATE would conflict with.
    CREATE FUNCTION journal_lines_post() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        bad record;
    BEGIN
        SELECT entry_id, currency, sum(amount) AS total INTO bad
            FROM new_lines GROUP BY entry_id, currency HAVING sum(amount) <> 0 LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'unbalanced journal entry %: % % off', bad.entry_id, bad.total, bad.currency
                USING ERRCODE = 'check_violation';
        END IF;
        SELECT n.entry_id, n.account_id INTO bad FROM new_lines n JOIN ledger_accounts a ON a.id = n.account_id
            WHERE a.currency <> n.currency LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'journal entry %: a line in another currency than account %', bad.entry_id,
                bad.account_id USING ERRCODE = 'check_violation';
        END IF;
        PERFORM 1 FROM ledger_accounts WHERE id IN (SELECT account_id FROM new_lines) ORDER BY id FOR NO KEY UPDATE;
        UPDATE ledger_accounts a SET balance = a.balance + d.delta
            FROM (SELECT account_id, sum(amount) AS delta FROM new_lines GROUP BY account_id) d
            WHERE a.id = d.account_id;
        RETURN NULL;
    END $$;
    CREATE TRIGGER journal_lines_post AFTER INSERT ON journal_lines
        REFERENCING NEW TABLE AS new_lines FOR EACH STATEMENT EXECUTE FUNCTION journal_lines_post();

    -- Append-only, by the database and not only by the code: a posted entry is corrected by a new one.
    CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege';
    END $$;
    CREATE TRIGGER journal_entries_append_only BEFORE UPDATE OR DELETE ON journal_entries
        FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
    CREATE TRIGGER journal_entries_no_truncate BEFORE TRUNCATE ON journal_entries
        FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();
    CREATE TRIGGER journal_lines_append_only BEFORE UPDATE OR DELETE ON journal_lines
        FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
    CREATE TRIGGER journal_lines_no_truncate BEFORE TRUNCATE ON journal_lines
        FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();

    CREATE TABLE settlements (
        id          text PRIMARY KEY,
        merchant_id text NOT NULL REFERENCES merchants (id),
        currency    char(3) NOT NULL,
        date        date NOT NULL,
        amount      bigint NOT NULL,            -- sum of its payables' net
        payables    integer NOT NULL,           -- how many
        created     timestamptz NOT NULL DEFAULT now(),
        updated     timestamptz NOT NULL DEFAULT now(),
        UNIQUE (merchant_id, currency, date)
    );
    CREATE INDEX settlements_merchant ON settlements (merchant_id, id DESC);

    CREATE TABLE refunds (
        id              text PRIMARY KEY,
        merchant_id     text NOT NULL REFERENCES merchants (id),
        payment_id      text NOT NULL REFERENCES payments (id),
        amount          bigint NOT NULL CHECK (amount > 0),
        currency        char(3) NOT NULL,
        status          text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
        reason          text,
        metadata        jsonb NOT NULL DEFAULT '{}',
        failure_code    text,
        failure_message text,
        processor       text NOT NULL,
        processor_reference text,
        -- the refund is its own processor operation: its id is the idempotency and look-up key
        calls           integer NOT NULL DEFAULT 0,
        maybe_sent      boolean NOT NULL DEFAULT false,
        next_run_at     timestamptz,
        lease_token     uuid,
        tries           integer NOT NULL DEFAULT 0,
        last_error      text,
        created         timestamptz NOT NULL DEFAULT now(),
        updated         timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX refunds_payment ON refunds (payment_id);
    CREATE INDEX refunds_merchant ON refunds (merchant_id, id DESC);
    CREATE INDEX refunds_due ON refunds (next_run_at) WHERE next_run_at IS NOT NULL;
    CREATE TRIGGER refunds_notify_work AFTER INSERT ON refunds
        FOR EACH STATEMENT EXECUTE FUNCTION notify_work();

    -- What a merchant is owed for one capture (type 'payment') or owes back for one refund (type 'refund',
    -- negative amounts). `net` sums by status are the merchant's balance, always equal to the ledger's.
    CREATE TABLE payables (
        id             text PRIMARY KEY,
        merchant_id    text NOT NULL REFERENCES merchants (id),
        payment_id     text NOT NULL REFERENCES payments (id),
        refund_id      text REFERENCES refunds (id),
        type           text NOT NULL CHECK (type IN ('payment', 'refund')),
        status         text NOT NULL CHECK (status IN ('waiting_funds', 'paid')),
        amount         bigint NOT NULL,
        fee            bigint NOT NULL,
        net            bigint NOT NULL CHECK (net = amount - fee),
        currency       char(3) NOT NULL,
        payment_method text NOT NULL,
        funding        text NOT NULL,
        payment_date   date NOT NULL,
        settlement_id  text REFERENCES settlements (id),
        created        timestamptz NOT NULL DEFAULT now(),
        paid_at        timestamptz,
        CHECK ((type = 'refund') = (refund_id IS NOT NULL))
    );
    CREATE UNIQUE INDEX payables_one_per_capture ON payables (payment_id) WHERE type = 'payment';
    CREATE UNIQUE INDEX payables_one_per_refund ON payables (refund_id) WHERE type = 'refund';
    CREATE INDEX payables_merchant ON payables (merchant_id, id DESC);
    CREATE INDEX payables_due ON payables (payment_date, merchant_id, currency) WHERE status = 'waiting_funds';
    CREATE INDEX payables_settlement ON payables (settlement_id) WHERE settlement_id IS NOT NULL;

    -- The outbox: every event is written in the transaction of the change it reports.
    CREATE TABLE events (
        id          text PRIMARY KEY,
        merchant_id text NOT NULL REFERENCES merchants (id),
        type        text NOT NULL,
        object_id   text NOT NULL,
        data        jsonb NOT NULL,
        created     timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX events_merchant ON events (merchant_id, id DESC);
    CREATE INDEX events_object ON events (object_id, id);
    """)


def downgrade() -> None:
    raise NotImplementedError("Tender migrations are forward-only")
