//! How long a rate-limited provider asked us to wait, from whichever hint it sends.
//!
//! Sources, in order of preference (the first that parses wins):
//! 1. `Retry-After` (delta-seconds or HTTP-date), the explicit standard header;
//! 2. `retry-after-ms` (OpenAI, Azure);
//! 3. Gemini's body `error.details[]` `google.rpc.RetryInfo` `retryDelay` (`"43s"`);
//! 4. OpenAI's `x-ratelimit-reset-{requests,tokens}` (Go-style durations: `6m0s`);
//! 5. Anthropic's `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-reset`
//!    (RFC 3339 instants).
//!
//! For 4 and 5 the reset of an exhausted limit (its `remaining` header is `0`) is used,
//! the longest if several are; without such a marker, the requests reset.
//! Everything is capped at [`MAX_RETRY_AFTER`]. The parsers are pure (`now` is passed in).

use std::time::{Duration, SystemTime};

use awc::http::header::{HeaderMap, HttpDate};
use serde_json::Value;

/// Longer hints than this are treated as this (a bogus header must not park a key for days).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// The wait a 429 answer asks for, if it says.
pub fn from_response(
    headers: &HeaderMap,
    body: Option<&Value>,
    now: SystemTime,
) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    header("retry-after")
        .and_then(|v| parse_retry_after(v, now))
        .or_else(|| header("retry-after-ms").and_then(parse_millis))
        .or_else(|| body.and_then(gemini_retry_delay))
        .or_else(|| {
            let pairs = [
                (
                    "x-ratelimit-remaining-requests",
                    "x-ratelimit-reset-requests",
                ),
                ("x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"),
            ];
            reset_hint(&header, &pairs, parse_go_duration)
        })
        .or_else(|| {
            let pairs = [
                (
                    "anthropic-ratelimit-requests-remaining",
                    "anthropic-ratelimit-requests-reset",
                ),
                (
                    "anthropic-ratelimit-tokens-remaining",
                    "anthropic-ratelimit-tokens-reset",
                ),
                (
                    "anthropic-ratelimit-input-tokens-remaining",
                    "anthropic-ratelimit-input-tokens-reset",
                ),
                (
                    "anthropic-ratelimit-output-tokens-remaining",
                    "anthropic-ratelimit-output-tokens-reset",
                ),
            ];
            reset_hint(&header, &pairs, |v| parse_rfc3339_remaining(v, now))
        })
        .map(|d| d.min(MAX_RETRY_AFTER))
}

/// The longest reset among exhausted limits, else the first pair's (requests) reset.
fn reset_hint<'h>(
    header: &impl Fn(&str) -> Option<&'h str>,
    pairs: &[(&str, &str)],
    parse: impl Fn(&str) -> Option<Duration>,
) -> Option<Duration> {
    let exhausted = pairs
        .iter()
        .filter(|(remaining, _)| header(remaining).map(str::trim) == Some("0"))
        .filter_map(|(_, reset)| header(reset).and_then(&parse))
        .max();
    exhausted.or_else(|| {
        pairs
            .first()
            .and_then(|(_, reset)| header(reset))
            .and_then(parse)
    })
}

/// `Retry-After`: delta-seconds (`120`, tolerated: `1.5`) or an HTTP-date.
/// A date in the past means "now" (zero).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Some(d) = parse_seconds(value) {
        return Some(d.min(MAX_RETRY_AFTER));
    }
    let at: SystemTime = value.parse::<HttpDate>().ok()?.into();
    Some(
        at.duration_since(now)
            .unwrap_or_default()
            .min(MAX_RETRY_AFTER),
    )
}

/// `retry-after-ms`: milliseconds, possibly fractional.
pub fn parse_millis(value: &str) -> Option<Duration> {
    let ms: f64 = value.trim().parse().ok()?;
    secs_f64(ms / 1000.0)
}

/// Go-style durations as in OpenAI's reset headers: `1s`, `6m0s`, `250ms`, `1h2m3.5s`.
pub fn parse_go_duration(value: &str) -> Option<Duration> {
    let mut rest = value.trim();
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0_f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let (scale, unit_len) = [
            ("ns", 1e-9),
            ("us", 1e-6),
            ("µs", 1e-6),
            ("ms", 1e-3),
            ("s", 1.0),
            ("m", 60.0),
            ("h", 3600.0),
        ]
        .iter()
        .find(|(unit, _)| rest.starts_with(unit))
        .map(|(unit, scale)| (*scale, unit.len()))?;
        total += number * scale;
        rest = &rest[unit_len..];
    }
    secs_f64(total)
}

/// Protobuf JSON durations as in Gemini's `RetryInfo.retryDelay`: `43s`, `1.5s`.
pub fn parse_proto_duration(value: &str) -> Option<Duration> {
    parse_seconds(value.trim().strip_suffix('s')?)
}

