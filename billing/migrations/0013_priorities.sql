-- The roadmap members steer (billing/src/priorities.rs owns these tables).
--
-- Items, numbered from 1 so that people and ledger accounts can name them
-- (`Equity:Funds:Roadmap:12`). A member's proposal waits in status `review`
-- until the co-op publishes it; only then is it public. `proposed_by` is the
-- account that proposed it, for the co-op's review only: never published.
CREATE TABLE roadmap_items (
    number        BIGINT PRIMARY KEY,
    title         TEXT NOT NULL,
    description   TEXT NOT NULL,
    cost          BIGINT,
    cost_currency TEXT,
    status        TEXT NOT NULL,
    proposed_by   TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

-- Ballots. `link_secret` keys the slot a voter's ballot is filed under
-- until the close, when it is erased: from then on not even the database
-- links a cast ballot to a member. `fund_share_ppm` is the share of the
-- previous quarter's membership income the ballot hands out, in millionths.
-- `closed_at` is set once, by whichever replica closes it first, after the
-- fund is posted; `eligible` is the turnout's denominator frozen then.
-- `announced_at` and `reminded_at` mark the two mails to members as taken,
-- by one replica, once.
CREATE TABLE roadmap_ballots (
    number         BIGINT PRIMARY KEY,
    method         TEXT NOT NULL,
    points         BIGINT NOT NULL,
    fund_share_ppm BIGINT NOT NULL,
    opened_at      BIGINT NOT NULL,
    closes_at      BIGINT NOT NULL,
    closed_at      BIGINT,
    link_secret    TEXT,
    eligible       BIGINT,
    tally_digest   TEXT,
    announced_at   BIGINT,
    reminded_at    BIGINT
);

-- The items on a ballot, in the order they are listed.
CREATE TABLE roadmap_ballot_items (
    ballot BIGINT NOT NULL,
    item   BIGINT NOT NULL,
    n      BIGINT NOT NULL,
    PRIMARY KEY (ballot, item)
);

-- Cast ballots: no account, no time. `slot` is an HMAC of the voter's
-- account under the ballot's link secret (one row per voter, replaced when
-- they change it); `receipt` is shown to the voter until the close and then
-- erased, `receipt_digest` (its SHA-256) is what the results publish.
CREATE TABLE roadmap_votes (
    ballot         BIGINT NOT NULL,
    slot           TEXT NOT NULL,
    receipt        TEXT,
    receipt_digest TEXT NOT NULL UNIQUE,
    choices        TEXT NOT NULL,
    PRIMARY KEY (ballot, slot)
);

-- Who has voted (for turnout and reminders), never what.
CREATE TABLE roadmap_voters (
    ballot     BIGINT NOT NULL,
    account_id TEXT NOT NULL,
    PRIMARY KEY (ballot, account_id)
);

-- Endorsements: one per account and item; shown beside results, never added.
CREATE TABLE roadmap_endorsements (
    item       BIGINT NOT NULL,
    account_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (item, account_id)
);
