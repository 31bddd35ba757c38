//! Provider answers: `parse_response` for every provider kind, with a status and headers
//! taken from the input. Nothing may panic, and a 429's Retry-After hint stays capped.
//!
//! Input layout: byte 0 picks the provider kind, byte 1 the status (from a list of
//! interesting ones, or the next two bytes), then header lines up to a 0xFF byte (the first
//! byte of each line picks a header name, the rest is its value), then the body.

#![no_main]

use awc::http::header::{HeaderMap, HeaderName, HeaderValue};
use bkvy::config::ProviderKind;
use bkvy::providers::retry_after::MAX_RETRY_AFTER;
use bkvy::providers::{parse_response, UpstreamError};
use libfuzzer_sys::fuzz_target;

const KINDS: [ProviderKind; 5] = [
    ProviderKind::Openai,
    ProviderKind::Anthropic,
    ProviderKind::Gemini,
    ProviderKind::Ollama,
    ProviderKind::OpenaiCompatible,
];

const STATUSES: [u16; 16] = [
    200, 201, 204, 299, 400, 401, 403, 404, 408, 413, 422, 429, 500, 503, 529, 599,
];

const HEADERS: [&str; 16] = [
    "retry-after",
    "retry-after-ms",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
    "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-requests-reset",
    "anthropic-ratelimit-tokens-remaining",
    "anthropic-ratelimit-tokens-reset",
    "anthropic-ratelimit-input-tokens-remaining",
    "anthropic-ratelimit-input-tokens-reset",
    "anthropic-ratelimit-output-tokens-remaining",
    "anthropic-ratelimit-output-tokens-reset",
    "content-type",
    "x-request-id",
];

fuzz_target!(|data: &[u8]| {
    let [kind, status, rest @ ..] = data else {
        return;
    };
    let kind = KINDS[usize::from(*kind) % KINDS.len()];
    let (status, rest) = match STATUSES.get(usize::from(*status)) {
        Some(s) => (*s, rest),
        None => match rest {
            [a, b, rest @ ..] => (u16::from_le_bytes([*a, *b]), rest),
            _ => return,
        },
    };
    let (header_part, body) = match rest.iter().position(|&b| b == 0xff) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&[][..], rest),
    };
    let mut headers = HeaderMap::new();
    for line in header_part.split(|&b| b == b'\n') {
        let [name, value @ ..] = line else {
            continue;
        };
        let name = HeaderName::from_static(HEADERS[usize::from(*name) % HEADERS.len()]);
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(name, value);
        }
    }
    match parse_response(kind, status, &headers, body) {
        Ok(answer) => {
            let _ = format!("{answer:?}");
        }
        Err(e) => {
            if let UpstreamError::RateLimited {
                retry_after: Some(d),
                ..
            } = &e
            {
                assert!(*d <= MAX_RETRY_AFTER, "{d:?}");
            }
            let _ = e.to_string();
        }
    }
});
