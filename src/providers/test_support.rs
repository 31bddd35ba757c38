//! Builders for test values shared by the adapter tests.

use std::time::Duration;

use crate::config::{Model, Provider, ProviderKind};
use crate::types::{ChatMessage, ChatOptions, ChatRequest, Role, Tier};

pub(crate) fn provider(kind: ProviderKind) -> Provider {
    Provider {
        name: kind.as_str().to_string(),
        kind,
        keys: Vec::new(),
        models: Vec::new(),
        rpd_timezone: chrono_tz::Tz::UTC,
        connect_timeout: Duration::from_secs(10),
        call_timeout: Duration::from_secs(120),
    }
}

pub(crate) fn model(name: &str, endpoint: &str, supports_thinking: bool) -> Model {
    Model {
        name: name.to_string(),
        endpoint: endpoint.to_string(),
        cost_per_1k_input: 0.001,
        cost_per_1k_output: 0.002,
        cost_per_1k_tokens: 0.0015,
        tier: Tier::Low,
        supports_thinking,
        avg_response_time_ms: 1000,
        version: None,
    }
}

pub(crate) fn msg(role: Role, content: &str) -> ChatMessage {
    ChatMessage::new(role, content)
}

/// One user message, no options, thinking left on.
pub(crate) fn simple() -> ChatRequest {
    ChatRequest {
        messages: vec![msg(Role::User, "Hi")].into(),
        options: ChatOptions::default(),
        disable_thinking: false,
        tooling: Default::default(),
    }
}

pub(crate) fn all_options() -> ChatOptions {
    ChatOptions {
        max_tokens: Some(256),
        temperature: Some(0.5),
        top_p: Some(0.9),
        top_k: Some(40),
        stop: Some(vec!["END".to_string()]),
        disable_thinking: None,
    }
}

pub(crate) fn with_messages(messages: Vec<ChatMessage>) -> ChatRequest {
    ChatRequest {
        messages: messages.into(),
        options: ChatOptions::default(),
        disable_thinking: false,
        tooling: Default::default(),
    }
}

pub(crate) fn no_thinking() -> ChatRequest {
    ChatRequest {
        disable_thinking: true,
        ..simple()
    }
}

pub(crate) fn header<'a>(req: &'a super::UpstreamRequest, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

pub(crate) fn no_headers() -> awc::http::header::HeaderMap {
    awc::http::header::HeaderMap::new()
}
