//! Which `Range` headers go to the origin.
//!
//! A `Range` of many or overlapping parts asks an origin for more bytes than
//! the file holds (`bytes=0-,0-,0-,…` made one 6.9 MB file a 20.8 GB answer).
//! RFC 9110 §14.2 lets a server ignore such a header and send the whole
//! representation instead; the gateway does that for the origin, by not
//! forwarding it. What goes on has at most `limits.max_ranges` parts, none
//! overlapping another, so no answer is larger than the file itself.
//!
//! Kept: one `bytes` range set of at most `max` parts whose closed and open
//! parts do not overlap, and a suffix part (`-N`) only alone (without the
//! file's length its overlap with others cannot be known). Dropped: anything
//! else, including an unparsable value (the origin would ignore it anyway)
//! and a header given twice.

use http::HeaderMap;
use http::header::{IF_RANGE, RANGE};

/// Removes `Range` (and `If-Range`, which means nothing without it) unless
/// it is one that no origin can answer with more bytes than the file holds.
pub(crate) fn keep_safe_ranges(headers: &mut HeaderMap, max: usize) {
    let mut values = headers.get_all(RANGE).iter();
    let Some(first) = values.next() else { return };
    let single = values.next().is_none();
    if single && first.to_str().is_ok_and(|v| is_safe(v, max)) {
        return;
    }
    headers.remove(RANGE);
    headers.remove(IF_RANGE);
}

/// One part of a byte range set.
#[derive(Clone, Copy)]
enum Part {
    /// `first-last` or `first-` (`last` is `None`).
    From { first: u64, last: Option<u64> },
    /// `-length`: the last `length` bytes.
    Suffix,
}

/// Whether `value` is a `bytes` range set of at most `max` parts that do not overlap.
fn is_safe(value: &str, max: usize) -> bool {
    let Some((unit, set)) = value.split_once('=') else { return false };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return false;
    }
    let mut parts = Vec::new();
    for spec in set.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if parts.len() == max {
            return false;
        }
        match parse(spec) {
            Some(part) => parts.push(part),
            None => return false,
        }
    }
    if parts.is_empty() {
        return false;
    }
    if parts.iter().any(|p| matches!(p, Part::Suffix)) {
        return parts.len() == 1;
    }
    let mut spans: Vec<(u64, Option<u64>)> = parts
        .iter()
        .map(|p| match *p {
            Part::From { first, last } => (first, last),
            Part::Suffix => unreachable!("suffix parts are alone"),
        })
        .collect();
    spans.sort_unstable_by_key(|s| s.0);
    spans.windows(2).all(|w| match w[0].1 {
        Some(last) => w[1].0 > last,
        // An open part reaches the end: anything after it overlaps.
        None => false,
    })
}

/// One `range-spec` (RFC 9110 §14.1.1), or `None` when it is not one.
fn parse(spec: &str) -> Option<Part> {
    let (first, last) = spec.split_once('-')?;
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        return number(last).filter(|&n| n > 0).map(|_| Part::Suffix);
    }
    let first = number(first)?;
    if last.is_empty() {
        return Some(Part::From { first, last: None });
    }
    let last = number(last)?;
    (last >= first).then_some(Part::From { first, last: Some(last) })
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn kept(values: &[&str], max: usize) -> Option<String> {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(RANGE, HeaderValue::from_str(v).unwrap());
        }
        headers.insert(IF_RANGE, HeaderValue::from_static("\"v1\""));
        keep_safe_ranges(&mut headers, max);
        let kept = headers.get(RANGE).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(kept.is_some(), headers.contains_key(IF_RANGE), "If-Range goes with Range");
        kept
    }

    #[test]
    fn ordinary_ranges_reach_the_origin() {
        for v in ["bytes=0-99", "bytes=100-", "bytes=-500", "bytes=0-9, 20-29,40-", "BYTES=5-5", "bytes=0-0,,2-3"] {
            assert_eq!(kept(&[v], 16).as_deref(), Some(v), "{v}");
        }
    }

    #[test]
    fn overlapping_ranges_are_dropped_so_the_whole_file_is_sent_once() {
        for v in
            ["bytes=0-,0-", "bytes=0-99,50-149", "bytes=10-,20-30", "bytes=0-9,9-20", "bytes=-10,0-5", "bytes=-1,-2"]
        {
            assert_eq!(kept(&[v], 16), None, "{v}");
        }
    }

    #[test]
    fn more_ranges_than_allowed_are_dropped() {
        let many = (0..17).map(|i| format!("{}-{}", i * 10, i * 10 + 1)).collect::<Vec<_>>().join(",");
        assert_eq!(kept(&[&format!("bytes={many}")], 16), None);
        let sixteen = (0..16).map(|i| format!("{}-{}", i * 10, i * 10 + 1)).collect::<Vec<_>>().join(",");
        assert!(kept(&[&format!("bytes={sixteen}")], 16).is_some());
        let attack = vec!["0-"; 3000].join(",");
        assert_eq!(kept(&[&format!("bytes={attack}")], 16), None);
    }

    #[test]
    fn unparsable_or_doubled_ranges_are_dropped() {
        for v in ["bytes=", "bytes=a-b", "bytes=5-1", "bytes=-0", "items=0-5", "bytes 0-5", "bytes=0-5-6", "bytes=+1-2"]
        {
            assert_eq!(kept(&[v], 16), None, "{v}");
        }
        assert_eq!(kept(&["bytes=0-5", "bytes=6-9"], 16), None);
    }
}
