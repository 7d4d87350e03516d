//! coopgate: the tiered-access gateway open-data co-ops run in front of their data.
//!
//! A request's path, layer by layer, is in `stack.rs`; the listener is in
//! [`server`]; configuration in [`config`]; errors become problem documents in
//! `problem.rs` only. `ARCHITECTURE.md` at the repository root has the map.
//!
//! Public are only the modules the binary, the end-to-end tests and the fuzz
//! targets use (the CLI, the config tree, the gateway and what it shares,
//! keys and tokens, the ops, open books and roadmap paths, metrics, invalidations);
//! everything else is the crate's own.

mod account_key;
mod admin;
mod authorize;
mod billing;
mod body;
mod body_timeout;
mod caller;
pub mod cli;
pub mod config;
mod demo;
pub mod error;
#[cfg(any(fuzzing, test))]
pub mod fuzz;
mod handler_error;
mod hashing;
mod identify;
pub mod invalidate;
pub mod keys;
mod limit;
mod markdown;
mod meter;
pub mod metrics;
pub mod open_books;
pub mod ops;
mod portal;
pub mod priorities;
mod problem;
mod proxy;
mod redis_target;
mod request_id;
mod route;
pub mod server;
pub mod shared;
mod site;
mod stack;
mod store_reads;
mod telemetry;
mod tier;
pub mod tokens;
mod upkeep;
mod upstream;

pub use config::Config;
pub use error::Error;
pub use server::Gateway;
