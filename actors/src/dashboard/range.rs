//! The time range a dashboard request asks about: `hours` (1–8760) back from now, or a
//! custom `start_date`/`end_date`. Times are ISO 8601 with or without `Z` or an offset; a
//! time without an offset is UTC (the original rejected those; its page sent them anyway).

use chrono::{DateTime, NaiveDate, NaiveDateTime};

use crate::clock::Millis;

/// Longest range, in hours (one year).
pub const MAX_HOURS: i64 = 8760;
/// Default range, in hours.
pub const DEFAULT_HOURS: i64 = 24;
const HOUR_MS: Millis = 3_600_000;

/// A resolved range: `[start_ms, end_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    /// Inclusive start, Unix ms.
    pub start_ms: Millis,
    /// Exclusive end, Unix ms.
    pub end_ms: Millis,
}

impl TimeRange {
    /// The last `hours` hours before `now`.
    pub fn last_hours(hours: i64, now: Millis) -> Self {
        Self {
            start_ms: now - hours * HOUR_MS,
            end_ms: now,
        }
    }

    /// Length in hours.
    pub fn hours(&self) -> f64 {
        (self.end_ms - self.start_ms) as f64 / HOUR_MS as f64
    }
}

/// Parses an ISO 8601 instant: `2026-01-02T03:04:05Z`, `…+02:00`, `…` (UTC), with or
/// without fractional seconds or seconds, or a bare date (midnight UTC).
pub fn parse_instant(s: &str) -> Result<Millis, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M%:z",
        "%Y-%m-%d %H:%M:%S%.f%:z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Ok(t.timestamp_millis());
        }
    }
    let naive = s.strip_suffix('Z').unwrap_or(s);
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(naive, fmt) {
            return Ok(t.and_utc().timestamp_millis());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(naive, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc().timestamp_millis());
        }
    }
    Err(format!(
        "{:?} is not an ISO 8601 date-time (e.g. 2026-01-02T03:04:05Z)",
        s.chars().take(64).collect::<String>()
    ))
}

/// Resolves the query parameters: a custom range when `start_date` is given (`end_date`
/// defaults to now), else the last `hours` (default 24).
pub fn resolve(
    hours: Option<&str>,
    start_date: Option<&str>,
    end_date: Option<&str>,
    now: Millis,
) -> Result<TimeRange, String> {
    let hours = match hours.map(str::trim).filter(|h| !h.is_empty()) {
        None => DEFAULT_HOURS,
        Some(h) => match h.parse::<i64>() {
            Ok(n) if (1..=MAX_HOURS).contains(&n) => n,
            _ => {
                return Err(format!(
                    "hours must be a whole number from 1 to {MAX_HOURS}"
                ))
            }
        },
    };
    let start = start_date.map(str::trim).filter(|s| !s.is_empty());
    let end = end_date.map(str::trim).filter(|s| !s.is_empty());
    let Some(start) = start else {
        if end.is_some() {
            return Err("end_date needs a start_date".into());
        }
        return Ok(TimeRange::last_hours(hours, now));
    };
    let start_ms = parse_instant(start).map_err(|e| format!("start_date: {e}"))?;
    let end_ms = match end {
        Some(e) => parse_instant(e).map_err(|e| format!("end_date: {e}"))?,
        None => now,
    };
    if end_ms <= start_ms {
        return Err("end_date must be after start_date".into());
    }
    if end_ms - start_ms > (MAX_HOURS + 24) * HOUR_MS {
        return Err("a custom range may span at most 366 days".into());
    }
    Ok(TimeRange { start_ms, end_ms })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Millis = 1_767_323_045_000; // 2026-01-02T03:04:05Z

    #[test]
    fn instants_with_and_without_offsets() {
        for s in [
            "2026-01-02T03:04:05Z",
            "2026-01-02T03:04:05",
            "2026-01-02T03:04:05.000Z",
            "2026-01-02T05:04:05+02:00",
            "2026-01-02 03:04:05",
        ] {
            assert_eq!(parse_instant(s), Ok(T), "{s}");
        }
        assert_eq!(parse_instant("2026-01-02T03:04"), Ok(T - 5_000));
        assert_eq!(
            parse_instant("2026-01-02"),
            Ok(T - (3 * 3600 + 4 * 60 + 5) * 1000)
        );
        assert!(parse_instant("yesterday").is_err());
        assert!(parse_instant("2026-13-02T00:00:00Z").is_err());
    }

    #[test]
    fn hours_and_custom_ranges() {
        let now = T;
        assert_eq!(
            resolve(None, None, None, now),
            Ok(TimeRange::last_hours(24, now))
        );
        assert_eq!(
            resolve(Some("8760"), None, None, now).map(|r| r.hours()),
            Ok(8760.0)
        );
        for bad in ["0", "8761", "-1", "1.5", "abc"] {
            assert!(resolve(Some(bad), None, None, now).is_err(), "{bad}");
        }
        let r = resolve(
            None,
            Some("2026-01-01T00:00:00Z"),
            Some("2026-01-02T00:00:00Z"),
            now,
        )
        .unwrap();
        assert_eq!(r.hours(), 24.0);
        let open = resolve(None, Some("2026-01-02T00:00:00Z"), None, now).unwrap();
        assert_eq!(open.end_ms, now);
        assert!(resolve(None, Some("2026-01-02T00:00:00Z"), Some("2026-01-01"), now).is_err());
        assert!(resolve(None, None, Some("2026-01-01"), now).is_err());
        assert!(resolve(None, Some("2024-01-01"), Some("2026-01-01"), now).is_err());
        let err = resolve(None, Some("nope"), None, now).unwrap_err();
        assert!(err.starts_with("start_date:"), "{err}");
    }
}
