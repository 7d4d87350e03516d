//! A year of Stripe activity in the simulator, booked into the ledger from
//! Stripe's balance transactions: memberships on two tiers, metered API use,
//! a refund, a dispute lost and one won, payouts and a failed payout. The
//! books reconcile with Stripe exactly, every income line is where its price
//! says, a second catch-up posts nothing, and the export passes bean-check.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use stripe_billing::subscription::{CancelSubscription, CreateSubscription, CreateSubscriptionItems};
use stripe_core::balance::RetrieveForMyAccountBalance;
use stripe_core::charge::ListCharge;
use stripe_core::customer::{CreateCustomer, CreateCustomerInvoiceSettings};
use stripe_core::dispute::{CloseDispute, ListDispute};
use stripe_core::payout::CreatePayout;
use stripe_core::refund::CreateRefund;

use super::*;
use crate::store::testing::{bean_check, stores};
use crate::stripe::NewMeterEvent;
use crate::stripe::client::StripeClient;
use coopgate_stripe_sim::{SimConfig, SimPrice, Simulator};

const SECRET: &str = "sk_test_books";
const DAY: u64 = 86_400;

fn prices() -> Vec<SimPrice> {
    let price = |id: &str, product: &str, unit_amount, meter: Option<&str>| SimPrice {
        id: id.to_owned(),
        product_name: product.to_owned(),
        unit_amount,
        currency: "usd".to_owned(),
        interval: "month".to_owned(),
        meter_event: meter.map(str::to_owned),
    };
    vec![
        price("price_supporter", "Supporter", 500, None),
        price("price_sustaining", "Sustaining", 2000, None),
        price("price_api", "API usage", 2, Some("api_requests")),
    ]
}

fn plans() -> Plans {
    Plans::new(
        [
            ("supporter".to_owned(), 20, vec!["price_supporter".to_owned()]),
            ("sustaining".to_owned(), 30, vec!["price_sustaining".to_owned()]),
            ("metered".to_owned(), 15, vec!["price_api".to_owned()]),
        ],
        "registered",
        Duration::from_secs(7 * DAY),
    )
    .with_metered("price_api", "metered")
}

struct Year {
    sim: Simulator,
    client: ::stripe::Client,
    api: Arc<StripeClient>,
}

impl Year {
    async fn start() -> Year {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = Simulator::start(listener, SimConfig { prices: prices(), ..SimConfig::default() }).await.unwrap();
        let client = ::stripe::ClientBuilder::new(SECRET).url(sim.base_url()).build().unwrap();
        let base = url::Url::parse(&sim.base_url()).unwrap();
        let api = Arc::new(StripeClient::new(&base, SECRET, Duration::from_secs(5)).unwrap());
        Year { sim, client, api }
    }

    /// A customer paying with a test card, subscribed to `price`.
    async fn member(&self, n: usize, card: &str, price: &str) -> (String, String) {
        let customer = CreateCustomer::new()
            .email(format!("member{n}@example.org"))
            .payment_method(card)
            .invoice_settings(CreateCustomerInvoiceSettings {
                default_payment_method: Some(card.to_owned()),
                ..CreateCustomerInvoiceSettings::new()
            })
            .metadata(HashMap::from([("account_id".to_owned(), format!("acct_{n}"))]))
            .send(&self.client)
            .await
            .unwrap();
        let sub = CreateSubscription::new()
            .customer(customer.id.as_str())
            .items(vec![CreateSubscriptionItems { price: Some(price.to_owned()), ..CreateSubscriptionItems::new() }])
            .send(&self.client)
            .await
            .unwrap();
        (customer.id.as_str().to_owned(), sub.id.as_str().to_owned())
    }

    /// The succeeded charges of a customer, oldest last.
    async fn charges(&self, customer: &str) -> Vec<stripe_shared::Charge> {
        let listed = ListCharge::new().customer(customer).limit(100).send(&self.client).await.unwrap();
        listed.data.into_iter().filter(|c| c.status == stripe_shared::ChargeStatus::Succeeded).collect()
    }

    async fn gross(&self, customers: &[&str]) -> i64 {
        let mut total = 0;
        for c in customers {
            total += self.charges(c).await.iter().map(|c| c.amount).sum::<i64>();
        }
        total
    }
}

fn balance_of(b: &BTreeMap<(AccountName, Currency), i64>, account: &str) -> i64 {
    b.get(&(AccountName::new(account).unwrap(), Currency::new("usd").unwrap())).copied().unwrap_or(0)
}

