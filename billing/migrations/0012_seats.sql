-- Organisation seats: the people who act for an organisation's account (one
-- of an institutional tier), each with a role: owner, billing or developer.
-- A seat is given by email, so that an invitation reaches someone who has no
-- account yet; it holds from the invitation until removed_at. The account's
-- own email is its first owner and needs no seat.
CREATE TABLE portal_seats (
    id          TEXT PRIMARY KEY,
    org_account TEXT NOT NULL,
    email       TEXT NOT NULL,
    role        TEXT NOT NULL,
    invited_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    removed_at  BIGINT
);
-- One live seat per person and organisation, also when two owners invite at once.
CREATE UNIQUE INDEX portal_seats_live ON portal_seats (org_account, email) WHERE removed_at IS NULL;
CREATE INDEX portal_seats_email ON portal_seats (email);

-- The seat a session acts through, when it acts for an organisation; checked
-- on every request, so a removed seat stops acting at once.
ALTER TABLE portal_sessions ADD COLUMN seat_id TEXT;

-- The seat a key was made through, so that removing the seat revokes its keys.
ALTER TABLE api_keys ADD COLUMN seat_id TEXT;
CREATE INDEX api_keys_seat ON api_keys (seat_id);
