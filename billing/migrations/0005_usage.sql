-- Metered use. Portable SQL (SQLite and PostgreSQL); times are Unix milliseconds.

-- What identified callers used, summed per minute: written by every replica's
-- meter flush (adding to the row), read by the usage reporter and `coopgate usage`.
-- `billable` counts the requests `metering.billable` names (served ones by
-- default); it is decided when the request is served, so a later config change
-- never rebills the past.
CREATE TABLE usage_minutes (
    account_id   TEXT NOT NULL,
    credential   TEXT NOT NULL,
    route        TEXT NOT NULL,
    status_class TEXT NOT NULL,
    minute       BIGINT NOT NULL,
    requests     BIGINT NOT NULL,
    billable     BIGINT NOT NULL,
    bytes        BIGINT NOT NULL,
    PRIMARY KEY (account_id, credential, route, status_class, minute)
);
CREATE INDEX usage_minutes_account_minute ON usage_minutes (account_id, minute);

-- Flushes already written, by the id their replica gave them: a flush whose
-- answer was lost is retried with the same id and adds nothing the second time.
CREATE TABLE usage_batches (
    id         TEXT PRIMARY KEY,
    written_at BIGINT NOT NULL
);
CREATE INDEX usage_batches_written ON usage_batches (written_at);

-- Usage reported to Stripe: one row per meter event (or invoice item, for usage
-- reported too late for a meter event), written before it is sent so that a
-- crash between the two resends the same identifier rather than a new one.
-- Units are what the event adds; a period's rows sum to what Stripe was told.
-- `event_time` (Unix seconds, inside the period) is fixed when the row is
-- planned: a resend must carry exactly the first attempt's fields.
CREATE TABLE usage_reports (
    identifier   TEXT PRIMARY KEY,
    account_id   TEXT NOT NULL,
    customer_id  TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    period_end   BIGINT NOT NULL,
    seq          BIGINT NOT NULL,
    units        BIGINT NOT NULL,
    event_time   BIGINT NOT NULL,
    via          TEXT NOT NULL,
    amount       BIGINT,
    currency     TEXT,
    created_at   BIGINT NOT NULL,
    sent_at      BIGINT,
    stripe_id    TEXT,
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    UNIQUE (account_id, period_start, seq)
);
CREATE INDEX usage_reports_unsent ON usage_reports (sent_at);

-- Billing periods of metered subscriptions as the reporter saw them: usage in
-- [period_start, period_end) beyond `included` is billed to `customer_id`.
-- `closed_at` is set once the period has ended and its last units were planned.
CREATE TABLE usage_periods (
    account_id      TEXT NOT NULL,
    period_start    BIGINT NOT NULL,
    period_end      BIGINT NOT NULL,
    customer_id     TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    included        BIGINT NOT NULL,
    closed_at       BIGINT,
    PRIMARY KEY (account_id, period_start)
);

-- The start of a subscription's current period (Unix seconds, like its end):
-- metered use is counted against the allowance from here.
ALTER TABLE stripe_subscriptions ADD COLUMN current_period_start BIGINT;
