//! coopgate end to end: real sockets, real processes. One binary, a module per
//! feature. The fixtures live in the `coopgate_tests` library (`tests/src/`: a
//! gateway with billing, the portal, the `coopgate` process, Redis servers,
//! `eventually`); a module imports them from there and never from another
//! module here (`e2e/structure.rs` fails if one does). A helper only one
//! module uses stays in it.

mod e2e {
    mod accounts;
    mod admin;
    mod backup;
    mod browser;
    mod cluster;
    mod config_check;
    mod connections;
    mod demo;
    mod deploy;
    mod early_access;
    mod errors;
    mod faults;
    mod journal;
    mod keys;
    mod ledger;
    mod limits;
    mod lost_counts;
    mod memberships;
    mod metering;
    mod open_books;
    mod openapi;
    mod portal;
    mod portal_billing;
    mod portal_downloads;
    mod portal_seats;
    mod priorities;
    mod proxy;
    mod replicas;
    mod shared_limits;
    mod shutdown;
    mod spend_cap;
    mod store_outage;
    mod streaming;
    mod structure;
    mod tls;
    mod tokens;
    mod usage;
}
