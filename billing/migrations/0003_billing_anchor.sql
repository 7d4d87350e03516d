-- The moment a paid subscription's billing cycle is anchored to (Unix ms):
-- monthly quotas with `reset = "billing-anchor"` start over on its day and time
-- of every month. NULL: the calendar month.
ALTER TABLE accounts ADD COLUMN billing_anchor BIGINT;
