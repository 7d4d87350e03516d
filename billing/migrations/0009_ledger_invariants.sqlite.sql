-- The ledger's invariants, held by the database itself (SQLite's triggers; the
-- PostgreSQL version of this migration holds the same): a transaction goes in
-- only when its postings, written just before it, are at least two and sum to
-- zero in every currency; no posting is added to a transaction already in; and
-- nothing is updated or deleted. Corrections are reversing transactions.

CREATE TRIGGER ledger_transactions_balanced BEFORE INSERT ON ledger_transactions
WHEN (SELECT COUNT(*) FROM ledger_postings WHERE transaction_key = NEW.key) < 2
  OR EXISTS (SELECT 1 FROM ledger_postings WHERE transaction_key = NEW.key
             GROUP BY currency HAVING SUM(amount) <> 0)
BEGIN
    SELECT RAISE(ABORT, 'ledger: the postings of this transaction do not balance');
END;

CREATE TRIGGER ledger_postings_sealed BEFORE INSERT ON ledger_postings
WHEN EXISTS (SELECT 1 FROM ledger_transactions WHERE key = NEW.transaction_key)
BEGIN
    SELECT RAISE(ABORT, 'ledger: this transaction is already posted');
END;

CREATE TRIGGER ledger_postings_no_update BEFORE UPDATE ON ledger_postings
BEGIN SELECT RAISE(ABORT, 'ledger: postings are never changed; post a reversing transaction'); END;
CREATE TRIGGER ledger_postings_no_delete BEFORE DELETE ON ledger_postings
BEGIN SELECT RAISE(ABORT, 'ledger: postings are never deleted; post a reversing transaction'); END;
CREATE TRIGGER ledger_transactions_no_update BEFORE UPDATE ON ledger_transactions
BEGIN SELECT RAISE(ABORT, 'ledger: transactions are never changed; post a reversing transaction'); END;
CREATE TRIGGER ledger_transactions_no_delete BEFORE DELETE ON ledger_transactions
BEGIN SELECT RAISE(ABORT, 'ledger: transactions are never deleted; post a reversing transaction'); END;
