-- The co-op's double-entry ledger. Portable SQL (SQLite and PostgreSQL); times
-- are Unix milliseconds; amounts are integer minor units of their currency.
-- Append-only: 0009 refuses updates and deletes, and a transaction whose
-- postings do not sum to zero per currency.

-- Accounts in Beancount's naming (`Assets:Stripe:Balance:USD`), opened on first use.
CREATE TABLE ledger_accounts (
    name      TEXT PRIMARY KEY,
    opened_at BIGINT NOT NULL
);

-- One row per transaction, keyed by its idempotency key (for a Stripe balance
-- transaction, its id and the leg), so that a replayed source posts nothing.
-- Written after its postings, in the same database transaction: 0009 checks
-- that they balance when this row goes in.
CREATE TABLE ledger_transactions (
    key          TEXT PRIMARY KEY,
    source       TEXT NOT NULL,
    leg          TEXT NOT NULL,
    effective_at BIGINT NOT NULL,
    recorded_at  BIGINT NOT NULL,
    description  TEXT NOT NULL,
    reverses     TEXT REFERENCES ledger_transactions (key)
);
CREATE INDEX ledger_transactions_effective ON ledger_transactions (effective_at);

CREATE TABLE ledger_postings (
    transaction_key TEXT NOT NULL,
    n               INTEGER NOT NULL,
    account         TEXT NOT NULL REFERENCES ledger_accounts (name),
    amount          BIGINT NOT NULL,
    currency        TEXT NOT NULL,
    PRIMARY KEY (transaction_key, n)
);
CREATE INDEX ledger_postings_account ON ledger_postings (account);
