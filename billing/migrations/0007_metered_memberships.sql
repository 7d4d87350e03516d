-- The metered price, when a subscription carries it beside a membership's
-- (a member tier that includes metered use); NULL otherwise. The reporter
-- bills such subscriptions' periods like those of the metered plan itself.
ALTER TABLE stripe_subscriptions ADD COLUMN metered_price_id TEXT;
