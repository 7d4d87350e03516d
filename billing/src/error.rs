//! The crate's one error type: every fallible function of billing returns
//! it, and the gateway's `problem` module decides what each variant answers.

use crate::{stripe, webhook};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A currency code that is not three ASCII letters.
    #[error("`{0}` is not a currency code; write three letters such as usd or eur")]
    InvalidCurrency(String),
    /// An amount that is not a number of the currency's major units.
    #[error("`{0}` is not an amount; write it in major units with the currency, such as `50.00 eur` or `5000 jpy`")]
    InvalidAmount(String),
    /// A spend cap in another currency than the metered price it caps.
    #[error("the spend cap is in {cap}, but the metered price bills in {price}: set the cap in {price}")]
    CapCurrency {
        /// The cap's currency (its code: this type is a leaf, and names no other).
        cap: String,
        /// The price's.
        price: String,
    },
    /// Adding two amounts of different currencies.
    #[error("cannot combine {0} with {1}")]
    CurrencyMismatch(String, String),
    /// An amount beyond what an `i64` of minor units holds.
    #[error("amount overflow")]
    Overflow,
    /// A store URL that is neither `sqlite:` nor `postgres:`.
    #[error("store.url `{0}` is not supported; use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedStore(String),
    /// A backup asked of a store that coopgate does not copy itself.
    #[error(
        "coopgate backs up only the embedded SQLite store; back up PostgreSQL with pg_dump (deploy/README.md, Backups)"
    )]
    BackupNotSupported,
    /// A backup's target file exists already (never overwritten).
    #[error("{0} exists already: choose a new file (a backup never overwrites one)")]
    BackupExists(String),
    /// Something that is not an email address.
    #[error("`{0}` is not an email address")]
    InvalidEmail(String),
    /// An account with this email exists already.
    #[error("an account with email {0} exists already")]
    EmailTaken(String),
    /// No account has this id or email.
    #[error("no account {0}")]
    AccountNotFound(String),
    /// The operating system gave no randomness for a new identifier.
    #[error("no randomness available: {0}")]
    Randomness(String),
    /// The database failed or could not be reached.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("database migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// Stripe could not be reached or refused a request.
    #[error(transparent)]
    Stripe(#[from] stripe::StripeFailure),
    /// Stripe sent something billing cannot use.
    #[error("unexpected data from Stripe: {0}")]
    StripeData(String),
    /// A webhook whose signature does not verify.
    #[error("webhook refused: {0}")]
    WebhookSignature(#[from] webhook::SignatureError),
    /// A price that no tier's `stripe_prices` names.
    #[error("no tier is bought with price `{price}`; the membership prices are {}", .known.join(", "))]
    UnknownPrice {
        /// The price asked for.
        price: String,
        /// Every membership price.
        known: Vec<String>,
    },
    /// A spend cap was asked for where nothing is metered.
    #[error("this deployment has no metered plan ([billing.metered]), so there is nothing to cap")]
    NoMeteredPlan,
    /// The account has no Stripe customer yet (it never checked out).
    #[error("{0} has no Stripe customer yet: check out a membership first")]
    NoStripeCustomer(String),
    /// A ledger account name Beancount would not accept.
    #[error("`{name}` is not a ledger account name: {why}")]
    InvalidLedgerAccount {
        /// The name given.
        name: String,
        /// What is wrong with it.
        why: String,
    },
    /// A ledger transaction whose postings do not sum to zero in a currency.
    #[error("ledger transaction {key} does not balance: its {currency} postings sum to {sum} minor units, not 0")]
    Unbalanced {
        /// The transaction's idempotency key.
        key: String,
        /// The currency that does not balance.
        currency: String,
        /// What its postings sum to.
        sum: i128,
    },
    /// A ledger transaction with fewer than two postings.
    #[error("ledger transaction {0} needs at least two postings")]
    TooFewPostings(String),
    /// A ledger export could not be written.
    #[error("cannot write the ledger export: {0}")]
    Export(String),
    /// A year outside the ledger's calendar (1970 to 9999).
    #[error("{0} is not a year of the ledger: write a year from 1970 to 9999")]
    NoSuchYear(i32),
    /// A year that has not ended cannot be closed.
    #[error("{0} is not over yet: a year can be closed from the first of January after it")]
    YearNotOver(i32),
    /// Patronage of a year that has not been closed.
    #[error("{0} has not been closed, so it has no surplus yet: close the year first")]
    YearNotClosed(i32),
    /// Patronage of a year that closed without a surplus.
    #[error("{0} closed with no surplus to share")]
    NoSurplus(i32),
    /// A portal sign-in link or code that names no sign-in (or one used up by wrong codes).
    #[error("this sign-in link or code is not valid; ask for a new one")]
    SignInInvalid,
    /// A sign-in that was already used.
    #[error("this sign-in was already used; ask for a new one if you are not signed in")]
    SignInUsed,
    /// A sign-in past its time.
    #[error("this sign-in has expired; ask for a new one")]
    SignInExpired {
        /// Whom it was for, so the page can offer a new one.
        email: String,
    },
    /// A wrong one-time code.
    #[error("that code is not the one we sent; {tries_left} more tries")]
    SignInWrongCode {
        /// Tries left before the sign-in can no longer be used with a code.
        tries_left: i64,
    },
    /// Too many sign-ins asked for by one email or one address.
    #[error("too many sign-in requests; try again in {retry_after_secs} s")]
    SignInRateLimited {
        /// When the oldest request of the last hour stops counting.
        retry_after_secs: i64,
    },
    /// An organisation with as many people as its tier allows.
    #[error("the organisation has all the {limit} seats its tier allows; remove one, or move to a tier with more")]
    SeatLimit {
        /// People its tier allows, its own email included.
        limit: u32,
    },
    /// An email that already acts for the organisation.
    #[error("{0} already has a seat in this organisation")]
    SeatTaken(String),
    /// A month that is not `YYYY-MM`, or a range of months that is empty or too long.
    #[error("`{0}` is not a month or a range of at most ten years of months; write YYYY-MM")]
    InvalidMonth(String),
    /// A bad labor file for patronage.
    #[error("labor file, line {line}: {why}")]
    LaborFile {
        /// The line, counting from 1.
        line: usize,
        /// What is wrong there.
        why: String,
    },
    /// A collective share that is not a fraction from 0 to 1.
    #[error("collective share `{0}` is not a number from 0 to 1 (with at most six decimals), such as 0.5")]
    CollectiveShare(String),
    /// A roadmap item that cannot be added or changed so.
    #[error("{0}")]
    InvalidItem(String),
    /// No roadmap item has this number.
    #[error("no roadmap item {0}")]
    NoSuchItem(i64),
    /// No ballot has this number.
    #[error("no ballot {0}")]
    NoSuchBallot(i64),
    /// A vote for a ballot that has closed.
    #[error("ballot {0} is closed; it takes no more votes")]
    BallotClosed(i64),
    /// A vote or ballot that does not fit its rules; the text says which.
    #[error("{0}")]
    BadVote(String),
    /// An account that is not a member asked to vote.
    #[error(
        "only members vote, one ballot per membership; this account's tier `{tier}` is not a membership (registered users can endorse items instead)"
    )]
    NotAMember {
        /// The account's tier.
        tier: String,
    },
    /// A ledger account that is not a designated fund.
    #[error("`{0}` is not a fund; funds are Equity:Funds:<Kind>:<Name>, such as Equity:Funds:Roadmap:12")]
    NotAFund(String),
    /// Spending more than a fund holds.
    #[error("{fund} holds {holds}, less than {spend}; nothing was booked")]
    FundTooSmall {
        /// The fund.
        fund: String,
        /// What it holds.
        holds: String,
        /// What was to be spent.
        spend: String,
    },
}
