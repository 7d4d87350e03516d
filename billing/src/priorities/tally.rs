//! The arithmetic of a ballot, pure so that anyone can redo it: checking a
//! vote against its ballot, counting the cast ballots, the digest the
//! results publish, and splitting the fund between items.
//!
//! A counted ballot is its receipt's digest and its choices (points per
//! item; an approval is one point). The published list is sorted by receipt
//! digest, which hides the order ballots came in, and the tally digest is
//! SHA-256 of [`canonical`]: one line per ballot, `<receipt digest>
//! <item>=<points>,<item>=<points>\n`, items ascending. A reader who
//! rebuilds those lines from `/priorities.json` gets the same digest and,
//! summing them, the same totals.

use std::collections::{BTreeMap, BTreeSet};

use crate::ledger::apportion::apportion;
use crate::{Currency, Error, Money};

/// How a ballot is voted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Each voter spreads a fixed number of points over the items.
    Points,
    /// Each voter approves any subset of the items.
    Approval,
}

impl Method {
    /// The method a stored or typed name gives.
    pub fn parse(s: &str) -> Result<Method, Error> {
        match s {
            "points" => Ok(Method::Points),
            "approval" => Ok(Method::Approval),
            _ => Err(Error::BadVote(format!("`{s}` is not a voting method; use points or approval"))),
        }
    }

    /// Its name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Points => "points",
            Method::Approval => "approval",
        }
    }
}

/// A vote as a voter sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vote {
    /// Points per item number.
    Points(BTreeMap<i64, i64>),
    /// The item numbers approved.
    Approve(BTreeSet<i64>),
}

/// A vote checked against its ballot: points per item, only items with
/// points (an approval is one point).
pub type Choices = BTreeMap<i64, i64>;

/// Checks `vote` against a ballot of `method` over `items` with `budget`
/// points: the vote's kind matches the method, every item is on the ballot,
/// points are not negative and add up to at most the budget, and at least
/// one item gets something.
pub fn check(method: Method, budget: i64, items: &[i64], vote: &Vote) -> Result<Choices, Error> {
    let bad = |why: String| Err(Error::BadVote(why));
    let on_ballot = |item: &i64| items.contains(item);
    let choices: Choices = match (method, vote) {
        (Method::Points, Vote::Points(points)) => {
            if let Some((item, _)) = points.iter().find(|(item, _)| !on_ballot(item)) {
                return bad(format!("item {item} is not on this ballot"));
            }
            if let Some((item, p)) = points.iter().find(|(_, p)| **p < 0) {
                return bad(format!("item {item} has {p} points; points cannot be negative"));
            }
            let total: i128 = points.values().map(|p| i128::from(*p)).sum();
            if total > i128::from(budget) {
                return bad(format!("the points add up to {total}, more than the {budget} each voter has"));
            }
            points.iter().filter(|(_, p)| **p > 0).map(|(i, p)| (*i, *p)).collect()
        }
        (Method::Approval, Vote::Approve(approved)) => {
            if let Some(item) = approved.iter().find(|item| !on_ballot(item)) {
                return bad(format!("item {item} is not on this ballot"));
            }
            approved.iter().map(|i| (*i, 1)).collect()
        }
        (Method::Points, Vote::Approve(_)) => {
            return bad(format!(
                "this ballot is voted with points: send {{\"points\": {{\"ITEM\": N, …}}}} adding up to at most {budget}"
            ));
        }
        (Method::Approval, Vote::Points(_)) => {
            return bad("this ballot is voted by approval: send {\"approve\": [ITEM, …]}".to_owned());
        }
    };
    if choices.is_empty() {
        return bad("the vote gives nothing to any item; choose at least one".to_owned());
    }
    Ok(choices)
}

/// A counted ballot, as the results publish it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Counted {
    /// SHA-256 of its receipt, lower-case hex.
    pub receipt_hash: String,
    /// Points per item.
    pub choices: Choices,
}