#[tokio::test]
async fn a_year_of_stripe_activity_books_each_balance_transaction_once_and_reconciles_exactly() {
    for (store, _cleanup) in stores().await {
        let y = Year::start().await;
        let started = y.sim.now();
        let (sustaining, _) = y.member(1, "pm_card_visa", "price_sustaining").await;
        let (supporter, _) = y.member(2, "pm_card_visa", "price_supporter").await;
        let (disputing, disputing_sub) = y.member(3, "pm_card_createDispute", "price_supporter").await;
        let (winner, _) = y.member(4, "pm_card_visa", "price_supporter").await;
        let (metered, _) = y.member(5, "pm_card_visa", "price_api").await;
        // The disputing card disputes every charge: one month, then lost.
        CancelSubscription::new(disputing_sub.as_str()).send(&y.client).await.unwrap();
        let disputes = ListDispute::new().send(&y.client).await.unwrap();
        CloseDispute::new(disputes.data[0].id.as_str()).send(&y.client).await.unwrap();
        // A partial refund of the first sustaining payment (Stripe keeps its fee).
        let first = y.charges(&sustaining).await.remove(0);
        CreateRefund::new().charge(first.id.as_str()).amount(500).send(&y.client).await.unwrap();

        for month in 0..12u64 {
            let usage = NewMeterEvent {
                event_name: "api_requests".to_owned(),
                customer: metered.clone(),
                value: 1_000 + month * 37,
                identifier: format!("usage-{month}"),
                timestamp: y.sim.now(),
            };
            y.api.report_meter_event(&usage).await.unwrap();
            y.sim.advance_clock(Duration::from_secs(31 * DAY)).unwrap();
            if month == 3 {
                // A dispute the co-op wins: the money comes back.
                let charge = y.charges(&winner).await.remove(0);
                let dispute = y.sim.dispute_charge(charge.id.as_str()).unwrap();
                y.sim.win_dispute(dispute["id"].as_str().unwrap()).unwrap();
            }
            let balance = RetrieveForMyAccountBalance::new().send(&y.client).await.unwrap();
            let available = balance.available.first().map_or(0, |a| a.amount);
            if available > 0 {
                let payout =
                    CreatePayout::new(available / 2, stripe_types::Currency::USD).send(&y.client).await.unwrap();
                if month == 6 {
                    y.sim.fail_payout(payout.id.as_str()).unwrap();
                }
            }
        }
        y.sim.advance_clock(Duration::from_secs(3 * DAY)).unwrap();

        let books = Books::new(store.clone(), y.api.clone(), plans());
        let synced = books.sync(Timestamp::from_secs(started - 60), Timestamp::EPOCH).await.unwrap();
        assert!(synced.listed > 60, "a year of activity: {synced:?}");
        assert_eq!(synced.posted, synced.listed, "each balance transaction posts once: {synced:?}");
        let again = books.sync(Timestamp::from_secs(started - 60), Timestamp::from_millis(1)).await.unwrap();
        assert_eq!((again.listed, again.posted), (synced.listed, 0), "a second catch-up posts nothing");

        let r = books.reconcile().await.unwrap();
        assert!(r.agrees, "the books agree with Stripe: {r:?}");
        assert!(r.currencies[0].ledger_paid_out > 0, "{r:?}");

        let b = Ledger::new(store.clone()).balances().await.unwrap();
        assert_eq!(-balance_of(&b, "Income:Memberships:Sustaining"), y.gross(&[&sustaining]).await);
        assert_eq!(-balance_of(&b, "Income:Memberships:Supporter"), y.gross(&[&supporter, &disputing, &winner]).await);
        assert_eq!(-balance_of(&b, "Income:API:Metered"), y.gross(&[&metered]).await);
        assert!(balance_of(&b, "Income:API:Metered") < -12 * 2_000, "twelve months of usage are billed");
        assert_eq!(balance_of(&b, "Income:Refunds"), 500);
        assert_eq!(balance_of(&b, "Income:Disputes"), 500, "the lost dispute's amount; the won one came back");
        assert_eq!(balance_of(&b, "Income:Uncategorized"), 0, "every charge paid an invoice of known prices");
        assert!(b.values().map(|v| i128::from(*v)).sum::<i128>() == 0, "the ledger balances");

        let export = Ledger::new(store.clone()).export(None, None).await.unwrap();
        if let Some(checked) = bean_check(&export.beancount()) {
            checked.unwrap_or_else(|e| panic!("bean-check refused the year's export:\n{e}"));
        }
        y.sim.shutdown().await;
    }
}
