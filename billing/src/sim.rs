//! The Stripe simulator (being written).
