//! `wsu:Timestamp` and the strict xsd:dateTime it carries.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::wssec::envelope::{Node, WSU_NS};
use crate::wssec::error::WssecError;

/// A checked `wsu:Timestamp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timestamp {
    pub created: SystemTime,
    pub expires: SystemTime,
    /// `Created` as written (part of the replay key).
    pub created_text: String,
}

/// Checks Created/Expires: present once each, strict UTC, fresh, lifetime capped.
pub fn check_timestamp(
    ts: &Node,
    now: SystemTime,
    skew: Duration,
    max_ttl: Duration,
) -> Result<Timestamp, WssecError> {
    let mut kids = ts.children.iter();
    let (Some(c), Some(e), None) = (kids.next(), kids.next(), kids.next()) else {
        return Err(WssecError::BadTimestamp(
            "Timestamp needs Created then Expires",
        ));
    };
    if !c.is(WSU_NS, "Created") || !e.is(WSU_NS, "Expires") {
        return Err(WssecError::BadTimestamp(
            "Timestamp needs Created then Expires",
        ));
    }
    let created = date_of(c)?;
    let expires = date_of(e)?;
    if expires <= created {
        return Err(WssecError::BadTimestamp("Expires not after Created"));
    }
    if created > later(now, skew) {
        return Err(WssecError::CreatedInFuture);
    }
    if later(expires, skew) < now {
        return Err(WssecError::MessageExpired);
    }
    if expires.duration_since(created).unwrap_or_default() > max_ttl {
        return Err(WssecError::TtlTooLong);
    }
    Ok(Timestamp {
        created,
        expires,
        created_text: c.text.clone(),
    })
}

/// `t + d`, or `t` if that overflows (a configuration extreme; stricter, never laxer
/// for a "not after" bound, and only reachable with absurd durations).
pub fn later(t: SystemTime, d: Duration) -> SystemTime {
    t.checked_add(d).unwrap_or(t)
}

fn date_of(n: &Node) -> Result<SystemTime, WssecError> {
    if !n.is_text_only() || n.attrs.iter().any(|a| a.local == "ValueType") {
        return Err(WssecError::BadTimestamp("date element content"));
    }
    parse_datetime(&n.text).ok_or(WssecError::BadTimestamp("not an xsd:dateTime with a zone"))
}

/// An xsd:dateTime with a zone: `YYYY-MM-DDThh:mm:ss[.fraction]` then `Z` or
/// `±hh:mm` (WSS4J accepts offsets, so `+00:00` stacks interoperate). XML
/// whitespace around it is dropped, as xsd:dateTime's whitespace facet says;
/// a time without a zone is refused (its instant is unknown).
pub fn parse_datetime(s: &str) -> Option<SystemTime> {
    let b = s
        .trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'))
        .as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let d = b.get(r)?;
        d.iter().all(u8::is_ascii_digit).then(|| {
            d.iter()
                .fold(0u64, |acc, &c| acc * 10 + u64::from(c - b'0'))
        })
    };
    let seps = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if b.len() < 20 || seps.iter().any(|&(i, c)| b.get(i) != Some(&c)) {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let rest = &b[19..];
    let (frac, zone) = match rest.first() {
        Some(b'.') => {
            let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 {
                return None;
            }
            (&rest[1..1 + n], &rest[1 + n..])
        }
        _ => (&rest[..0], rest),
    };
    // Seconds to subtract to reach UTC.
    let offset: i64 = match zone {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digit = |c: &u8| c.is_ascii_digit().then(|| i64::from(c - b'0'));
            let (oh, om) = (digit(h1)? * 10 + digit(h2)?, digit(m1)? * 10 + digit(m2)?);
            if oh > 14 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    if y < 1970 || !(1..=12).contains(&mo) || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    if d == 0 || d > days_in_month(y, mo) {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    let secs =
        u64::try_from(i64::try_from(days * 86_400 + h * 3600 + mi * 60 + sec).ok()? - offset)
            .ok()?;
    let nanos = frac
        .iter()
        .take(9)
        .chain(std::iter::repeat(&b'0'))
        .take(9)
        .fold(0u32, |acc, &c| acc * 10 + u32::from(c - b'0'));
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

fn is_leap(y: u64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: u64, m: u64) -> u64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (year >= 1970).
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let days_before_year: u64 = (1970..y)
        .map(|yy| if is_leap(yy) { 366 } else { 365 })
        .sum();
    let days_before_month: u64 = (1..m).map(|mm| days_in_month(y, mm)).sum();
    days_before_year + days_before_month + d - 1
}

/// Formats a time as `YYYY-MM-DDThh:mm:ssZ` (whole seconds).
pub fn format_datetime(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let (mut days, rem) = (secs / 86_400, secs % 86_400);
    let mut y = 1970;
    loop {
        let n = if is_leap(y) { 366 } else { 365 };
        if days < n {
            break;
        }
        days -= n;
        y += 1;
    }
    let mut m = 1;
    while days >= days_in_month(y, m) {
        days -= days_in_month(y, m);
        m += 1;
    }
    format!(
        "{y:04}-{m:02}-{:02}T{:02}:{:02}:{:02}Z",
        days + 1,
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}
