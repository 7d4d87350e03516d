//! Stripe's test cards and test payment method tokens, and what each does.
//!
//! A card is known by its number (typed on a hosted page) or by its token
//! (`pm_card_visa`, passed as `payment_method`). What it does later is decided
//! by its last four digits, which the stored payment method keeps in
//! `card.last4`: the engine needs no hidden state to know how a card behaves.

/// What happens when a card is attached and charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Behaviour {
    /// Attaches and pays.
    Pays,
    /// Refused when attached or charged, with this decline code.
    Declines(&'static str),
    /// Attaches, but every charge fails (`generic_decline`).
    AttachesThenFails,
    /// Pays, then the charge is disputed as fraudulent.
    Disputes,
}

/// One test card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TestCard {
    /// The full number.
    pub number: &'static str,
    /// Stripe's test token for it.
    pub token: &'static str,
    /// `visa`, `mastercard`.
    pub brand: &'static str,
    /// What it does.
    pub behaviour: Behaviour,
    /// What the hosted pages say about it.
    pub summary: &'static str,
}

impl TestCard {
    /// The last four digits.
    pub fn last4(&self) -> &'static str {
        &self.number[self.number.len() - 4..]
    }

    /// Whether attaching it to a customer succeeds.
    pub fn attaches(&self) -> bool {
        !matches!(self.behaviour, Behaviour::Declines(_))
    }

    /// The decline code of a charge on it, or `None` if it pays.
    pub fn charge_decline(&self) -> Option<&'static str> {
        match self.behaviour {
            Behaviour::Pays | Behaviour::Disputes => None,
            Behaviour::Declines(code) => Some(code),
            Behaviour::AttachesThenFails => Some("generic_decline"),
        }
    }
}

/// The cards the simulator knows, as Stripe documents them.
pub(crate) const CARDS: &[TestCard] = &[
    TestCard {
        number: "4242424242424242",
        token: "pm_card_visa",
        brand: "visa",
        behaviour: Behaviour::Pays,
        summary: "pays",
    },
    TestCard {
        number: "5555555555554444",
        token: "pm_card_mastercard",
        brand: "mastercard",
        behaviour: Behaviour::Pays,
        summary: "pays",
    },
    TestCard {
        number: "4000000000000002",
        token: "pm_card_chargeDeclined",
        brand: "visa",
        behaviour: Behaviour::Declines("generic_decline"),
        summary: "is declined",
    },
    TestCard {
        number: "4000000000009995",
        token: "pm_card_chargeDeclinedInsufficientFunds",
        brand: "visa",
        behaviour: Behaviour::Declines("insufficient_funds"),
        summary: "is declined for insufficient funds",
    },
    TestCard {
        number: "4000000000000341",
        token: "pm_card_chargeCustomerFail",
        brand: "visa",
        behaviour: Behaviour::AttachesThenFails,
        summary: "is saved, but every charge on it fails",
    },
    TestCard {
        number: "4000000000000259",
        token: "pm_card_createDispute",
        brand: "visa",
        behaviour: Behaviour::Disputes,
        summary: "pays, then the payment is disputed",
    },
];

/// The card with this number (spaces and dashes ignored).
pub(crate) fn by_number(number: &str) -> Option<&'static TestCard> {
    let digits: String = number.chars().filter(char::is_ascii_digit).collect();
    CARDS.iter().find(|c| c.number == digits)
}

/// The card behind a test token.
pub(crate) fn by_token(token: &str) -> Option<&'static TestCard> {
    CARDS.iter().find(|c| c.token == token)
}

/// The card whose last four digits these are.
pub(crate) fn by_last4(last4: &str) -> Option<&'static TestCard> {
    CARDS.iter().find(|c| c.last4() == last4)
}

/// Stripe's message for a decline code.
pub(crate) fn decline_message(code: &str) -> &'static str {
    match code {
        "insufficient_funds" => "Your card has insufficient funds.",
        _ => "Your card was declined.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_found_with_spaces_and_behave_as_stripe_documents() {
        let visa = by_number("4242 4242 4242 4242").expect("known");
        assert_eq!((visa.attaches(), visa.charge_decline()), (true, None));
        let declined = by_number("4000-0000-0000-0002").expect("known");
        assert!(!declined.attaches());
        let later = by_token("pm_card_chargeCustomerFail").expect("known");
        assert_eq!((later.attaches(), later.charge_decline()), (true, Some("generic_decline")));
        assert_eq!(by_last4("0259").map(|c| c.behaviour), Some(Behaviour::Disputes));
        assert!(by_number("1234").is_none());
    }
}
