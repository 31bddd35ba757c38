//! Golden and parsing tests of the Gemini adapter.

use super::super::test_support::*;
use super::super::{build_request, parse_response, UpstreamError};
use super::strip_key_param;
use crate::config::{ProviderKind, Secret};
use crate::types::{ChatResponse, FinishReason, Role};
use awc::http::header::HeaderMap;
use serde_json::json;
use std::time::Duration;

const URL: &str =
    "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent";

fn build(name: &str, thinking: bool, req: &crate::types::ChatRequest) -> super::UpstreamRequest {
    let p = provider(ProviderKind::Gemini);
    build_request(
        &p,
        &model(name, URL, thinking),
        Some(&Secret::new("AIza-secret")),
        req,
    )
}

#[test]
fn no_options_key_in_header_only() {
    let r = build("gemini-2.5-flash", false, &simple());
    assert_eq!(r.url, URL);
    assert_eq!(
        r.body_json(),
        json!({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]})
    );
    assert_eq!(header(&r, "x-goog-api-key"), Some("AIza-secret"));
    assert_eq!(header(&r, "Content-Type"), Some("application/json"));
    assert!(!format!("{r:?}").contains("AIza-secret"));
}

#[test]
fn endpoint_key_param_is_stripped() {
    let p = provider(ProviderKind::Gemini);
    let m = model("gemini-2.5-flash", &format!("{URL}?key=AIza-old"), false);
    let r = build_request(&p, &m, Some(&Secret::new("AIza-secret")), &simple());
    assert_eq!(r.url, URL);
    assert_eq!(
        strip_key_param("https://h/p?alt=json&key=x&b=2"),
        "https://h/p?alt=json&b=2"
    );
    assert_eq!(strip_key_param("https://h/p?keys=1"), "https://h/p?keys=1");
    assert_eq!(strip_key_param("https://h/p?key=x#f"), "https://h/p#f");
}

#[test]
fn all_options() {
    let mut req = simple();
    req.options = super::super::test_support::all_options();
    req.options.temperature = Some(2.5);
    assert_eq!(
        build("gemini-2.5-flash", false, &req).body_json(),
        json!({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
               "generationConfig": {"maxOutputTokens": 256, "temperature": 2.0, "topP": 0.9,
                                    "topK": 40, "stopSequences": ["END"]}})
    );
}

#[test]
fn system_instruction_roles_and_merging() {
    let req = with_messages(vec![
        msg(Role::System, "Be brief."),
        msg(Role::User, "Hi"),
        msg(Role::Assistant, "Hello."),
        msg(Role::Assistant, "How can I help?"),
        msg(Role::System, "Use English."),
        msg(Role::User, "Weather?"),
    ]);
    assert_eq!(
        build("gemini-2.5-flash", false, &req).body_json(),
        json!({"contents": [
                   {"role": "user", "parts": [{"text": "Hi"}]},
                   {"role": "model", "parts": [{"text": "Hello.\n\nHow can I help?"}]},
                   {"role": "user", "parts": [{"text": "Weather?"}]}],
               "systemInstruction": {"parts": [{"text": "Be brief.\n\nUse English."}]}})
    );
}

#[test]
fn thinking_off() {
    let contents = json!([{"role": "user", "parts": [{"text": "Hi"}]}]);
    assert_eq!(
        build("gemini-2.5-flash", true, &no_thinking()).body_json(),
        json!({"contents": contents, "generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}})
    );
    assert_eq!(
        build("gemini-2.5-pro", true, &no_thinking()).body_json(),
        json!({"contents": contents, "generationConfig": {"thinkingConfig": {"thinkingBudget": 128}}})
    );
    assert_eq!(
        build("gemini-2.0-flash", false, &no_thinking()).body_json(),
        json!({"contents": contents})
    );
}

fn ok(body: serde_json::Value) -> Result<ChatResponse, UpstreamError> {
    parse_response(
        ProviderKind::Gemini,
        200,
        &no_headers(),
        body.to_string().as_bytes(),
    )
}

fn candidate(parts: serde_json::Value, finish: &str) -> serde_json::Value {
    json!({"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": 0}],
           "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 5,
                             "thoughtsTokenCount": 120, "totalTokenCount": 133},
           "modelVersion": "gemini-2.5-flash"})
}

