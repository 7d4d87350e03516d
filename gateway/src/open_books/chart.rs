//! The open books' monthly chart, as the geometry of an inline SVG: a bar per
//! month of income (memberships, metered use, the rest, stacked) beside a bar
//! of what went back out (refunds and disputes, fees). Worked out here, in
//! numbers, so that the template only draws rectangles and needs no script.

use coopgate_billing::open_books::Report;
use serde::Serialize;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 64.0;
const BOTTOM: f64 = 28.0;
const TOP: f64 = 12.0;

/// One rectangle of a bar.
#[derive(Debug, Serialize)]
pub struct Segment {
    x: f64,
    y: f64,
    width: f64,
    height: f64,
    /// The CSS class that colours it (and the legend's key).
    class: &'static str,
    /// What a screen reader and a hover say: `2026-03 memberships: 120.00 USD`.
    title: String,
}

/// A label under the axis or beside it.
#[derive(Debug, Serialize)]
pub struct Label {
    x: f64,
    y: f64,
    text: String,
}

/// The chart of one currency.
#[derive(Debug, Serialize)]
pub struct Chart {
    /// Upper-case ISO code.
    currency: String,
    width: f64,
    height: f64,
    /// The baseline's height in the picture.
    axis_y: f64,
    left: f64,
    segments: Vec<Segment>,
    months: Vec<Label>,
    ticks: Vec<Label>,
}

/// One part of a bar: minor units, its CSS class, its name for people.
type Part = (i64, &'static str, &'static str);

/// The chart of the report's main currency (the one with the most income),
/// or `None` when no money moved in the range.
pub fn chart(report: &Report) -> Option<Chart> {
    let mut by_currency: std::collections::BTreeMap<&str, i64> = Default::default();
    for t in report.months.iter().flat_map(|m| &m.currencies) {
        *by_currency.entry(t.currency.as_str()).or_default() += t.income().abs() + t.fees.minor_units.abs();
    }
    let currency = by_currency.iter().max_by_key(|(_, v)| **v).map(|(c, _)| (*c).to_owned())?;
    // Every month's (income parts, outgoing parts), in minor units, never negative.
    let bars: Vec<(&str, [Part; 3], [Part; 2])> = report
        .months
        .iter()
        .map(|m| {
            let t = m.currencies.iter().find(|t| t.currency == currency);
            let get = |f: &dyn Fn(&coopgate_billing::open_books::Totals) -> i64| t.map_or(0, |t| f(t).max(0));
            (
                m.month.as_str(),
                [
                    (get(&|t| t.memberships.values().map(|a| a.minor_units).sum()), "memberships", "memberships"),
                    (get(&|t| t.metered_api.minor_units), "metered", "metered API"),
                    (get(&|t| t.other_income.minor_units), "other", "other income"),
                ],
                [
                    (get(&|t| t.refunds_and_disputes.minor_units), "refunds", "refunds and disputes"),
                    (get(&|t| t.fees.minor_units), "fees", "fees"),
                ],
            )
        })
        .collect();
    let top = bars
        .iter()
        .map(|(_, i, o)| i.iter().map(|p| p.0).sum::<i64>().max(o.iter().map(|p| p.0).sum()))
        .max()
        .unwrap_or(0)
        .max(1);
    let code = coopgate_billing::Currency::new(&currency).ok()?;
    let major = |minor: i64| coopgate_billing::Money::new(minor, code).major();
    let plot = HEIGHT - BOTTOM - TOP;
    let axis_y = HEIGHT - BOTTOM;
    let slot = (WIDTH - LEFT) / bars.len().max(1) as f64;
    let bar = (slot * 0.36).min(28.0);
    let scale = |minor: i64| minor as f64 / top as f64 * plot;
    let mut segments = Vec::new();
    let mut months = Vec::new();
    for (i, (month, income, outgoing)) in bars.iter().enumerate() {
        let x = LEFT + slot * i as f64 + slot / 2.0;
        for (parts, left) in [(&income[..], x - bar - 1.0), (&outgoing[..], x + 1.0)] {
            let mut y = axis_y;
            for (minor, class, name) in parts {
                if *minor == 0 {
                    continue;
                }
                let h = scale(*minor);
                y -= h;
                segments.push(Segment {
                    x: round(left),
                    y: round(y),
                    width: round(bar),
                    height: round(h),
                    class,
                    title: format!("{month} {name}: {} {currency}", major(*minor)),
                });
            }
        }
        months.push(Label { x: round(x), y: HEIGHT - 8.0, text: month.to_string() });
    }
    let ticks = [0, top / 2, top]
        .iter()
        .map(|v| Label { x: LEFT - 6.0, y: round(axis_y - scale(*v) + 4.0), text: major(*v) })
        .collect();
    Some(Chart { currency, width: WIDTH, height: HEIGHT, axis_y, left: LEFT, segments, months, ticks })
}

/// Coordinates to a tenth of a pixel: enough, and the page stays small.
fn round(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}
