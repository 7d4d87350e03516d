//! coopgate: the tiered-access gateway open-data co-ops run in front of their data.
//!
//! A request's path, layer by layer, is in [`stack`]; the listener is in
//! [`server`]; configuration in [`config`]; errors become problem documents in
//! [`problem`] only. `ARCHITECTURE.md` at the repository root has the map.

pub mod account_key;
pub mod admin;
pub mod authorize;
pub mod billing;
pub mod body;
pub mod body_timeout;
pub mod caller;
pub mod cli;
pub mod config;
pub mod demo;
pub mod error;
#[cfg(any(fuzzing, test))]
pub mod fuzz;
pub mod handler_error;
pub mod identify;
pub mod invalidate;
pub mod keys;
pub mod limit;
pub mod meter;
pub mod metrics;
pub mod open_books;
pub mod ops;
pub mod portal;
pub mod problem;
pub mod proxy;
pub mod redis_target;
pub mod request_id;
pub mod route;
pub mod server;
pub mod shared;
pub mod site;
pub mod stack;
pub mod store_reads;
pub mod telemetry;
pub mod tier;
pub mod tokens;
mod upkeep;
pub mod upstream;

pub use config::Config;
pub use error::Error;
pub use server::Gateway;
