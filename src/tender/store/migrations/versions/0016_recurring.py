"""Recurring payments: customers, saved payment methods, test clocks, subscriptions and invoices.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    -- The merchant's billing settings, copied onto each subscription when it is created (a later change of
    -- the setting does not rewrite the dunning of subscriptions already running).
    ALTER TABLE merchants ADD COLUMN dunning_days integer[] NOT NULL DEFAULT '{1,3,5}';
    ALTER TABLE merchants ADD COLUMN on_final_failure text NOT NULL DEFAULT 'unpaid'
        CHECK (on_final_failure IN ('unpaid', 'cancel'));

    -- Simulated time for a merchant's tests: customers on a clock, and everything they own, live on its
    -- frozen_time instead of the wall clock.
    CREATE TABLE test_clocks (
        id          text PRIMARY KEY,
        merchant_id text NOT NULL REFERENCES merchants (id),
        name        text,
        frozen_time timestamptz NOT NULL,
        status      text NOT NULL DEFAULT 'ready' CHECK (status IN ('ready', 'advancing')),
        created     timestamptz NOT NULL DEFAULT now(),
        updated     timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX test_clocks_merchant ON test_clocks (merchant_id, id DESC);

    CREATE TABLE customers (
        id                     text PRIMARY KEY,
        merchant_id            text NOT NULL REFERENCES merchants (id),
        email                  text,
        name                   text,
        metadata               jsonb NOT NULL DEFAULT '{}',
        default_payment_method text,
        test_clock_id          text REFERENCES test_clocks (id),
        deleted                timestamptz,
        created                timestamptz NOT NULL,
        updated                timestamptz NOT NULL
    );
    CREATE INDEX customers_merchant ON customers (merchant_id, id DESC);
    CREATE INDEX customers_email ON customers (merchant_id, email) WHERE email IS NOT NULL;
    CREATE INDEX customers_test_clock ON customers (test_clock_id) WHERE test_clock_id IS NOT NULL;

    -- A saved card: the number stays in the vault (vault_cards, with cvc_ct NULL: a saved card never keeps
    -- its CVC); the rest is its public view. processor_refs remembers what a processor made of it once
    -- (e.g. {"stripe": {"customer": "cus_X", "payment_method": "pm_X"}}) so it is never created twice there.
    CREATE TABLE payment_methods (
        id             text PRIMARY KEY,
        merchant_id    text NOT NULL REFERENCES merchants (id),
        customer_id    text REFERENCES customers (id),
        card_id        text NOT NULL REFERENCES vault_cards (id),
        type           text NOT NULL DEFAULT 'card' CHECK (type IN ('card')),
        brand          text NOT NULL,
        last4          char(4) NOT NULL,
        exp_month      smallint NOT NULL CHECK (exp_month BETWEEN 1 AND 12),
        exp_year       smallint NOT NULL,
        funding        text NOT NULL,
        fingerprint    text NOT NULL,
        processor_refs jsonb NOT NULL DEFAULT '{}',
        created        timestamptz NOT NULL,
        updated        timestamptz NOT NULL
    );
    CREATE INDEX payment_methods_customer ON payment_methods (customer_id);
    CREATE INDEX payment_methods_merchant ON payment_methods (merchant_id, id DESC);
    ALTER TABLE customers ADD CONSTRAINT customers_default_payment_method
        FOREIGN KEY (default_payment_method) REFERENCES payment_methods (id);

    CREATE TABLE subscriptions (
        id                   text PRIMARY KEY,
        merchant_id          text NOT NULL REFERENCES merchants (id),
        customer_id          text NOT NULL REFERENCES customers (id),
        payment_method_id    text REFERENCES payment_methods (id),
        amount               bigint NOT NULL CHECK (amount > 0),
        currency             char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
        interval             text NOT NULL CHECK (interval IN ('day', 'week', 'month', 'year')),
        interval_count       integer NOT NULL DEFAULT 1 CHECK (interval_count >= 1),
        status               text NOT NULL
                             CHECK (status IN ('trialing', 'active', 'past_due', 'canceled', 'unpaid')),
        billing_anchor       timestamptz NOT NULL,
        current_period_start timestamptz NOT NULL,
        current_period_end   timestamptz NOT NULL,
        trial_end            timestamptz,
        cancel_at_period_end boolean NOT NULL DEFAULT false,
        canceled_at          timestamptz,
        ended_at             timestamptz,
        next_amount          bigint CHECK (next_amount > 0),  -- applies from the next period
        on_final_failure     text NOT NULL DEFAULT 'unpaid' CHECK (on_final_failure IN ('unpaid', 'cancel')),
        dunning_days         integer[] NOT NULL DEFAULT '{1,3,5}',
        latest_invoice_id    text,
        reference            text,
        metadata             jsonb NOT NULL DEFAULT '{}',
        -- On a test clock (copied from the customer): due by clock_due_at in the clock's time, and never by
        -- next_run_at (NULL), so the wall-clock pump never claims it.
        test_clock_id        text REFERENCES test_clocks (id),
        clock_due_at         timestamptz,
        -- due-row work state (store/claims.py)
        next_run_at          timestamptz,
        lease_token          uuid,
        tries                integer NOT NULL DEFAULT 0,
        last_error           text,
        created              timestamptz NOT NULL,
        updated              timestamptz NOT NULL,
        CHECK (test_clock_id IS NULL OR next_run_at IS NULL)
    );
    CREATE UNIQUE INDEX subscriptions_reference ON subscriptions (merchant_id, reference) WHERE reference IS NOT NULL;
    CREATE INDEX subscriptions_merchant ON subscriptions (merchant_id, id DESC);
    CREATE INDEX subscriptions_customer ON subscriptions (customer_id);
    CREATE INDEX subscriptions_due ON subscriptions (next_run_at) WHERE next_run_at IS NOT NULL;
    CREATE INDEX subscriptions_clock_due ON subscriptions (test_clock_id, clock_due_at)
        WHERE test_clock_id IS NOT NULL;

    -- One invoice per subscription and period: the unique key makes creating it exactly once
    -- (INSERT ... ON CONFLICT DO NOTHING).
    CREATE TABLE invoices (
        id                   text PRIMARY KEY,
        merchant_id          text NOT NULL REFERENCES merchants (id),
        subscription_id      text NOT NULL REFERENCES subscriptions (id),
        customer_id          text NOT NULL REFERENCES customers (id),
        amount_due           bigint NOT NULL CHECK (amount_due >= 0),
        amount_paid          bigint NOT NULL DEFAULT 0 CHECK (amount_paid >= 0),
        currency             char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
        status               text NOT NULL CHECK (status IN ('open', 'paid', 'uncollectible', 'void')),
        period_start         timestamptz NOT NULL,
        period_end           timestamptz NOT NULL,
        payment_id           text REFERENCES payments (id),  -- the latest payment trying to pay it
        attempt_count        integer NOT NULL DEFAULT 0,
        next_payment_attempt timestamptz,
        created              timestamptz NOT NULL,
        updated              timestamptz NOT NULL,
        UNIQUE (subscription_id, period_start)
    );
    CREATE INDEX invoices_subscription ON invoices (subscription_id, id DESC);
    CREATE INDEX invoices_merchant ON invoices (merchant_id, id DESC);
    ALTER TABLE subscriptions ADD CONSTRAINT subscriptions_latest_invoice
        FOREIGN KEY (latest_invoice_id) REFERENCES invoices (id);

    -- A payment paying an invoice, made with a saved method, merchant-initiated, or saving its card.
    ALTER TABLE payments ADD COLUMN invoice_id text REFERENCES invoices (id);
    ALTER TABLE payments ADD COLUMN payment_method_id text REFERENCES payment_methods (id);
    ALTER TABLE payments ADD COLUMN off_session boolean NOT NULL DEFAULT false;
    ALTER TABLE payments ADD COLUMN setup_future_usage text CHECK (setup_future_usage IN ('off_session'));
    CREATE INDEX payments_invoice ON payments (invoice_id) WHERE invoice_id IS NOT NULL;

    -- The hosted checkout for a customer: its card saved (setup_future_usage), or a subscription started
    -- (mode 'subscription', with the subscription's terms in subscription_data until it is created).
    ALTER TABLE checkout_sessions ADD COLUMN mode text NOT NULL DEFAULT 'payment'
        CHECK (mode IN ('payment', 'subscription'));
    ALTER TABLE checkout_sessions ADD COLUMN customer_id text REFERENCES customers (id);
    ALTER TABLE checkout_sessions ADD COLUMN setup_future_usage text CHECK (setup_future_usage IN ('off_session'));
    ALTER TABLE checkout_sessions ADD COLUMN subscription_data jsonb;  -- interval, interval_count, trial_days, ...
    ALTER TABLE checkout_sessions ADD COLUMN subscription_id text REFERENCES subscriptions (id);

    -- Housekeeping's safety net (store/stranded.py): a live subscription on the wall clock always has a next step.
    CREATE INDEX subscriptions_stranded ON subscriptions (id)
        WHERE status IN ('trialing', 'active', 'past_due') AND test_clock_id IS NULL AND next_run_at IS NULL;
    """)


def downgrade() -> None:
    raise NotImplementedError("Tender migrations are forward-only")
