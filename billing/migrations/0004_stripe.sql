-- Memberships through Stripe. Portable SQL (SQLite and PostgreSQL); times are
-- Unix milliseconds unless a column says Stripe's seconds.

-- Every Stripe event received (by webhook or by `billing sync`), once by id.
-- `object_id` is what processing converges: the subscription an event is
-- about (also for invoices and checkout sessions that carry one), or the
-- event's own object. Events of one object are processed one at a time.
CREATE TABLE stripe_events (
    id              TEXT PRIMARY KEY,
    type            TEXT NOT NULL,
    created         BIGINT NOT NULL,
    object_id       TEXT NOT NULL,
    payload         TEXT NOT NULL,
    via             TEXT NOT NULL,
    received_at     BIGINT NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    processed_at    BIGINT,
    last_error      TEXT
);
CREATE INDEX stripe_events_due ON stripe_events (processed_at, next_attempt_at);
CREATE INDEX stripe_events_object ON stripe_events (object_id);

-- Who is processing an object now, so that two replicas never apply an older
-- fetch of it over a newer one. A holder that dies loses it at `until`.
CREATE TABLE stripe_object_locks (
    object_id TEXT PRIMARY KEY,
    holder    TEXT NOT NULL,
    until     BIGINT NOT NULL
);

-- Stripe's state of each membership subscription, as last fetched, and the
-- tier it gives. `past_due_since` starts the grace period.
CREATE TABLE stripe_subscriptions (
    id                   TEXT PRIMARY KEY,
    account_id           TEXT NOT NULL REFERENCES accounts (id),
    customer_id          TEXT NOT NULL,
    status               TEXT NOT NULL,
    price_id             TEXT,
    tier                 TEXT,
    billing_cycle_anchor BIGINT NOT NULL,
    current_period_end   BIGINT,
    cancel_at_period_end BIGINT NOT NULL,
    past_due_since       BIGINT,
    updated_at           BIGINT NOT NULL
);
CREATE INDEX stripe_subscriptions_account ON stripe_subscriptions (account_id);

-- Balance transactions of money events (charges, refunds, disputes, payouts),
-- kept as Stripe sent them for the ledger to post. Amounts in minor units.
CREATE TABLE stripe_balance_transactions (
    id          TEXT PRIMARY KEY,
    event_id    TEXT NOT NULL,
    type        TEXT NOT NULL,
    amount      BIGINT NOT NULL,
    fee         BIGINT NOT NULL,
    net         BIGINT NOT NULL,
    currency    TEXT NOT NULL,
    source      TEXT,
    created     BIGINT NOT NULL,
    payload     TEXT NOT NULL,
    received_at BIGINT NOT NULL
);

-- Small named values billing keeps, such as how far `billing sync` has read.
CREATE TABLE billing_state (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
