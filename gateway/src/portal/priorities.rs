//! The portal's roadmap page, `/portal/priorities`: a member votes (and sees
//! its current ballot and receipt), anyone signed in endorses items, and
//! members propose new ones for the co-op's review.
//!
//! - `GET /portal/priorities`;
//! - `POST /portal/priorities/ballots/{n}/vote`: `points-<item>=N` fields, or
//!   `approve=<item>` checkboxes;
//! - `POST /portal/priorities/items/{n}/endorse`;
//! - `POST /portal/priorities/propose`: `title`, `description`, `cost`.
//!
//! Who votes is billing's rule (a membership's account); for an
//! organisation only its owners cast the ballot (`Action::Vote`), checked
//! on the POST as on the page. The public results stay at `/priorities`.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use coopgate_billing::Money;
use coopgate_billing::clock::Timestamp;
use coopgate_billing::priorities::{Method, NewItem, Vote};

use super::access::{Action, SignedIn, Stop, allows, signed_in, signed_in_form};
use super::state::{Form, Portal, PortalState};
use crate::error::Error;

/// What the page says above everything else: a receipt, a refusal.
#[derive(Default)]
struct Said {
    receipt: Option<(i64, String)>,
    notice: Option<String>,
    error: Option<String>,
}

/// Why this signed-in person cannot vote for the account they act for, if so.
fn why_not(s: &PortalState, signed: &SignedIn) -> Option<String> {
    if s.priorities.may_vote(&signed.account).is_err() {
        return Some(format!(
            "Only members vote, one ballot per membership; {} is of tier {}, which is not a membership. You can \
             endorse items: endorsements are shown beside the results.",
            signed.account.email, signed.account.tier
        ));
    }
    if !allows(signed.role, Action::Vote) {
        return Some(format!(
            "You act for {} as {}; its owners cast the organisation's ballot. You can see it here.",
            signed.account.email, signed.role
        ));
    }
    None
}

async fn page(s: &PortalState, signed: &SignedIn, status: StatusCode, said: Said) -> Result<Response, Stop> {
    let p = &s.priorities;
    let now = Timestamp::now();
    let items = p.items(false).await.map_err(Error::Billing)?;
    let endorsed: BTreeSet<i64> =
        p.endorsed_by(&signed.account.id).await.map_err(Error::Billing)?.into_iter().collect();
    let titles: BTreeMap<i64, String> = items.iter().map(|i| (i.number, i.title.clone())).collect();
    let mut ballots = Vec::new();
    for b in p.ballots().await.map_err(Error::Billing)?.into_iter().filter(|b| b.is_open(now)) {
        let mine = p.mine(b.number, &signed.account.id).await.map_err(Error::Billing)?;
        let choice = |item: &i64| mine.as_ref().and_then(|m| m.choices.get(item)).copied().unwrap_or(0);
        let rows: Vec<_> = b
            .items
            .iter()
            .map(|i| {
                minijinja::context! {
                    number => i, title => titles.get(i).cloned().unwrap_or_default(), given => choice(i),
                }
            })
            .collect();
        ballots.push(minijinja::context! {
            number => b.number,
            points => b.method == Method::Points,
            budget => b.points,
            closes_at => b.closes_at.to_string(),
            items => rows,
            receipt => mine.as_ref().map(|m| m.receipt.clone()),
            voted => mine.is_some(),
        });
    }
    let items: Vec<_> = items
        .iter()
        .map(|i| {
            minijinja::context! {
                number => i.number, title => i.title, status => i.status.as_str().replace('_', " "),
                endorsements => i.endorsements, endorsed => endorsed.contains(&i.number),
            }
        })
        .collect();
    let member = s.priorities.may_vote(&signed.account).is_ok();
    Ok(s.templates.page(
        status,
        "priorities.html",
        minijinja::context! {
            ballots => ballots, items => items, why_not => why_not(s, signed), member => member,
            receipt => said.receipt.map(|(n, r)| minijinja::context! { ballot => n, code => r }),
            notice => said.notice, error => said.error,
            csrf => signed.session.csrf, signed_in => true,
        },
    )?)
}

/// `GET /portal/priorities`
pub(super) async fn priorities(State(Portal(s)): State<Portal>, headers: HeaderMap) -> Result<Response, Stop> {
    let signed = signed_in(&s, &headers).await?;
    page(&s, &signed, StatusCode::OK, Said::default()).await
}

/// The form's fields, in order (a field may come more than once).
type Fields = Vec<(String, String)>;

fn csrf(fields: &Fields) -> &str {
    fields.iter().find(|(k, _)| k == "csrf").map_or("", |(_, v)| v.as_str())
}

/// The vote a form's fields make: `points-<item>` fields (blank is 0), or `approve` values.
fn vote_of(fields: &Fields, points: bool) -> Result<Vote, String> {
    if points {
        let mut out = BTreeMap::new();
        for (k, v) in fields {
            let Some(item) = k.strip_prefix("points-") else { continue };
            let item: i64 = item.parse().map_err(|_| format!("`{item}` is not an item"))?;
            let v = v.trim();
            let given: i64 =
                if v.is_empty() { 0 } else { v.parse().map_err(|_| format!("`{v}` is not a number of points"))? };
            out.insert(item, given);
        }
        Ok(Vote::Points(out))
    } else {
        let approved: Result<BTreeSet<i64>, String> = fields
            .iter()
            .filter(|(k, _)| k == "approve")
            .map(|(_, v)| v.parse().map_err(|_| format!("`{v}` is not an item")))
            .collect();
        Ok(Vote::Approve(approved?))
    }
}

