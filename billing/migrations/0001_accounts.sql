-- Accounts: who pays or belongs, and at which tier. Portable SQL: it runs on
-- SQLite and PostgreSQL alike. Times are Unix milliseconds (BIGINT) because the
-- database-neutral driver reads no timestamp type on both backends.
CREATE TABLE accounts (
    id                 TEXT PRIMARY KEY,
    email              TEXT NOT NULL UNIQUE,
    tier               TEXT NOT NULL,
    org                TEXT,
    stripe_customer_id TEXT UNIQUE,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