/// Time from `now` until an RFC 3339 instant (Anthropic's reset headers); zero if past.
pub fn parse_rfc3339_remaining(value: &str, now: SystemTime) -> Option<Duration> {
    let at: SystemTime = chrono::DateTime::parse_from_rfc3339(value.trim())
        .ok()?
        .into();
    Some(at.duration_since(now).unwrap_or_default())
}

/// Gemini's `RetryInfo` detail in a 429 body.
pub fn gemini_retry_delay(body: &Value) -> Option<Duration> {
    body.pointer("/error/details")?
        .as_array()?
        .iter()
        .filter(|d| {
            d.get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with("google.rpc.RetryInfo"))
        })
        .find_map(|d| {
            d.get("retryDelay")
                .and_then(Value::as_str)
                .and_then(parse_proto_duration)
        })
}

fn parse_seconds(value: &str) -> Option<Duration> {
    if value.is_empty() || !value.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    secs_f64(value.parse().ok()?)
}

fn secs_f64(secs: f64) -> Option<Duration> {
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Some(
        Duration::try_from_secs_f64(secs)
            .unwrap_or(MAX_RETRY_AFTER)
            .min(MAX_RETRY_AFTER),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use awc::http::header::{HeaderName, HeaderValue};
    use serde_json::json;

    fn at(rfc3339: &str) -> SystemTime {
        chrono::DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .into()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(
                HeaderName::from_static(k),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = at("2025-01-01T00:00:00Z");
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after(" 1.5 ", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after("Wed, 01 Jan 2025 00:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Tue, 31 Dec 2024 23:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("999999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_go_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(
            parse_go_duration("1h2m3.5s"),
            Some(Duration::from_millis(3_723_500))
        );
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("100h"), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_go_duration("5"), None);
        assert_eq!(parse_go_duration("5x"), None);
        assert_eq!(parse_go_duration(""), None);
    }

    #[test]
    fn proto_millis_and_rfc3339() {
        assert_eq!(parse_proto_duration("43s"), Some(Duration::from_secs(43)));
        assert_eq!(
            parse_proto_duration("1.5s"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_proto_duration("43"), None);
        assert_eq!(parse_millis("1500"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_millis("x"), None);
        let now = at("2025-01-01T00:00:00Z");
        assert_eq!(
            parse_rfc3339_remaining("2025-01-01T00:00:42Z", now),
            Some(Duration::from_secs(42))
        );
        assert_eq!(
            parse_rfc3339_remaining("2025-01-01T01:00:10+01:00", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_rfc3339_remaining("2024-12-31T00:00:00Z", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_rfc3339_remaining("tomorrow", now), None);
    }

    #[test]
    fn header_preference_and_provider_hints() {
        let now = at("2025-01-01T00:00:00Z");
        let h = headers(&[
            ("retry-after", "7"),
            ("retry-after-ms", "1500"),
            ("x-ratelimit-reset-requests", "1m0s"),
        ]);
        assert_eq!(from_response(&h, None, now), Some(Duration::from_secs(7)));
        let h = headers(&[
            ("retry-after-ms", "1500"),
            ("x-ratelimit-reset-requests", "1m0s"),
        ]);
        assert_eq!(
            from_response(&h, None, now),
            Some(Duration::from_millis(1500))
        );
        let h = headers(&[
            ("x-ratelimit-reset-requests", "1m0s"),
            ("x-ratelimit-reset-tokens", "20ms"),
        ]);
        assert_eq!(from_response(&h, None, now), Some(Duration::from_secs(60)));
        let h = headers(&[
            ("x-ratelimit-remaining-requests", "10"),
            ("x-ratelimit-reset-requests", "1s"),
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-tokens", "6m0s"),
        ]);
        assert_eq!(from_response(&h, None, now), Some(Duration::from_secs(360)));
        let h = headers(&[("anthropic-ratelimit-requests-reset", "2025-01-01T00:00:05Z")]);
        assert_eq!(from_response(&h, None, now), Some(Duration::from_secs(5)));
        let h = headers(&[("retry-after", "90000")]);
        assert_eq!(from_response(&h, None, now), Some(MAX_RETRY_AFTER));
        assert_eq!(from_response(&headers(&[]), None, now), None);
    }

    #[test]
    fn gemini_retry_info() {
        let body = json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "details": [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "43s"}
        ]}});
        let now = SystemTime::UNIX_EPOCH;
        assert_eq!(
            from_response(&headers(&[]), Some(&body), now),
            Some(Duration::from_secs(43))
        );
        assert_eq!(gemini_retry_delay(&json!({"error": {"details": []}})), None);
    }
}
