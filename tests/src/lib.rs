//! Shared helpers for coopgate's end-to-end suite (see `tests/tests/e2e.rs`).
