-- Sign-ins to the member portal: one row per emailed link and code. Only
-- SHA-256 digests of the link's token and of the code are kept, so a copy of
-- the database signs nobody in. A row is used once (used_at), expires
-- (expires_at), and a code allows a few wrong tries (attempts). The email's
-- and the address's digests count the requests of the last hour, for the
-- per-email and per-address limits; rows are forgotten a day after they expire.
CREATE TABLE portal_sign_ins (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL,
    link_digest   TEXT NOT NULL UNIQUE,
    code_digest   TEXT NOT NULL,
    client_digest TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    used_at       BIGINT,
    attempts      BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX portal_sign_ins_email ON portal_sign_ins (email, created_at);
CREATE INDEX portal_sign_ins_client ON portal_sign_ins (client_digest, created_at);

-- Server-side portal sessions, by the digest of the cookie's value. A sign-in
-- makes a new one (the id rotates); signing out ends one, or every one of the
-- account ("sign out everywhere").
CREATE TABLE portal_sessions (
    id_digest  TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    csrf       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    ended_at   BIGINT
);
CREATE INDEX portal_sessions_account ON portal_sessions (account_id);
