//! Every kind of object the simulator makes has the fields and JSON types of
//! Stripe's published example of that kind (`shared/stripe/fixtures3.json`,
//! read at test time and never copied here), and parses as async-stripe's type.
//! The objects are made through async-stripe's own request builders, which
//! already parse every answer; the raw JSON is then fetched for the comparison.

use std::collections::HashMap;

use serde_json::Value;

use super::{TestSim, api, checkout_session, customer_with_card, start, subscribe};
use crate::SimConfig;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/stripe/fixtures3.json");

/// Fields Stripe sends that its published examples leave out (the examples
/// omit optional fields). Each is `(kind, dotted path)`; `data` steps into list items.
const FIXTURE_OMITS: &[(&str, &str)] = &[
    // The payment intent that paid the invoice: how coopgate links the two.
    ("invoice_payment", "payment.payment_intent"),
    // Which price a line bills.
    ("invoice", "lines.data.pricing.price_details"),
    ("line_item", "pricing.price_details"),
    // An update event's old values.
    ("event", "data.previous_attributes"),
    // Why the last attempt failed (the example only has `type`).
    ("payment_intent", "last_payment_error.charge"),
    ("payment_intent", "last_payment_error.code"),
    ("payment_intent", "last_payment_error.decline_code"),
    ("payment_intent", "last_payment_error.doc_url"),
    ("payment_intent", "last_payment_error.message"),
    ("payment_intent", "last_payment_error.payment_method"),
];

