//! What the limiter reads of the store's recorded use: a leaf, so that the
//! limiter holds it without importing how a lost count is seeded (`seed`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use coopgate_billing::clock::Timestamp;
use coopgate_billing::usage::Usage;

/// A count read from the store, later.
pub type Recorded = Pin<Box<dyn Future<Output = Result<u64, coopgate_billing::Error>> + Send>>;

/// The use the store recorded, as the limiter asks for it.
pub trait RecordedUse: Send + Sync {
    /// Requests of `account`'s `credential` (or of all its credentials) on
    /// `routes` in `[start, end)` (Unix ms).
    fn requests(&self, account: &str, credential: Option<&str>, routes: &[Arc<str>], start: i64, end: i64) -> Recorded;
    /// Billable requests of `account` in the billing period `[start, end)`.
    fn billable(&self, account: &str, start: i64, end: i64) -> Recorded;
}

impl RecordedUse for Usage {
    fn requests(&self, account: &str, credential: Option<&str>, routes: &[Arc<str>], start: i64, end: i64) -> Recorded {
        let (usage, account, credential) = (self.clone(), account.to_owned(), credential.map(str::to_owned));
        let routes: Vec<String> = routes.iter().map(|r| r.to_string()).collect();
        Box::pin(async move {
            let routes: Vec<&str> = routes.iter().map(String::as_str).collect();
            usage
                .requests_on(
                    &account,
                    credential.as_deref(),
                    &routes,
                    Timestamp::from_millis(start),
                    Timestamp::from_millis(end),
                )
                .await
        })
    }

    fn billable(&self, account: &str, start: i64, end: i64) -> Recorded {
        let (usage, account) = (self.clone(), account.to_owned());
        Box::pin(async move {
            usage.billable_in_period(&account, Timestamp::from_millis(start), Timestamp::from_millis(end)).await
        })
    }
}