#[test]
fn parses_text_thoughts_and_usage() {
    let r = ok(candidate(
        json!([{"text": "thinking...", "thought": true}, {"text": "Hello"}, {"text": " world"}]),
        "STOP",
    ))
    .unwrap();
    assert_eq!(r.content, "Hello world");
    assert_eq!(
        (r.finish_reason, r.raw_finish_reason.as_deref()),
        (FinishReason::Stop, Some("STOP"))
    );
    assert_eq!(
        (
            r.usage.input_tokens,
            r.usage.output_tokens,
            r.usage.thinking_tokens
        ),
        (8, 5, 120)
    );
}

#[test]
fn parses_length_filters_and_empties() {
    let r = ok(candidate(json!([]), "MAX_TOKENS")).unwrap();
    assert_eq!(
        (r.content.as_str(), r.finish_reason),
        ("", FinishReason::Length)
    );
    let r = ok(json!({"candidates": [{"finishReason": "SAFETY", "safetyRatings": []}]})).unwrap();
    assert_eq!(r.finish_reason, FinishReason::ContentFilter);
    assert_eq!(r.usage.total(), 0);
    let r = ok(
        json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
                      "usageMetadata": {"promptTokenCount": 9}}),
    )
    .unwrap();
    assert_eq!(
        (r.finish_reason, r.raw_finish_reason.as_deref()),
        (FinishReason::ContentFilter, Some("PROHIBITED_CONTENT"))
    );
    assert_eq!(r.usage.input_tokens, 9);
    assert_eq!(
        ok(candidate(json!([{"text": ""}]), "STOP"))
            .unwrap_err()
            .kind(),
        "malformed_response"
    );
    assert_eq!(
        ok(json!({"usageMetadata": {}})).unwrap_err().kind(),
        "malformed_response"
    );
    assert_eq!(
        ok(candidate(json!([{"text": "x"}]), "RECITATION"))
            .unwrap()
            .finish_reason,
        FinishReason::ContentFilter
    );
    assert_eq!(
        ok(candidate(json!([{"text": "x"}]), "OTHER"))
            .unwrap()
            .finish_reason,
        FinishReason::Other
    );
}

fn err(status: u16, body: serde_json::Value) -> UpstreamError {
    parse_response(
        ProviderKind::Gemini,
        status,
        &HeaderMap::new(),
        body.to_string().as_bytes(),
    )
    .unwrap_err()
}

#[test]
fn classifies_errors() {
    let e = err(
        429,
        json!({"error": {"code": 429, "message": "You exceeded your current quota.",
        "status": "RESOURCE_EXHAUSTED", "details": [
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.5s"}]}}),
    );
    assert!(
        matches!(e, UpstreamError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_millis(1500))
    );
    let e = err(
        400,
        json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
        "status": "INVALID_ARGUMENT", "details": [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
             "domain": "googleapis.com"}]}}),
    );
    assert!(matches!(e, UpstreamError::Auth { status: 400, .. }));
    let e = err(
        400,
        json!({"error": {"code": 400, "message": "Budget 0 is invalid. This model only works in thinking mode.",
        "status": "INVALID_ARGUMENT"}}),
    );
    assert!(matches!(e, UpstreamError::BadRequest { status: 400, .. }));
    let e = err(
        400,
        json!({"error": {"code": 400, "message": "User location is not supported for the API use.",
        "status": "FAILED_PRECONDITION"}}),
    );
    assert_eq!(e.kind(), "bad_request");
    let e = err(
        403,
        json!({"error": {"code": 403, "message": "Permission denied", "status": "PERMISSION_DENIED"}}),
    );
    assert!(matches!(e, UpstreamError::Auth { status: 403, .. }));
    let e = err(
        503,
        json!({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}),
    );
    assert_eq!(
        e.to_string(),
        "upstream server error (503): The model is overloaded."
    );
}