/// Hashes whose keys are the caller's own words, compared only as hashes.
const FREE_FORM: &[&str] = &["metadata", "payload"];

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Differences of shape between our object and Stripe's example: field names
/// where both are objects, JSON types where neither is null, list items
/// against the example's first item.
fn shape_problems(kind: &str, ours: &Value, example: &Value, path: &str, problems: &mut Vec<String>) {
    match (ours, example) {
        (Value::Null, _) | (_, Value::Null) => {}
        (Value::Object(_), Value::Object(_))
            if FREE_FORM.iter().any(|f| path == *f || path.ends_with(&format!(".{f}"))) => {}
        (Value::Object(a), Value::Object(b)) => {
            for key in a.keys().filter(|k| !b.contains_key(*k)) {
                let field = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                if !FIXTURE_OMITS.contains(&(kind, field.as_str())) {
                    problems.push(format!("{kind}: `{field}` is not in Stripe's example"));
                }
            }
            for key in b.keys().filter(|k| !a.contains_key(*k)) {
                let field = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                problems.push(format!("{kind}: `{field}` is missing"));
            }
            for (key, value) in a {
                if let Some(theirs) = b.get(key) {
                    let field = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                    shape_problems(kind, value, theirs, &field, problems);
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if let Some(first) = b.first() {
                for item in a {
                    shape_problems(kind, item, first, path, problems);
                }
            }
        }
        (a, b) if json_type(a) != json_type(b) => {
            problems.push(format!("{kind}: `{path}` is {} but Stripe's is {}", json_type(a), json_type(b)));
        }
        _ => {}
    }
}

#[test]
fn the_shape_check_finds_extra_missing_and_retyped_fields() {
    let example = serde_json::json!({"a": 1, "b": {"c": "x"}, "l": [{"d": true}], "n": null});
    let ours = serde_json::json!({"a": "1", "b": {"c": "y", "e": 2}, "l": [{"d": false}, {}], "n": {"z": 1}});
    let mut problems = Vec::new();
    shape_problems("thing", &ours, &example, "", &mut problems);
    problems.sort();
    assert_eq!(
        problems,
        [
            "thing: `a` is string but Stripe's is number",
            "thing: `b.e` is not in Stripe's example",
            "thing: `l.d` is missing",
        ]
    );
}

/// A raw `GET /v1…` answer.
async fn raw(t: &TestSim, path: &str) -> Value {
    let reply = api(&t.sim, "GET", path, "", &[]).await;
    assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
    reply.json()
}

/// Parses raw JSON as async-stripe does (miniserde).
fn parses<T: miniserde::Deserialize>(kind: &str, value: &Value, problems: &mut Vec<String>) {
    if let Err(e) = miniserde::json::from_str::<T>(&value.to_string()) {
        problems.push(format!("{kind}: async-stripe cannot parse it ({e:?})"));
    }
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}")).to_owned()
}

#[tokio::test]
async fn every_object_kind_has_stripes_fields_and_types_and_parses_with_async_stripe() {
    let Ok(text) = std::fs::read_to_string(FIXTURES) else {
        println!("Stripe fixtures not found at {FIXTURES}: the simulator's fidelity check did not run");
        return;
    };
    let fixtures: Value = serde_json::from_str(&text).expect("fixtures are JSON");
    let resources = &fixtures["resources"];
    let t = start(SimConfig::default()).await;
    let mut objects: Vec<(&str, Value)> = Vec::new();
    let mut problems = Vec::new();

    // Customer, card, catalogue, meter.
    let customer = customer_with_card(&t, "pm_card_visa").await;
    let customer = raw(&t, &format!("/customers/{}", customer.id.as_str())).await;
    let pm = customer["invoice_settings"]["default_payment_method"].as_str().expect("default card").to_owned();
    objects.push(("payment_method", raw(&t, &format!("/payment_methods/{pm}")).await));
    let product = stripe_product::product::CreateProduct::new("Donation").send(&t.client).await.expect("product");
    objects.push(("product", raw(&t, &format!("/products/{}", product.id.as_str())).await));
    let one_time = stripe_product::price::CreatePrice::new(stripe_types::Currency::USD)
        .product(product.id.as_str())
        .unit_amount(1500)
        .send(&t.client)
        .await
        .expect("price");
    objects.push(("price", raw(&t, &format!("/prices/{}", one_time.id.as_str())).await));
    objects.push(("price", raw(&t, "/prices/price_api_metered").await));
    let meter = stripe_billing::billing_meter::CreateBillingMeter::new(
        stripe_billing::billing_meter::CreateBillingMeterDefaultAggregation::new(
            stripe_billing::billing_meter::CreateBillingMeterDefaultAggregationFormula::Sum,
        ),
        "Downloads",
        "downloads",
    )
    .send(&t.client)
    .await
    .expect("meter");
    objects.push(("billing.meter", raw(&t, &format!("/billing/meters/{}", meter.id.as_str())).await));

    // A paid subscription and its money trail.
    let sub = subscribe(&t, &id(&customer), "price_supporter").await;
    let sub = raw(&t, &format!("/subscriptions/{}", sub.id.as_str())).await;
    objects.push(("subscription_item", sub["items"]["data"][0].clone()));
    let invoice = raw(&t, &format!("/invoices/{}", sub["latest_invoice"].as_str().expect("invoice"))).await;
    objects.push(("line_item", invoice["lines"]["data"][0].clone()));
    let payments = raw(&t, &format!("/invoice_payments?invoice={}", id(&invoice))).await;
    let payment = payments["data"][0].clone();
    let intent =
        raw(&t, &format!("/payment_intents/{}", payment["payment"]["payment_intent"].as_str().expect("pi"))).await;
    let charge = raw(&t, &format!("/charges/{}", intent["latest_charge"].as_str().expect("charge"))).await;
    let txn = raw(&t, &format!("/balance_transactions/{}", charge["balance_transaction"].as_str().expect("txn"))).await;
    objects.extend([
        ("customer", customer.clone()),
        ("subscription", sub.clone()),
        ("invoice", invoice),
        ("invoice_payment", payment),
    ]);
    objects.extend([("payment_intent", intent), ("charge", charge.clone()), ("balance_transaction", txn)]);

    // A failed payment intent (its last error).
    let failing = customer_with_card(&t, "pm_card_chargeCustomerFail").await;
    let incomplete = subscribe(&t, failing.id.as_str(), "price_supporter").await;
    let incomplete = raw(&t, &format!("/subscriptions/{}", incomplete.id.as_str())).await;
    let open = raw(&t, &format!("/invoices/{}", incomplete["latest_invoice"].as_str().expect("invoice"))).await;
    let failed_payment = raw(&t, &format!("/invoice_payments?invoice={}", id(&open))).await;
    let failed_intent = failed_payment["data"][0]["payment"]["payment_intent"].as_str().expect("pi").to_owned();
    objects.push(("payment_intent", raw(&t, &format!("/payment_intents/{failed_intent}")).await));

    // Checkout: open, its line items, complete; the portal.
    let session = checkout_session(&t, None, "price_sustaining").await;
    objects.push(("checkout.session", raw(&t, &format!("/checkout/sessions/{}", session.id.as_str())).await));
    let items = raw(&t, &format!("/checkout/sessions/{}/line_items", session.id.as_str())).await;
    objects.push(("item", items["data"][0].clone()));
    t.sim.pay_checkout(session.id.as_str(), "4242424242424242", None).expect("paid");
    objects.push(("checkout.session", raw(&t, &format!("/checkout/sessions/{}", session.id.as_str())).await));
    let portal = stripe_billing::billing_portal_session::CreateBillingPortalSession::new()
        .customer(id(&customer))
        .return_url("https://coop.example/account")
        .send(&t.client)
        .await
        .expect("portal session");
    objects.push(("billing_portal.session", t.sim.object(portal.id.as_str()).expect("stored")));

    // Refund, dispute, payout, balance.
    let refund =
        stripe_core::refund::CreateRefund::new().charge(id(&charge)).amount(100).send(&t.client).await.expect("refund");
    objects.push(("refund", raw(&t, &format!("/refunds/{}", refund.id.as_str())).await));
    let second = subscribe(&t, &id(&customer), "price_sustaining").await;
    let second_invoice = raw(&t, &format!("/invoices/{}", &super::latest_invoice(&second))).await;
    let second_payment = raw(&t, &format!("/invoice_payments?invoice={}", id(&second_invoice))).await;
    let second_intent = raw(
        &t,
        &format!("/payment_intents/{}", second_payment["data"][0]["payment"]["payment_intent"].as_str().expect("pi")),
    )
    .await;
    let second_charge = second_intent["latest_charge"].as_str().expect("charge").to_owned();
    let opened =
        super::send("POST", &format!("{}_sim/charges/{second_charge}/dispute", t.sim.base_url()), &[], None).await;
    assert_eq!(opened.status, 200, "{}", opened.body);
    objects.push(("dispute", raw(&t, &format!("/disputes/{}", id(&opened.json()))).await));
    t.sim.advance_clock(std::time::Duration::from_secs(3 * 86_400)).expect("clock moves");
    let payout =
        stripe_core::payout::CreatePayout::new(100, stripe_types::Currency::USD).send(&t.client).await.expect("payout");
    objects.push(("payout", raw(&t, &format!("/payouts/{}", payout.id.as_str())).await));
    let balance = raw(&t, "/balance").await;
    stripe_core::balance::RetrieveForMyAccountBalance::new().send(&t.client).await.expect("balance parses");
    objects.push(("balance", balance));

    // Meter events and summaries.
    let now = t.sim.now();
    let recorded = stripe_billing::billing_meter_event::CreateBillingMeterEvent::new(
        "api_requests",
        HashMap::from([("stripe_customer_id".to_owned(), id(&customer)), ("value".to_owned(), "25".to_owned())]),
    )
    .identifier("fidelity-1")
    .timestamp(now - 60)
    .send(&t.client)
    .await
    .expect("meter event");
    assert_eq!(recorded.identifier, "fidelity-1");
    let event_reply = api(
        &t.sim,
        "POST",
        "/billing/meter_events",
        &format!("event_name=api_requests&payload[stripe_customer_id]={}&payload[value]=3", id(&customer)),
        &[],
    )
    .await;
    objects.push(("billing.meter_event", event_reply.json()));
    let metered = raw(&t, "/prices/price_api_metered").await;
    let meter_id = metered["recurring"]["meter"].as_str().expect("meter").to_owned();
    let start_time = (now - 3600).div_euclid(60) * 60;
    let end_time = (now + 3600).div_euclid(60) * 60;
    let summaries = stripe_billing::billing_meter_event_summary::ListIdBillingMeterEventSummary::new(
        meter_id.as_str(),
        id(&customer),
        end_time,
        start_time,
    )
    .send(&t.client)
    .await
    .expect("summaries");
    assert_eq!(summaries.data[0].aggregated_value, 28.0);
    let summaries = raw(
        &t,
        &format!(
            "/billing/meters/{meter_id}/event_summaries?customer={}&start_time={start_time}&end_time={end_time}",
            id(&customer)
        ),
    )
    .await;
    objects.push(("billing.meter_event_summary", summaries["data"][0].clone()));

    // An invoice item, pending and then billed by the renewal with its own line.
    let pending_item = stripe_billing::invoice_item::CreateInvoiceItem::new()
        .customer(id(&customer))
        .amount(300)
        .currency(stripe_types::Currency::USD)
        .description("Usage reported late")
        .send(&t.client)
        .await
        .expect("invoice item");
    objects.push(("invoiceitem", raw(&t, &format!("/invoiceitems/{}", pending_item.id.as_str())).await));

    // Test clocks, deletions.
    let clock = stripe_billing::test_helpers_test_clock::CreateTestHelpersTestClock::new(now)
        .name("fidelity")
        .send(&t.client)
        .await
        .expect("clock");
    objects
        .push(("test_helpers.test_clock", raw(&t, &format!("/test_helpers/test_clocks/{}", clock.id.as_str())).await));
    stripe_billing::test_helpers_test_clock::AdvanceTestHelpersTestClock::new(clock.id.as_str(), now + 86_400)
        .send(&t.client)
        .await
        .expect("advance");
    let deleted_clock =
        api(&t.sim, "DELETE", &format!("/test_helpers/test_clocks/{}", clock.id.as_str()), "", &[]).await;
    objects.push(("deleted_test_helpers.test_clock", deleted_clock.json()));
    let doomed = customer_with_card(&t, "pm_card_visa").await;
    stripe_core::customer::DeleteCustomer::new(doomed.id.as_str()).send(&t.client).await.expect("customer deleted");
    let doomed_again = customer_with_card(&t, "pm_card_visa").await;
    objects.push((
        "deleted_customer",
        api(&t.sim, "DELETE", &format!("/customers/{}", doomed_again.id.as_str()), "", &[]).await.json(),
    ));

    // Events: a creation and an update, each object compared with its own kind.
    let events = raw(&t, "/events?limit=100").await;
    for kind in [
        "customer.created",
        "customer.subscription.updated",
        "invoice.paid",
        "charge.refunded",
        "payout.created",
        "invoiceitem.created",
    ] {
        let event = events["data"]
            .as_array()
            .expect("events")
            .iter()
            .find(|e| e["type"] == kind)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} event"));
        let event = raw(&t, &format!("/events/{}", id(&event))).await;
        stripe_core::event::RetrieveEvent::new(id(&event)).send(&t.client).await.expect("event parses");
        let inner = event["data"]["object"].clone();
        let inner_kind = inner["object"].as_str().expect("object kind").to_owned();
        let mut envelope = event.clone();
        envelope["data"]["object"] = Value::Null;
        objects.push(("event", envelope));
        shape_problems(&inner_kind, &inner, &resources[inner_kind.as_str()], "", &mut problems);
    }

    // The renewal takes the pending item (after the events: Stripe lists 30 days of them).
    t.sim.advance_clock(std::time::Duration::from_secs(31 * 86_400)).expect("clock moves");
    let billed_item = raw(&t, &format!("/invoiceitems/{}", pending_item.id.as_str())).await;
    let renewal = raw(&t, &format!("/invoices/{}", billed_item["invoice"].as_str().expect("invoiced"))).await;
    let item_line = renewal["lines"]["data"]
        .as_array()
        .expect("lines")
        .iter()
        .find(|l| l["parent"]["type"] == "invoice_item_details")
        .cloned()
        .expect("the item's line");
    objects.extend([("invoiceitem", billed_item), ("line_item", item_line), ("invoice", renewal)]);

    for (kind, object) in &objects {
        let example = &resources[*kind];
        assert!(!example.is_null(), "the fixtures have no {kind}");
        shape_problems(kind, object, example, "", &mut problems);
        match *kind {
            "customer" => parses::<stripe_shared::Customer>(kind, object, &mut problems),
            "payment_method" => parses::<stripe_shared::PaymentMethod>(kind, object, &mut problems),
            "product" => parses::<stripe_shared::Product>(kind, object, &mut problems),
            "price" => parses::<stripe_shared::Price>(kind, object, &mut problems),
            "billing.meter" => parses::<stripe_billing::BillingMeter>(kind, object, &mut problems),
            "subscription" => parses::<stripe_shared::Subscription>(kind, object, &mut problems),
            "subscription_item" => parses::<stripe_shared::SubscriptionItem>(kind, object, &mut problems),
            "invoice" => parses::<stripe_shared::Invoice>(kind, object, &mut problems),
            "line_item" => parses::<stripe_shared::InvoiceLineItem>(kind, object, &mut problems),
            "invoice_payment" => parses::<stripe_shared::InvoicePayment>(kind, object, &mut problems),
            "invoiceitem" => parses::<stripe_billing::InvoiceItem>(kind, object, &mut problems),
            "payment_intent" => parses::<stripe_shared::PaymentIntent>(kind, object, &mut problems),
            "charge" => parses::<stripe_shared::Charge>(kind, object, &mut problems),
            "balance_transaction" => parses::<stripe_shared::BalanceTransaction>(kind, object, &mut problems),
            "checkout.session" => parses::<stripe_shared::CheckoutSession>(kind, object, &mut problems),
            "item" => parses::<stripe_shared::CheckoutSessionItem>(kind, object, &mut problems),
            "billing_portal.session" => parses::<stripe_billing::BillingPortalSession>(kind, object, &mut problems),
            "refund" => parses::<stripe_shared::Refund>(kind, object, &mut problems),
            "dispute" => parses::<stripe_shared::Dispute>(kind, object, &mut problems),
            "payout" => parses::<stripe_shared::Payout>(kind, object, &mut problems),
            "balance" => parses::<stripe_core::Balance>(kind, object, &mut problems),
            "billing.meter_event" => parses::<stripe_billing::BillingMeterEvent>(kind, object, &mut problems),
            "billing.meter_event_summary" => {
                parses::<stripe_billing::BillingMeterEventSummary>(kind, object, &mut problems)
            }
            "test_helpers.test_clock" => parses::<stripe_shared::TestHelpersTestClock>(kind, object, &mut problems),
            "deleted_test_helpers.test_clock" => {
                parses::<stripe_shared::DeletedTestHelpersTestClock>(kind, object, &mut problems)
            }
            "deleted_customer" => parses::<stripe_shared::DeletedCustomer>(kind, object, &mut problems),
            "event" => {}
            other => problems.push(format!("{other}: no async-stripe type checked")),
        }
    }

    // Lists and search results: the shapes async-stripe's `List` and `SearchList` read.
    let listed = raw(&t, "/customers?limit=1").await;
    let mut keys: Vec<&String> = listed.as_object().expect("list").keys().collect();
    keys.sort();
    assert_eq!(keys, ["data", "has_more", "object", "url"], "list shape");
    parses::<stripe_types::List<stripe_shared::Customer>>("list", &listed, &mut problems);
    let found = raw(&t, "/customers/search?query=email:'ada@example.org'").await;
    let mut keys: Vec<&String> = found.as_object().expect("search").keys().collect();
    keys.sort();
    assert_eq!(keys, ["data", "has_more", "next_page", "object", "url"], "search_result shape");
    parses::<stripe_types::SearchList<stripe_shared::Customer>>("search_result", &found, &mut problems);
    assert_eq!(found["object"], "search_result");

    problems.sort();
    problems.dedup();
    assert!(problems.is_empty(), "the simulator's objects differ from Stripe's:\n{}", problems.join("\n"));
}
