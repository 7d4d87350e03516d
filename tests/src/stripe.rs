//! Stripe as the simulator (`coopgate_stripe_sim`) plays it for a test: the
//! prices the tests sell, its API called as any Stripe client would, and its
//! hosted pages (Checkout, the Customer Portal) filled in as a person would.

use bytes::Bytes;
use coopgate_stripe_sim::{SimConfig, SimPrice, Simulator};
use http::Request;
use http_body_util::Full;

use crate::{Got, send};

/// The secret key the tests use with the simulator.
pub const SECRET: &str = "sk_test_coopgate_tests";

/// The sliding scale the tests sell: two prices of one membership tier.
pub const PRICES: [&str; 2] = ["price_member_small", "price_member_large"];

/// The simulator's configuration for these tests: the two prices, USD a month.
pub fn sim_config() -> SimConfig {
    SimConfig {
        prices: PRICES
            .iter()
            .zip([500, 5_000])
            .map(|(id, cents)| SimPrice {
                id: (*id).into(),
                product_name: "Membership".into(),
                unit_amount: cents,
                currency: "usd".into(),
                interval: "month".into(),
                meter_event: None,
            })
            .collect(),
        ..SimConfig::default()
    }
}

/// Calls Stripe's API on the simulator as any Stripe client would.
pub async fn stripe(sim: &Simulator, method: http::Method, path: &str, form: &[(&str, &str)]) -> serde_json::Value {
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let (uri, body) = if method == http::Method::GET {
        (format!("{}v1{path}?{body}", sim.base_url()), String::new())
    } else {
        (format!("{}v1{path}", sim.base_url()), body)
    };
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {SECRET}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let got = send(req).await;
    assert!(got.status.is_success(), "{path}: {} {:?}", got.status, got.body);
    got.json()
}

/// An attribute's text as a browser reads it: character references decoded
/// (templates escape `/` as `&#x2f;`, for one).
fn unescape(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let Some(semi) = rest[amp..].find(';') else { break };
        let name = &rest[amp + 1..amp + semi];
        let decoded = match name {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            n if n.starts_with("#x") || n.starts_with("#X") => {
                u32::from_str_radix(&n[2..], 16).ok().and_then(char::from_u32)
            }
            n if n.starts_with('#') => n[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match decoded {
            Some(c) => out.push(c),
            None => out.push_str(&rest[amp..=amp + semi]),
        }
        rest = &rest[amp + semi + 1..];
    }
    out.push_str(rest);
    out
}

/// A form of an HTML page: its action, its inputs with their values, and its HTML.
type Form = (String, Vec<(String, String)>, String);

/// The forms of an HTML page.
fn forms(page: &str) -> Vec<Form> {
    let attr = |tag: &str, name: &str| -> Option<String> {
        let at = tag.find(&format!("{name}=\""))? + name.len() + 2;
        let end = tag[at..].find('"')? + at;
        Some(unescape(&tag[at..end]))
    };
    let mut out = Vec::new();
    let mut rest = page;
    while let Some(start) = rest.find("<form") {
        let Some(end) = rest[start..].find("</form>") else { break };
        let form = &rest[start..start + end];
        let head = &form[..form.find('>').unwrap_or(form.len())];
        let action = attr(head, "action").unwrap_or_default();
        let mut inputs = Vec::new();
        let mut tags = form;
        while let Some(i) = tags.find("<input") {
            let tag = &tags[i..i + tags[i..].find('>').unwrap_or(tags.len() - i)];
            if let (Some(name), value) = (attr(tag, "name"), attr(tag, "value")) {
                inputs.push((name, value.unwrap_or_default()));
            }
            tags = &tags[i + 6..];
        }
        out.push((action, inputs, form.to_owned()));
        rest = &rest[start + end + 7..];
    }
    out
}

/// Fills in and submits, as a person would, the form of the page at `url`
/// whose HTML contains `marker`, with `fields` typed in; returns the answer
/// (redirects are not followed: the test reads where they go).
pub async fn submit(url: &str, marker: &str, fields: &[(&str, &str)]) -> Got {
    let page = crate::get(url, &[]).await;
    assert_eq!(page.status, 200, "{url}: {:?}", page.body);
    let html = String::from_utf8_lossy(&page.body).into_owned();
    let (action, mut inputs, _) = forms(&html)
        .into_iter()
        .find(|(_, _, text)| text.contains(marker))
        .unwrap_or_else(|| panic!("no form with {marker:?} on {url}:\n{html}"));
    for (name, value) in fields {
        inputs.retain(|(n, _)| n != name);
        inputs.push(((*name).to_owned(), (*value).to_owned()));
    }
    let base: url::Url = url.parse().unwrap();
    let target = base.join(&action).unwrap();
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&inputs).finish();
    let req = Request::post(target.as_str())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    send(req).await
}

/// Pays the Checkout page at `url` with `card` as a person would; returns the answer.
pub async fn pay(url: &str, card: &str) -> Got {
    submit(url, "Subscribe", &[("card_number", card), ("name", "Ada Lovelace")]).await
}
