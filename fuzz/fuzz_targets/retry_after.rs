//! The Retry-After family of parsers on arbitrary strings: none may panic, and every
//! capped one stays within `MAX_RETRY_AFTER`.

#![no_main]

use std::time::{Duration, SystemTime};

use bkvy::providers::retry_after::{
    gemini_retry_delay, parse_go_duration, parse_millis, parse_proto_duration, parse_retry_after,
    parse_rfc3339_remaining, MAX_RETRY_AFTER,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let s = text.as_ref();
    let nows = [
        SystemTime::UNIX_EPOCH,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000),
        SystemTime::UNIX_EPOCH + Duration::from_secs(400_000_000_000),
    ];
    for now in nows {
        if let Some(d) = parse_retry_after(s, now) {
            assert!(d <= MAX_RETRY_AFTER, "retry-after {s:?}: {d:?}");
        }
        let _ = parse_rfc3339_remaining(s, now);
    }
    for (name, parsed) in [
        ("ms", parse_millis(s)),
        ("go", parse_go_duration(s)),
        ("proto", parse_proto_duration(s)),
    ] {
        if let Some(d) = parsed {
            assert!(d <= MAX_RETRY_AFTER, "{name} {s:?}: {d:?}");
        }
    }
    let body = serde_json::json!({"error": {"details": [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": s}
    ]}});
    if let Some(d) = gemini_retry_delay(&body) {
        assert!(d <= MAX_RETRY_AFTER, "gemini {s:?}: {d:?}");
    }
});