/// Each item's total over `ballots`, every item of the ballot listed (zero
/// when nobody chose it).
pub fn totals(items: &[i64], ballots: &[Counted]) -> BTreeMap<i64, i64> {
    let mut out: BTreeMap<i64, i64> = items.iter().map(|i| (*i, 0)).collect();
    for b in ballots {
        for (item, points) in &b.choices {
            *out.entry(*item).or_default() += points;
        }
    }
    out
}

/// The text the tally digest is taken over (see the module's doc); `ballots`
/// in any order.
pub fn canonical(ballots: &[Counted]) -> String {
    let mut sorted: Vec<&Counted> = ballots.iter().collect();
    sorted.sort_by(|a, b| a.receipt_hash.cmp(&b.receipt_hash));
    let mut out = String::new();
    for b in sorted {
        out.push_str(&b.receipt_hash);
        out.push(' ');
        let parts: Vec<String> = b.choices.iter().map(|(item, p)| format!("{item}={p}")).collect();
        out.push_str(&parts.join(","));
        out.push('\n');
    }
    out
}

/// SHA-256 of [`canonical`], lower-case hex.
pub fn digest(ballots: &[Counted]) -> String {
    crate::portal::secret::digest(&canonical(ballots))
}

/// A share in millionths, from its decimal form (`0.25`, `.1`, `1`): exact,
/// never through a float. Between 0 and 1.
pub fn share_ppm(text: &str) -> Result<i64, Error> {
    let bad = || Error::BadVote(format!("`{text}` is not a fund share; write a fraction between 0 and 1 such as 0.25"));
    let (whole, frac) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
    if frac.len() > 6 || !whole.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) || whole.len() + frac.len() == 0
    {
        return Err(bad());
    }
    let whole: i64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| bad())? };
    let frac: i64 = if frac.is_empty() { 0 } else { format!("{frac:0<6}").parse().map_err(|_| bad())? };
    let ppm = whole.checked_mul(1_000_000).and_then(|w| w.checked_add(frac)).ok_or_else(bad)?;
    if ppm > 1_000_000 { Err(bad()) } else { Ok(ppm) }
}

/// The fund of a ballot: `ppm` millionths of each currency's income,
/// rounded down to the minor unit.
pub fn fund(income: &BTreeMap<Currency, i64>, ppm: i64) -> Vec<Money> {
    income
        .iter()
        .filter(|(_, minor)| **minor > 0)
        .map(|(currency, minor)| {
            let part = i128::from(*minor) * i128::from(ppm) / 1_000_000;
            Money::new(part as i64, *currency)
        })
        .filter(|m| m.minor > 0)
        .collect()
}

