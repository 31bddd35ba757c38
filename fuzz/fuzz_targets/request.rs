//! Request bodies: the bytes go through exactly what the `/llm/*` handlers do with a body
//! that was read (`parse_json::<LlmRequest>`, then `validate` for each endpoint), and the
//! error is rendered as the handler would. Nothing may panic.

#![no_main]

use bkvy::http::body::parse_json;
use bkvy::http::llm::{validate, Endpoint, LlmRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_json::<LlmRequest>(data) {
        Ok(req) => {
            for endpoint in [Endpoint::Intelligence, Endpoint::Scenario, Endpoint::Direct] {
                for max_messages in [0, 1, 5_000] {
                    if let Err(e) = validate(&req, endpoint, max_messages) {
                        let _ = e.to_string();
                        let _ = e.body();
                    }
                }
            }
        }
        Err(e) => {
            let _ = e.to_string();
            let _ = e.body();
        }
    }
});
