//! The member portal's sign-ins and sessions, kept in the store so that every
//! replica honours them.
//!
//! This module owns `portal_sign_ins` ([`sign_ins`]), `portal_sessions`
//! ([`sessions`]) and `portal_seats` ([`seats`]: who acts for an
//! organisation, with which role); nothing else holds SQL on them. Neither table keeps a
//! secret: links, codes and session ids are stored as SHA-256 digests
//! ([`secret`]), so a copy of the database signs nobody in.

pub mod seats;
pub mod secret;
pub mod sessions;
pub mod sign_ins;

pub use seats::{Role, Seat, Seats};
pub use sessions::{Session, Sessions};
pub use sign_ins::{SignIn, SignIns, Started};
