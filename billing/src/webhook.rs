//! Stripe webhooks: the `Stripe-Signature` check and the event envelope.
//!
//! The signature is checked before anything else of the request is read:
//! `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>…]` where each `v1`
//! is HMAC-SHA256 of `<t>.<raw body>` keyed with a whole `whsec_…` secret.
//! Any configured secret may match any `v1` (that is how rotation works), the
//! comparison is constant-time, and the timestamp must be within the tolerance
//! of now (300 s by default) so that a captured request cannot be replayed
//! later. Only then is the body parsed ([`Envelope::parse`]).

use ring::hmac;
use serde_json::Value;

/// Why a webhook's signature was refused. Each is a 400: the sender is not
/// Stripe, or not with a secret we know, or the request is a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `Stripe-Signature` header.
    #[error("the request has no Stripe-Signature header")]
    Missing,
    /// A header without `t=` or without any `v1=`.
    #[error("the Stripe-Signature header is not `t=…,v1=…`")]
    Malformed,
    /// No `v1` matches any configured secret.
    #[error("the signature matches no configured webhook secret")]
    NoMatch,
    /// The signature is right but its time is too far from now.
    #[error("the signature's timestamp is outside the tolerance")]
    Stale,
}

/// Checks `header` against `body` with each of `secrets`, at `now` (Unix
/// seconds), allowing `tolerance_secs` between the signature's time and now.
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &[&str],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", sig)) => signatures.extend(hex::decode(sig).ok()),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let mut signed = Vec::with_capacity(body.len() + 12);
    signed.extend_from_slice(timestamp.to_string().as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(body);
    let matched = secrets.iter().any(|secret| {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        signatures.iter().any(|sig| hmac::verify(&key, &signed, sig).is_ok())
    });
    if !matched {
        return Err(SignatureError::NoMatch);
    }
    // Checked after the MAC, as Stripe's libraries do: a stale but genuine
    // request is told apart from a forged one in the logs.
    // In i128: a genuine MAC over an absurd `t` (near i64::MIN) must not
    // overflow here and wrap into a timestamp that looks fresh.
    if (i128::from(now) - i128::from(timestamp)).abs() > i128::from(tolerance_secs) {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

/// The `Stripe-Signature` header for `body` at `timestamp` with `secret`: what
/// Stripe (and the simulator) send, and what tests sign with.
pub fn sign(body: &[u8], secret: &str, timestamp: i64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut signed = timestamp.to_string().into_bytes();
    signed.push(b'.');
    signed.extend_from_slice(body);
    format!("t={timestamp},v1={}", hex::encode(hmac::sign(&key, &signed).as_ref()))
}

/// What billing reads of an event before processing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// `evt_…`
    pub id: String,
    /// Such as `customer.subscription.updated`.
    pub kind: String,
    /// Stripe's time of the event, Unix seconds.
    pub created: i64,
    /// What processing converges (see the `stripe_events` table): the
    /// subscription the event concerns when it names one, else its object.
    pub object_id: String,
}

impl Envelope {
    /// Reads an event's JSON; `None` when it is not an event at all.
    pub fn parse(body: &[u8]) -> Option<Envelope> {
        let event: Value = serde_json::from_slice(body).ok()?;
        let id = event.get("id")?.as_str()?.to_owned();
        let kind = event.get("type")?.as_str()?.to_owned();
        let created = event.get("created").and_then(Value::as_i64).unwrap_or(0);
        let object = event.pointer("/data/object")?;
        let own_id = object.get("id").and_then(Value::as_str).unwrap_or(&id).to_owned();
        let object_id = subscription_of(&kind, object).unwrap_or(own_id);
        Some(Envelope { id, kind, created, object_id })
    }
}

/// The subscription an event's object belongs to, for the kinds whose
/// processing is "converge that subscription".
fn subscription_of(kind: &str, object: &Value) -> Option<String> {
    let id = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("id").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    };
    if kind.starts_with("customer.subscription.") {
        return object.get("id").and_then(Value::as_str).map(str::to_owned);
    }
    if kind.starts_with("invoice.") {
        // The current API puts it under `parent`; older versions at the top.
        return object
            .pointer("/parent/subscription_details/subscription")
            .and_then(id)
            .or_else(|| object.get("subscription").and_then(id));
    }
    if kind.starts_with("checkout.session.") {
        return object.get("subscription").and_then(id);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";
    const BODY: &[u8] = br#"{"id":"evt_1","type":"customer.subscription.updated","created":1700000000,"data":{"object":{"id":"sub_1","object":"subscription"}}}"#;

    #[test]
    fn a_signature_made_with_any_configured_secret_verifies() {
        let header = sign(BODY, SECRET, 1_700_000_000);
        assert_eq!(verify(Some(&header), BODY, &["whsec_old", SECRET], 1_700_000_100, 300), Ok(()));
        // Several v1 values (Stripe during a rotation): any one may match.
        let two = format!("{header},v1={}", "00".repeat(32));
        assert_eq!(verify(Some(&two), BODY, &[SECRET], 1_700_000_000, 300), Ok(()));
    }

    #[test]
    fn a_genuine_signature_over_an_absurd_timestamp_is_stale_never_fresh() {
        // Once `(now - t).abs()` overflowed: a panic in debug builds, and in
        // release a wrapped value that passed as within the tolerance.
        for t in [-9_223_372_036_821_286_912, i64::MIN, i64::MIN + 1, i64::MAX, -1] {
            let header = sign(BODY, SECRET, t);
            assert_eq!(verify(Some(&header), BODY, &[SECRET], 1_700_000_000, 300), Err(SignatureError::Stale), "t={t}");
        }
    }

    #[test]
    fn forged_altered_stale_and_missing_signatures_are_refused() {
        let header = sign(BODY, SECRET, 1_700_000_000);
        assert_eq!(verify(None, BODY, &[SECRET], 1_700_000_000, 300), Err(SignatureError::Missing));
        assert_eq!(verify(Some("v1=abcd"), BODY, &[SECRET], 1_700_000_000, 300), Err(SignatureError::Malformed));
        assert_eq!(verify(Some("t=1700000000"), BODY, &[SECRET], 1_700_000_000, 300), Err(SignatureError::Malformed));
        assert_eq!(verify(Some(&header), BODY, &["whsec_other"], 1_700_000_000, 300), Err(SignatureError::NoMatch));
        let altered = [BODY, b" "].concat();
        assert_eq!(verify(Some(&header), &altered, &[SECRET], 1_700_000_000, 300), Err(SignatureError::NoMatch));
        assert_eq!(verify(Some(&header), BODY, &[SECRET], 1_700_000_301, 300), Err(SignatureError::Stale));
        // A timestamp moved forward with the old MAC does not verify either.
        let moved = header.replace("t=1700000000", "t=1700000500");
        assert_eq!(verify(Some(&moved), BODY, &[SECRET], 1_700_000_500, 300), Err(SignatureError::NoMatch));
    }

    #[test]
    fn events_converge_the_subscription_they_concern() {
        let env = Envelope::parse(BODY).unwrap();
        assert_eq!(env.object_id, "sub_1");
        assert_eq!(env.kind, "customer.subscription.updated");
        let invoice = br#"{"id":"evt_2","type":"invoice.paid","created":1,"data":{"object":{"id":"in_1","parent":{"subscription_details":{"subscription":"sub_9"}}}}}"#;
        assert_eq!(Envelope::parse(invoice).unwrap().object_id, "sub_9");
        let charge = br#"{"id":"evt_3","type":"charge.succeeded","created":1,"data":{"object":{"id":"ch_1"}}}"#;
        assert_eq!(Envelope::parse(charge).unwrap().object_id, "ch_1");
        assert_eq!(Envelope::parse(b"not json"), None);
        assert_eq!(Envelope::parse(br#"{"id":"evt_4"}"#), None);
    }
}
