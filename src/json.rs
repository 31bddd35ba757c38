//! Reading JSON from bytes at the cost of one UTF-8 check.
//!
//! `serde_json::from_slice` checks UTF-8 string by string as it reads, one call per key
//! and value; a request and an upstream answer hold dozens of short strings, and those
//! checks were a visible share of each request's work. Checking the whole body once
//! (std's check reads a word at a time) and reading it as `&str` gives the same value for
//! every valid body; an invalid one takes the byte path, so its error is exactly the one
//! serde_json reports there.

use serde::Deserialize;

/// `serde_json::from_slice`, with one UTF-8 check of the whole input.
pub fn from_bytes<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(bytes),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::from_bytes;

    fn same(bytes: &[u8]) {
        let ours = from_bytes::<Value>(bytes).map_err(|e| e.to_string());
        let theirs = serde_json::from_slice::<Value>(bytes).map_err(|e| e.to_string());
        assert_eq!(ours, theirs, "{:?}", String::from_utf8_lossy(bytes));
    }

    #[test]
    fn same_values_and_errors_as_from_slice() {
        for body in [
            &b"{\"a\": \"h\xc3\xa9llo\", \"b\": [1, 2.5, null, true]}"[..],
            b"{\"a\": \"\xff\"}",
            b"{\"a\": \"\\ud800\"}",
            b"{\"a\": \"tab\there\"}",
            b"[1, 2",
            b"",
            b"\xef\xbb\xbf{}",
        ] {
            same(body);
        }
    }

    proptest! {
        #[test]
        fn agrees_with_from_slice_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            same(&bytes);
        }

        #[test]
        fn agrees_with_from_slice_on_near_json(s in "[\\{\\}\\[\\]\":,0-9a-z\\\\ é\u{1F600}]{0,30}") {
            same(s.as_bytes());
        }
    }
}
