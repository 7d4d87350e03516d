-- An account's monthly spend cap on metered use, in integer minor units of
-- `spend_cap_currency` (the metered price's currency). NULL: no cap.
ALTER TABLE accounts ADD COLUMN spend_cap BIGINT;
ALTER TABLE accounts ADD COLUMN spend_cap_currency TEXT;

-- When the reporter saw a period's metered charge reach the account's cap
-- (and said so in the log, once per period whichever replica reports).
ALTER TABLE usage_periods ADD COLUMN cap_reached_at BIGINT;
