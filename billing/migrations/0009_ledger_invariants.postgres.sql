-- The ledger's invariants, held by the database itself (PostgreSQL's triggers;
-- the SQLite version of this migration holds the same): a transaction goes in
-- only when its postings, written just before it, are at least two and sum to
-- zero in every currency; no posting is added to a transaction already in; and
-- nothing is updated or deleted. Corrections are reversing transactions.

CREATE FUNCTION ledger_transactions_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT COUNT(*) FROM ledger_postings WHERE transaction_key = NEW.key) < 2
       OR EXISTS (SELECT 1 FROM ledger_postings WHERE transaction_key = NEW.key
                  GROUP BY currency HAVING SUM(amount) <> 0) THEN
        RAISE EXCEPTION 'ledger: the postings of this transaction do not balance';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER ledger_transactions_balanced BEFORE INSERT ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_transactions_balanced();

CREATE FUNCTION ledger_postings_sealed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM ledger_transactions WHERE key = NEW.transaction_key) THEN
        RAISE EXCEPTION 'ledger: this transaction is already posted';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER ledger_postings_sealed BEFORE INSERT ON ledger_postings
    FOR EACH ROW EXECUTE FUNCTION ledger_postings_sealed();

CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger: % is append-only; post a reversing transaction', TG_TABLE_NAME;
END
$$;
CREATE TRIGGER ledger_postings_append_only BEFORE UPDATE OR DELETE ON ledger_postings
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_transactions_append_only BEFORE UPDATE OR DELETE ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
