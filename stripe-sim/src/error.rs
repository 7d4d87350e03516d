//! The simulator's own failures, as its public API reports them: it could not
//! start, or an action asked of it through [`crate::Simulator`] was refused.
//! (What its Stripe API answers a client is `api_error`, Stripe's error shape.)

/// A failure of the simulator itself.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// It could not start, or refused an action (with what it said).
    #[error("the Stripe simulator: {0}")]
    Simulator(String),
    /// The operating system gave no randomness for ids and secrets.
    #[error("no randomness from the operating system: {0}")]
    Randomness(String),
}
