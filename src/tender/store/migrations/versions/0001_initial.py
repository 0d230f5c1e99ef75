"""Merchants, API keys, the card vault, payments, their processor attempts, idempotency keys.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    CREATE TABLE merchants (
        id          text PRIMARY KEY,
        name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
        created     timestamptz NOT NULL DEFAULT now()
    );

    -- Only SHA-256 hashes of keys are kept: keys are 256-bit random strings, so a slow hash adds nothing.
    CREATE TABLE api_keys (
        key_hash    bytea PRIMARY KEY,
        merchant_id text NOT NULL REFERENCES merchants (id),
        kind        text NOT NULL CHECK (kind IN ('secret', 'publishable')),
        hint        text NOT NULL,            -- e.g. 'sk_test_...a1b2', for operators
        created     timestamptz NOT NULL DEFAULT now(),
        revoked     timestamptz
    );
    CREATE INDEX api_keys_merchant ON api_keys (merchant_id);

    -- Card numbers and CVCs only ever as AES-256-GCM ciphertext; the CVC is erased after authorization.
    CREATE TABLE vault_cards (
        id          text PRIMARY KEY,
        merchant_id text NOT NULL REFERENCES merchants (id),
        number_ct   bytea NOT NULL,
        cvc_ct      bytea,
        fingerprint text NOT NULL,
        brand       text NOT NULL,
        last4       char(4) NOT NULL,
        exp_month   smallint NOT NULL CHECK (exp_month BETWEEN 1 AND 12),
        exp_year    smallint NOT NULL,
        funding     text NOT NULL,
        holder_name text,
        created     timestamptz NOT NULL DEFAULT now()
    );

    CREATE TABLE payments (
        id              text PRIMARY KEY,
        merchant_id     text NOT NULL REFERENCES merchants (id),
        amount          bigint NOT NULL CHECK (amount > 0),
        currency        char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
        status          text NOT NULL CHECK (status IN ('processing', 'requires_action', 'requires_capture',
                                                         'succeeded', 'failed', 'canceled')),
        capture         boolean NOT NULL,
        amount_captured bigint NOT NULL DEFAULT 0 CHECK (amount_captured BETWEEN 0 AND amount),
        amount_refunded bigint NOT NULL DEFAULT 0 CHECK (amount_refunded BETWEEN 0 AND amount_captured),
        payment_method  jsonb NOT NULL,        -- the public view only: type, brand, last4, ...
        card_id         text REFERENCES vault_cards (id),
        reference       text,
        description     text,
        metadata        jsonb NOT NULL DEFAULT '{}',
        customer        text,
        return_url      text,
        failure_code    text,
        decline_code    text,
        failure_message text,
        next_action     jsonb,
        processor       text NOT NULL,
        processor_reference text,
        -- due-row work state: due when next_run_at <= now(); a claim pushes it forward by the lease
        next_run_at     timestamptz,
        lease_token     uuid,
        tries           integer NOT NULL DEFAULT 0,
        last_error      text,
        created         timestamptz NOT NULL,
        updated         timestamptz NOT NULL
    );
    CREATE UNIQUE INDEX payments_reference ON payments (merchant_id, reference) WHERE reference IS NOT NULL;
    CREATE INDEX payments_merchant ON payments (merchant_id, id DESC);
    CREATE INDEX payments_merchant_status ON payments (merchant_id, status, id DESC);
    CREATE INDEX payments_due ON payments (next_run_at) WHERE next_run_at IS NOT NULL;

    -- New payments wake idle workers at once (delivered at commit; one notification per statement).
    CREATE FUNCTION notify_work() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('tender_work', TG_TABLE_NAME);
        RETURN NULL;
    END $$;
    CREATE TRIGGER payments_notify_work AFTER INSERT ON payments
        FOR EACH STATEMENT EXECUTE FUNCTION notify_work();

    -- One processor operation, written BEFORE its first call: after a crash or a timeout we know it may
    -- have reached the processor, so it is looked up by its id (the processor's idempotency key) and only
    -- ever re-sent under that same id. `calls` and `last_error` keep the history of its tries.
    CREATE TABLE payment_attempts (
        id              text PRIMARY KEY,
        payment_id      text NOT NULL REFERENCES payments (id),
        operation       text NOT NULL CHECK (operation IN ('authorize')),
        processor       text NOT NULL,
        status          text NOT NULL CHECK (status IN ('pending', 'approved', 'declined', 'action_required')),
        calls           integer NOT NULL DEFAULT 0,
        last_error      text,
        processor_reference text,
        failure_code    text,
        decline_code    text,
        message         text,
        created         timestamptz NOT NULL DEFAULT now(),
        finished        timestamptz
    );
    CREATE INDEX payment_attempts_payment ON payment_attempts (payment_id);
    CREATE UNIQUE INDEX payment_attempts_open ON payment_attempts (payment_id, operation) WHERE finished IS NULL;

    CREATE TABLE idempotency_keys (
        merchant_id      text NOT NULL REFERENCES merchants (id),
        key              text NOT NULL,
        request_hash     bytea NOT NULL,
        status_code      integer,
        response_body    bytea,
        response_headers jsonb,
        created          timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (merchant_id, key)
    );
    CREATE INDEX idempotency_keys_created ON idempotency_keys (created);
    """)


def downgrade() -> None:
    raise NotImplementedError("Tender migrations are forward-only")