/// Each item's money from `fund`, in proportion to its total: per currency,
/// largest-remainder rounding so that the parts add up to the fund to the
/// minor unit. Items with no points get nothing; with no points at all,
/// nobody gets anything.
pub fn split(fund: &[Money], totals: &BTreeMap<i64, i64>) -> BTreeMap<i64, Vec<Money>> {
    let items: Vec<(i64, i64)> = totals.iter().filter(|(_, t)| **t > 0).map(|(i, t)| (*i, *t)).collect();
    let weights: Vec<i64> = items.iter().map(|(_, t)| *t).collect();
    let mut out: BTreeMap<i64, Vec<Money>> = BTreeMap::new();
    for money in fund {
        let Some(parts) = apportion(money.minor, &weights) else { continue };
        for ((item, _), part) in items.iter().zip(parts) {
            if part > 0 {
                out.entry(*item).or_default().push(Money::new(part, money.currency));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn points(pairs: &[(i64, i64)]) -> Vote {
        Vote::Points(pairs.iter().copied().collect())
    }

    #[test]
    fn a_points_vote_stays_within_the_budget_and_the_ballot() {
        let items = [1, 2, 3];
        assert_eq!(
            check(Method::Points, 100, &items, &points(&[(1, 60), (3, 40)])).unwrap(),
            [(1, 60), (3, 40)].into()
        );
        assert_eq!(check(Method::Points, 100, &items, &points(&[(1, 10), (2, 0)])).unwrap(), [(1, 10)].into());
        for (vote, says) in [
            (points(&[(1, 60), (2, 41)]), "more than the 100"),
            (points(&[(4, 10)]), "item 4 is not on this ballot"),
            (points(&[(1, -5), (2, 50)]), "cannot be negative"),
            (points(&[(1, 0)]), "at least one"),
            (points(&[(1, i64::MAX), (2, i64::MAX)]), "more than the 100"),
            (Vote::Approve([1].into()), "voted with points"),
        ] {
            let err = check(Method::Points, 100, &items, &vote).unwrap_err().to_string();
            assert!(err.contains(says), "{err}");
        }
    }

    #[test]
    fn an_approval_vote_is_a_point_per_approved_item() {
        let items = [1, 2, 3];
        assert_eq!(check(Method::Approval, 0, &items, &Vote::Approve([1, 3].into())).unwrap(), [(1, 1), (3, 1)].into());
        for (vote, says) in [
            (Vote::Approve([].into()), "at least one"),
            (Vote::Approve([9].into()), "item 9"),
            (points(&[(1, 1)]), "by approval"),
        ] {
            let err = check(Method::Approval, 0, &items, &vote).unwrap_err().to_string();
            assert!(err.contains(says), "{err}");
        }
    }

    #[test]
    fn the_digest_is_over_ballots_sorted_by_receipt_hash() {
        let a = Counted { receipt_hash: "bb".into(), choices: [(2, 40), (1, 60)].into() };
        let b = Counted { receipt_hash: "aa".into(), choices: [(3, 100)].into() };
        assert_eq!(canonical(&[a.clone(), b.clone()]), "aa 3=100\nbb 1=60,2=40\n");
        assert_eq!(digest(&[a.clone(), b.clone()]), digest(&[b.clone(), a.clone()]));
        assert_eq!(totals(&[1, 2, 3, 4], &[a, b]), [(1, 60), (2, 40), (3, 100), (4, 0)].into());
    }

    #[test]
    fn shares_are_read_exactly() {
        assert_eq!(share_ppm("0.25").unwrap(), 250_000);
        assert_eq!(share_ppm(".1").unwrap(), 100_000);
        assert_eq!(share_ppm("1").unwrap(), 1_000_000);
        assert_eq!(share_ppm("0.000001").unwrap(), 1);
        assert_eq!(share_ppm("0").unwrap(), 0);
        for bad in ["1.5", "-0.1", "0.0000001", "abc", "", ".", "0.2 5", "1e-3"] {
            assert!(share_ppm(bad).unwrap_err().to_string().contains("fund share"), "{bad}");
        }
    }

    #[test]
    fn the_fund_rounds_down_and_the_split_adds_up() {
        let usd = Currency::new("usd").unwrap();
        let eur = Currency::new("eur").unwrap();
        // A quarter of EUR 0.03 rounds down to nothing, and nothing is not a fund.
        let fund = fund(&[(usd, 100_001), (eur, 3)].into(), 250_000);
        assert_eq!(fund, vec![Money::new(25_000, usd)]);
        let split = split(&fund, &[(1, 1), (2, 1), (3, 1), (4, 0)].into());
        assert_eq!(split[&1], vec![Money::new(8_334, usd)]);
        assert_eq!(split[&2], vec![Money::new(8_333, usd)]);
        assert!(!split.contains_key(&4), "no points, no money");
    }

    proptest! {
        #[test]
        fn every_fund_is_split_to_the_cent(
            minor in 0i64..1_000_000_000,
            ppm in 0i64..=1_000_000,
            totals in proptest::collection::btree_map(1i64..20, 0i64..1_000, 1..10),
        ) {
            let usd = Currency::new("usd").unwrap();
            let fund = fund(&[(usd, minor)].into(), ppm);
            let split = split(&fund, &totals);
            let given: i64 = split.values().flatten().map(|m| m.minor).sum();
            let expected = if totals.values().any(|t| *t > 0) { fund.iter().map(|m| m.minor).sum() } else { 0 };
            prop_assert_eq!(given, expected);
            prop_assert!(fund.iter().all(|m| i128::from(m.minor) * 1_000_000 <= i128::from(minor) * i128::from(ppm)));
        }
    }
}
