//! `/v1/chat/completions` bodies: the bytes go through exactly what the handler does with a
//! body that was read (`parse_json::<OaiRequest>`, then `openai::parse`, which yields the
//! routing target, messages, options, tools and response format), and an error is rendered
//! as the handler would (`OaiError::from_api`, `OaiError::response`). Nothing may panic; a
//! refused body gets a 400 (a 404 for an unknown model) in OpenAI's error shape; an
//! accepted one must say what the body said (checked against the same bytes read as a
//! plain `serde_json::Value`), and every provider adapter must turn it into a JSON object
//! body.
//!
//! Input layout: the body, then optionally a NUL byte (never part of a well-formed body)
//! and up to four lines giving the values of `x-bkvy-max-wait-seconds`,
//! `x-bkvy-disable-thinking`, `x-bkvy-client-id` and `authorization` (an empty line, or an
//! invalid header value, leaves that header out).

#![no_main]

use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::test::TestRequest;
use actix_web::HttpRequest;
use bkvy::config::{Model, Provider, ProviderKind};
use bkvy::gateway::thinking_disabled;
use bkvy::http::body::parse_json;
use bkvy::http::openai::{parse, OaiError, OaiRequest, Parsed};
use bkvy::providers::build_request;
use bkvy::providers::stream::build_stream_request;
use bkvy::types::{ChatRequest, ResponseFormat, Role, Tier, ToolChoice};
use bkvy_actors::RouteTarget;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// The server's default `max_messages`.
const MAX_MESSAGES: usize = 5_000;

const HEADERS: [&str; 4] = [
    "x-bkvy-max-wait-seconds",
    "x-bkvy-disable-thinking",
    "x-bkvy-client-id",
    "authorization",
];

/// Top-level fields `/v1` reads, and those it accepts and ignores.
const KNOWN: [&str; 21] = [
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "n",
    "user",
    "stream",
    "stream_options",
    "reasoning_effort",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "logprobs",
    "client_id",
    "max_wait_seconds",
    "timeout_seconds",
    "disable_thinking",
];
const IGNORED: [&str; 11] = [
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "metadata",
    "store",
    "service_tier",
    "logit_bias",
    "top_logprobs",
    "safety_identifier",
    "prompt_cache_key",
    "verbosity",
];

const KINDS: [ProviderKind; 5] = [
    ProviderKind::Openai,
    ProviderKind::Anthropic,
    ProviderKind::Gemini,
    ProviderKind::Ollama,
    ProviderKind::OpenaiCompatible,
];

fuzz_target!(|data: &[u8]| {
    let (body, headers) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (data, &[][..]),
    };
    let req = request(headers);
    let Some(parsed) = run(&req, body, MAX_MESSAGES) else {
        return;
    };
    check_accepted(&req, body, &parsed);
    // The limit on messages is inclusive and is the only check left.
    let n = parsed.chat.messages.len();
    assert!(
        run(&req, body, n).is_some(),
        "refused at max_messages = {n}"
    );
    assert!(
        run(&req, body, n - 1).is_none(),
        "accepted at max_messages = {}",
        n - 1
    );
    build_upstream_calls(&parsed);
});

/// A `POST /v1/chat/completions` request carrying the headers the input names.
fn request(lines: &[u8]) -> HttpRequest {
    let mut req = TestRequest::post().uri("/v1/chat/completions");
    for (name, value) in HEADERS.iter().zip(lines.split(|&b| b == b'\n')) {
        if value.is_empty() {
            continue;
        }
        if let Ok(value) = HeaderValue::from_bytes(value) {
            req = req.insert_header((HeaderName::from_static(name), value));
        }
    }
    req.to_http_request()
}

/// The handler's path up to routing; a refusal is rendered and checked, and gives `None`.
fn run(req: &HttpRequest, body: &[u8], max_messages: usize) -> Option<Parsed> {
    let error = match parse_json::<OaiRequest>(body) {
        Ok(body) => match parse(req, body, max_messages) {
            Ok(parsed) => return Some(parsed),
            Err(e) => e,
        },
        Err(e) => OaiError::from_api(&e),
    };
    check_refusal(&error);
    None
}