/// `POST /portal/priorities/ballots/{n}/vote`
pub(super) async fn vote(
    State(Portal(s)): State<Portal>,
    headers: HeaderMap,
    Path(n): Path<String>,
    Form(fields): Form<Fields>,
) -> Result<Response, Stop> {
    let signed = signed_in_form(&s, &headers, csrf(&fields)).await?;
    if let Some(why) = why_not(&s, &signed) {
        return page(&s, &signed, StatusCode::FORBIDDEN, Said { error: Some(why), ..Said::default() }).await;
    }
    let n: i64 = n.parse().map_err(|_| Error::NoRoute { path: format!("/portal/priorities/ballots/{n}/vote") })?;
    let Some(ballot) = s.priorities.ballot(n).await.map_err(Error::Billing)? else {
        return Err(Error::Billing(coopgate_billing::Error::NoSuchBallot(n)).into());
    };
    let vote = match vote_of(&fields, ballot.method == Method::Points) {
        Ok(v) => v,
        Err(why) => {
            let said = Said { error: Some(format!("{why}; nothing was recorded.")), ..Said::default() };
            return page(&s, &signed, StatusCode::BAD_REQUEST, said).await;
        }
    };
    match s.priorities.vote(n, &signed.account, &vote, Timestamp::now()).await {
        Ok(receipt) => {
            let said = Said { receipt: Some((n, receipt.receipt)), ..Said::default() };
            page(&s, &signed, StatusCode::OK, said).await
        }
        Err(e @ (coopgate_billing::Error::BadVote(_) | coopgate_billing::Error::BallotClosed(_))) => {
            let status = if matches!(e, coopgate_billing::Error::BallotClosed(_)) {
                StatusCode::CONFLICT
            } else {
                StatusCode::BAD_REQUEST
            };
            let said = Said { error: Some(format!("{e}; nothing was recorded.")), ..Said::default() };
            page(&s, &signed, status, said).await
        }
        Err(e) => Err(Error::Billing(e).into()),
    }
}

/// `POST /portal/priorities/items/{n}/endorse`
pub(super) async fn endorse(
    State(Portal(s)): State<Portal>,
    headers: HeaderMap,
    Path(n): Path<String>,
    Form(fields): Form<Fields>,
) -> Result<Response, Stop> {
    let signed = signed_in_form(&s, &headers, csrf(&fields)).await?;
    let n: i64 = n.parse().map_err(|_| Error::NoRoute { path: format!("/portal/priorities/items/{n}/endorse") })?;
    s.priorities.endorse(n, &signed.account.id, Timestamp::now()).await.map_err(Error::Billing)?;
    let said = Said { notice: Some(format!("You endorse item {n}.")), ..Said::default() };
    page(&s, &signed, StatusCode::OK, said).await
}

/// `POST /portal/priorities/propose`: members propose; the co-op reviews.
pub(super) async fn propose(
    State(Portal(s)): State<Portal>,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Result<Response, Stop> {
    let signed = signed_in_form(&s, &headers, csrf(&fields)).await?;
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str());
    let refuse = |why: String| Said { error: Some(why), ..Said::default() };
    if s.priorities.may_vote(&signed.account).is_err() {
        let why = "Members propose items; you can endorse the items listed.".to_owned();
        return page(&s, &signed, StatusCode::FORBIDDEN, refuse(why)).await;
    }
    let cost = match field("cost").trim() {
        "" => None,
        text => match Money::parse_major(text) {
            Ok(m) => Some(m),
            Err(e) => return page(&s, &signed, StatusCode::BAD_REQUEST, refuse(format!("{e}."))).await,
        },
    };
    let new = NewItem { title: field("title"), description: field("description"), cost };
    match s.priorities.propose_item(&new, &signed.account.id, Timestamp::now()).await {
        Ok(item) => {
            let text = format!(
                "Thank you: “{}” is item {}. The co-op reviews proposals before they are public.",
                item.title, item.number
            );
            page(&s, &signed, StatusCode::CREATED, Said { notice: Some(text), ..Said::default() }).await
        }
        Err(coopgate_billing::Error::InvalidItem(why)) => {
            page(&s, &signed, StatusCode::BAD_REQUEST, refuse(format!("{why}; nothing was saved."))).await
        }
        Err(e) => Err(Error::Billing(e).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn a_forms_fields_make_a_vote() {
        let f = fields(&[("csrf", "c"), ("points-3", "60"), ("points-4", ""), ("points-5", " 40 ")]);
        assert_eq!(vote_of(&f, true).unwrap(), Vote::Points([(3, 60), (4, 0), (5, 40)].into()));
        let f = fields(&[("csrf", "c"), ("approve", "3"), ("approve", "5")]);
        assert_eq!(vote_of(&f, false).unwrap(), Vote::Approve([3, 5].into()));
        assert!(vote_of(&fields(&[("points-3", "lots")]), true).unwrap_err().contains("`lots`"));
        assert!(vote_of(&fields(&[("approve", "x")]), false).unwrap_err().contains("`x`"));
    }
}
