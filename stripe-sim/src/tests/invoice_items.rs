//! Invoice items: pending amounts that the customer's next subscription
//! invoice bills, once.

use std::collections::HashMap;
use std::time::Duration;

use stripe_billing::invoice_item::CreateInvoiceItem;
use stripe_types::Currency;

use super::{TestSim, api, customer_with_card, event_types, list, start, subscribe};
use crate::SimConfig;

async fn item(t: &TestSim, customer: &str, amount: i64, currency: Currency) -> stripe_billing::InvoiceItem {
    CreateInvoiceItem::new()
        .customer(customer)
        .amount(amount)
        .currency(currency)
        .description("API usage reported late")
        .metadata(HashMap::from([("usage_report".to_owned(), "r_1".to_owned())]))
        .send(&t.client)
        .await
        .expect("invoice item created")
}

#[tokio::test]
async fn a_pending_item_is_billed_once_on_the_renewal_and_an_item_in_another_currency_waits() {
    let t = start(SimConfig::default()).await;
    let customer = customer_with_card(&t, "pm_card_visa").await;
    let sub = subscribe(&t, customer.id.as_str(), "price_supporter").await;
    let usd = item(&t, customer.id.as_str(), 250, Currency::USD).await;
    assert!(usd.invoice.is_none());
    assert_eq!(usd.metadata.as_ref().and_then(|m| m.get("usage_report")).map(String::as_str), Some("r_1"));
    let eur = item(&t, customer.id.as_str(), 99, Currency::EUR).await;
    let pending = |pending: bool| format!("customer={}&pending={pending}", customer.id.as_str());
    assert_eq!(list(&t, "/invoiceitems", &pending(true)).await.len(), 2);
    let fetched = api(&t.sim, "GET", &format!("/invoiceitems/{}", usd.id.as_str()), "", &[]).await;
    assert_eq!((fetched.status, fetched.json()["amount"].as_i64()), (200, Some(250)));
    assert!(event_types(&t).await.iter().any(|e| e == "invoiceitem.created"));

    t.sim.advance_clock(Duration::from_secs(32 * 86_400)).expect("advance");
    let invoices = list(&t, "/invoices", &format!("subscription={}", sub.id.as_str())).await;
    let renewal = &invoices[0];
    assert_eq!(renewal["billing_reason"], "subscription_cycle");
    assert_eq!((renewal["total"].as_i64(), renewal["status"].as_str()), (Some(500 + 250), Some("paid")));
    let lines = renewal["lines"]["data"].as_array().expect("lines");
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["parent"]["invoice_item_details"]["invoice_item"], usd.id.as_str());
    assert_eq!(lines[1]["description"], "API usage reported late");
    let billed = t.sim.object(usd.id.as_str()).expect("item");
    assert_eq!(billed["invoice"], renewal["id"]);
    let waiting: Vec<_> = list(&t, "/invoiceitems", &pending(true)).await;
    assert_eq!((waiting.len(), waiting[0]["id"].as_str()), (1, Some(eur.id.as_str())), "the EUR item waits");
    assert_eq!(list(&t, "/invoiceitems", &pending(false)).await.len(), 1);

    t.sim.advance_clock(Duration::from_secs(31 * 86_400)).expect("advance");
    let invoices = list(&t, "/invoices", &format!("subscription={}", sub.id.as_str())).await;
    assert_eq!(invoices[0]["total"].as_i64(), Some(500), "an item is billed once");
}

#[tokio::test]
async fn a_new_subscription_takes_pending_items_on_its_first_invoice() {
    let t = start(SimConfig::default()).await;
    let customer = customer_with_card(&t, "pm_card_visa").await;
    item(&t, customer.id.as_str(), 120, Currency::USD).await;
    let sub = subscribe(&t, customer.id.as_str(), "price_supporter").await;
    let first = t.sim.object(&super::latest_invoice(&sub)).expect("invoice");
    assert_eq!((first["total"].as_i64(), first["amount_paid"].as_i64()), (Some(620), Some(620)));
}

#[tokio::test]
async fn invoice_items_refuse_unknown_unmodelled_and_negative_amounts() {
    let t = start(SimConfig::default()).await;
    let customer = customer_with_card(&t, "pm_card_visa").await;
    let id = customer.id.as_str();
    let create = |form: String| {
        let sim = &t.sim;
        async move { api(sim, "POST", "/invoiceitems", &form, &[]).await }
    };
    let unknown = create(format!("customer={id}&amount=5&currency=usd&colour=red")).await;
    assert_eq!((unknown.status, unknown.json()["error"]["param"].as_str()), (400, Some("colour")));
    let priced = create(format!("customer={id}&currency=usd&price_data[product]=prod_1")).await;
    assert_eq!((priced.status, priced.json()["error"]["param"].as_str()), (400, Some("price_data")));
    let negative = create(format!("customer={id}&amount=-5&currency=usd")).await;
    assert_eq!((negative.status, negative.json()["error"]["param"].as_str()), (400, Some("amount")));
    let no_currency = create(format!("customer={id}&amount=5")).await;
    assert_eq!(no_currency.json()["error"]["param"], "currency", "the customer has no currency yet");
    let nobody = create("customer=cus_nobody&amount=5&currency=usd".to_owned()).await;
    assert_eq!((nobody.status, nobody.json()["error"]["param"].as_str()), (400, Some("customer")));
    let missing = api(&t.sim, "GET", "/invoiceitems/ii_missing", "", &[]).await;
    assert_eq!(missing.status, 404);
    assert!(list(&t, "/invoiceitems", "").await.is_empty(), "nothing was created");
}