/// A refusal is a 400 (or a 404 naming the model) with OpenAI's error object.
fn check_refusal(error: &OaiError) {
    let res = error.response("fuzz");
    let status = res.status().as_u16();
    assert!(status == 400 || status == 404, "status {status}");
    assert!(res.headers().contains_key("x-bkvy-request-id"));
    let Ok(bytes) = res.into_body().try_into_bytes() else {
        panic!("an error body that is not in memory");
    };
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let e = &v["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert_eq!(e["type"].as_str(), Some("invalid_request_error"), "{v}");
    assert!(e["code"].as_str().is_some_and(|c| !c.is_empty()), "{v}");
    if status == 404 {
        assert_eq!(e["param"].as_str(), Some("model"), "{v}");
        assert_eq!(e["code"].as_str(), Some("model_not_found"), "{v}");
    }
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

/// Absent and `null` are the same for every optional field.
fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.get(name).filter(|x| !x.is_null())
}

/// What an accepted request holds is what its body said, and within bkvy's limits.
fn check_accepted(req: &HttpRequest, body: &[u8], parsed: &Parsed) {
    // JSON text is UTF-8, and parse_json promises a 400 for anything that is not JSON.
    assert!(
        std::str::from_utf8(body).is_ok(),
        "accepted a body that is not UTF-8"
    );
    let v: Value = match bkvy::json::from_bytes(body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(other) => panic!("accepted, but not a JSON object: {other}"),
        // serde_json skips a string it ignores (a field nobody reads, such as an unknown
        // field of a message) without decoding its escapes, so a lone surrogate (`\ud800`)
        // there passes, while `Value` refuses it; nothing is read from such a string.
        Err(e) => {
            assert!(
                e.to_string().contains("surrogate") || e.to_string().contains("hex escape"),
                "accepted, but not JSON: {e}"
            );
            return;
        }
    };
    let p = &parsed.chat;

    // Every top-level field is read or explicitly ignored.
    for k in v.as_object().into_iter().flat_map(|o| o.keys()) {
        assert!(
            KNOWN.contains(&k.as_str()) || IGNORED.contains(&k.as_str()),
            "unknown field {k:?} accepted"
        );
    }
    assert!(field(&v, "n").is_none_or(|n| n.as_u64() == Some(1)));
    assert_ne!(field(&v, "logprobs").and_then(Value::as_bool), Some(true));

    // The routing target is what `model` names.
    let model = v["model"].as_str().unwrap_or_else(|| panic!("model {v}"));
    match &p.target {
        RouteTarget::Intelligence(tier) => assert_eq!(tier.as_str(), model),
        RouteTarget::Scenario(name) => assert_eq!(format!("scenario:{name}"), model),
        RouteTarget::Direct {
            provider,
            model: m,
            key_id,
        } => {
            assert!(Tier::parse(model).is_none() && !model.starts_with("scenario:"));
            assert!(!provider.is_empty() && !m.is_empty() && !provider.contains('/'));
            assert_eq!(format!("{provider}/{m}"), model);
            assert_eq!(key_id, &None);
        }
    }

    // Messages: one per entry, roles and text as sent, tool calls only where they belong.
    let raw = v["messages"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert!(!p.messages.is_empty() && p.messages.len() <= MAX_MESSAGES);
    assert_eq!(p.messages.len(), raw.len());
    for (i, (m, r)) in p.messages.iter().zip(raw).enumerate() {
        let role = match r["role"].as_str() {
            Some("system" | "developer") => Role::System,
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            Some("tool") => Role::Tool,
            other => panic!("messages[{i}]: role {other:?} accepted"),
        };
        assert_eq!(m.role, role, "messages[{i}]");
        let text = match field(r, "content") {
            None => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => parts
                .iter()
                .map(|part| {
                    assert_eq!(part["type"].as_str(), Some("text"), "messages[{i}]");
                    part["text"]
                        .as_str()
                        .unwrap_or_else(|| panic!("messages[{i}]"))
                })
                .collect(),
            Some(other) => panic!("messages[{i}]: content {other} accepted"),
        };
        assert_eq!(m.content, text, "messages[{i}]");
        if role != Role::Assistant {
            assert!(m.tool_calls.is_empty(), "messages[{i}]");
        }
        for c in &m.tool_calls {
            assert!(!c.id.is_empty() && !c.name.is_empty(), "messages[{i}]");
        }
        if role == Role::Tool {
            let id = m.tool_call_id.as_deref().unwrap_or_default();
            assert!(!id.is_empty(), "messages[{i}]");
            assert_eq!(r["tool_call_id"].as_str(), Some(id), "messages[{i}]");
            // It answers a call of an assistant message since the last user message.
            let answered = p.messages[..i]
                .iter()
                .rev()
                .take_while(|q| q.role != Role::User)
                .any(|q| q.tool_calls.iter().any(|c| c.id == id));
            assert!(answered, "messages[{i}] answers no call");
        } else {
            assert_eq!(m.tool_call_id, None, "messages[{i}]");
        }
    }

    // Tools: valid, distinct names; a named or required choice has tools to choose from.
    let t = &p.tooling;
    let raw_tools = field(&v, "tools").map_or(0, |x| x.as_array().map_or(usize::MAX, Vec::len));
    assert_eq!(t.tools.len(), raw_tools);
    for (i, d) in t.tools.iter().enumerate() {
        assert!(valid_name(&d.name), "tools[{i}]: {:?}", d.name);
        assert!(t.tools[..i].iter().all(|e| e.name != d.name), "tools[{i}]");
        assert!(d.parameters.as_ref().is_none_or(Value::is_object));
    }
    match &t.tool_choice {
        Some(ToolChoice::Function(name)) => assert!(t.tools.iter().any(|d| &d.name == name)),
        Some(ToolChoice::Required) => assert!(!t.tools.is_empty()),
        Some(ToolChoice::Auto | ToolChoice::None) => {}
        None => assert!(field(&v, "tool_choice").is_none()),
    }
    assert_eq!(
        t.parallel_tool_calls,
        field(&v, "parallel_tool_calls").and_then(Value::as_bool)
    );
    if let ResponseFormat::JsonSchema { name, schema, .. } = &t.response_format {
        assert!(valid_name(name), "json_schema.name {name:?}");
        assert!(schema.as_ref().is_none_or(Value::is_object));
    }

    // Options and budgets: as sent, and within what validate_common allows.
    let o = &p.options;
    let as_u32 = |name| field(&v, name).and_then(Value::as_u64);
    assert_eq!(
        o.max_tokens.map(u64::from),
        as_u32("max_completion_tokens").or(as_u32("max_tokens"))
    );
    assert_ne!(o.max_tokens, Some(0));
    assert!(o.temperature.is_none_or(|x| (0.0..=2.0).contains(&x)));
    assert!(o.top_p.is_none_or(|x| (0.0..=1.0).contains(&x)));
    assert_eq!(o.top_k, None);
    match field(&v, "stop") {
        None => assert_eq!(o.stop, None),
        Some(Value::String(s)) => assert_eq!(o.stop.as_deref(), Some(&[s.clone()][..])),
        Some(list) => assert_eq!(o.stop.as_ref().map(Vec::len), list.as_array().map(Vec::len)),
    }
    if let Some(d) = field(&v, "disable_thinking") {
        assert_eq!(o.disable_thinking, d.as_bool());
    }
    assert!(p.max_wait_seconds.is_none_or(|w| w.is_finite() && w >= 0.0));
    assert!(p
        .timeout_seconds
        .is_none_or(|t| t.is_finite() && t >= 0.001));
    if let Some(w) = field(&v, "max_wait_seconds") {
        assert_eq!(p.max_wait_seconds, w.as_f64());
    }

    // Caller and streaming.
    let id = &parsed.chat.client_id;
    assert!(!id.is_empty() && id.len() <= 256 && !id.chars().any(char::is_control));
    match field(&v, "client_id") {
        Some(c) => assert_eq!(c.as_str(), Some(id.as_str())),
        None => {
            let header = req
                .headers()
                .get("x-bkvy-client-id")
                .map(HeaderValue::to_str);
            if let Some(Ok(h)) = header {
                assert_eq!(h, id);
            }
        }
    }
    assert_eq!(
        parsed.chat.stream,
        field(&v, "stream").and_then(Value::as_bool) == Some(true)
    );
    if parsed.include_usage {
        assert_eq!(v["stream_options"]["include_usage"].as_bool(), Some(true));
    }
}

/// What each candidate's upstream call is built from after routing: every adapter must
/// give a JSON object body.
fn build_upstream_calls(parsed: &Parsed) {
    let p = &parsed.chat;
    for kind in KINDS {
        let provider = Provider {
            name: kind.as_str().to_owned(),
            kind,
            keys: Vec::new(),
            models: Vec::new(),
            rpd_timezone: chrono_tz::Tz::UTC,
            connect_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(120),
        };
        let model = Model {
            name: "m".to_owned(),
            endpoint: "http://127.0.0.1:9/v1/chat/completions".to_owned(),
            cost_per_1k_input: 0.001,
            cost_per_1k_output: 0.002,
            cost_per_1k_tokens: 0.0015,
            tier: Tier::Low,
            supports_thinking: true,
            avg_response_time_ms: 1000,
            version: None,
        };
        let request = ChatRequest {
            messages: p.messages.clone(),
            options: p.options.clone(),
            disable_thinking: thinking_disabled(&p.options, &model),
            tooling: p.tooling.clone(),
        };
        let call = if parsed.chat.stream {
            build_stream_request(&provider, &model, None, &request)
        } else {
            build_request(&provider, &model, None, &request)
        };
        assert!(
            call.body_json().is_object(),
            "{kind:?}: body is not a JSON object"
        );
    }
}
