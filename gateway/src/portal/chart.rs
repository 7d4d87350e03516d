//! The overview's daily usage chart, as the geometry of an inline SVG: a bar
//! per day of the period, requests on the vertical. Worked out here so that
//! the template draws rectangles and needs no script. A leaf.

use serde::Serialize;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 180.0;
const LEFT: f64 = 56.0;
const BOTTOM: f64 = 24.0;
const TOP: f64 = 10.0;

/// One day's bar.
#[derive(Debug, Serialize)]
pub struct Bar {
    x: f64,
    y: f64,
    width: f64,
    height: f64,
    /// What a screen reader and a hover say: `2026-12-03: 42 requests`.
    title: String,
}

/// A label under the axis or beside it.
#[derive(Debug, Serialize)]
pub struct Label {
    x: f64,
    y: f64,
    text: String,
}

/// The chart.
#[derive(Debug, Serialize)]
pub struct Chart {
    width: f64,
    height: f64,
    axis_y: f64,
    left: f64,
    bars: Vec<Bar>,
    days: Vec<Label>,
    ticks: Vec<Label>,
}

/// The chart of `days` (`(YYYY-MM-DD, requests)` for every day of the
/// period so far, in order), or `None` when nothing was used.
pub fn chart(days: &[(String, u64)]) -> Option<Chart> {
    let max = days.iter().map(|(_, n)| *n).max().filter(|m| *m > 0)?;
    let plot = HEIGHT - TOP - BOTTOM;
    let axis_y = TOP + plot;
    // Room for a whole month, so that the bars keep their width as it fills.
    let slots = days.len().max(31) as f64;
    let slot = (WIDTH - LEFT) / slots;
    let mut bars = Vec::new();
    let mut labels = Vec::new();
    for (i, (day, n)) in days.iter().enumerate() {
        let x = LEFT + slot * i as f64;
        let height = plot * (*n as f64) / (max as f64);
        bars.push(Bar {
            x: round(x + slot * 0.15),
            y: round(axis_y - height),
            width: round(slot * 0.7),
            height: round(height),
            title: format!("{day}: {n} requests"),
        });
        // The 1st, every fifth day, and today.
        let dom = day.get(8..10).unwrap_or("").trim_start_matches('0');
        if i == 0 || i + 1 == days.len() || (i + 1) % 5 == 0 {
            labels.push(Label { x: round(x + slot / 2.0), y: HEIGHT - 6.0, text: dom.to_owned() });
        }
    }
    let ticks = vec![
        Label { x: LEFT - 6.0, y: round(TOP + 4.0), text: max.to_string() },
        Label { x: LEFT - 6.0, y: round(axis_y), text: "0".to_owned() },
    ];
    Some(Chart { width: WIDTH, height: HEIGHT, axis_y: round(axis_y), left: LEFT, bars, days: labels, ticks })
}

fn round(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busiest_day_fills_the_plot_and_an_idle_period_draws_nothing() {
        let days = vec![("2026-12-01".to_owned(), 10), ("2026-12-02".to_owned(), 0), ("2026-12-03".to_owned(), 5)];
        let c = chart(&days).unwrap();
        assert_eq!(c.bars.len(), 3);
        assert_eq!(c.bars[0].height, HEIGHT - TOP - BOTTOM);
        assert_eq!(c.bars[1].height, 0.0);
        assert_eq!(c.bars[2].height, (HEIGHT - TOP - BOTTOM) / 2.0);
        assert_eq!(c.bars[2].title, "2026-12-03: 5 requests");
        assert!(chart(&[("2026-12-01".to_owned(), 0)]).is_none());
    }
}
