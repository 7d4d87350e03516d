-- API keys (owned by the gateway's keys module; the schema lives here with the rest).
-- Only a SHA-256 digest of the secret is kept. `updated_at` moves on every change
-- (revoke, roll) so that running gateways can notice changes made elsewhere.
CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts (id),
    name          TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    expires_at    BIGINT,
    revoked_at    BIGINT,
    rolled_to     TEXT,
    grace_until   BIGINT,
    last_used_at  BIGINT
);
CREATE INDEX api_keys_account ON api_keys (account_id);
CREATE INDEX api_keys_updated ON api_keys (updated_at);
