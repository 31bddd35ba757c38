//! Health probes that cost nothing: each provider's model-list endpoint, never a paid
//! completion.
//!
//! The request reuses the adapter's own authentication headers (built exactly as for a
//! chat call), so a probe checks the same key the same way; only the URL and method
//! differ.

use std::time::Duration;

use super::{build_request, call::send_error, classify_error, UpstreamError, UpstreamRequest};
use crate::config::{Model, Provider, ProviderKind, Secret};
use crate::types::{ChatMessage, ChatOptions, ChatRequest, Role};

/// The model-list URL next to a chat endpoint.
pub fn model_list_url(kind: ProviderKind, endpoint: &str) -> String {
    let (base, query) = match endpoint.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (endpoint, None),
    };
    let url = match kind {
        ProviderKind::Openai | ProviderKind::OpenaiCompatible => base
            .strip_suffix("/chat/completions")
            .map_or_else(|| format!("{base}/models"), |b| format!("{b}/models")),
        ProviderKind::Anthropic => base
            .strip_suffix("/messages")
            .map_or_else(|| format!("{base}/models"), |b| format!("{b}/models")),
        ProviderKind::Gemini => match base.find("/models/") {
            Some(i) => format!("{}/models", &base[..i]),
            None => format!("{base}/models"),
        },
        ProviderKind::Ollama => base
            .strip_suffix("/api/chat")
            .map_or_else(|| format!("{base}/api/tags"), |b| format!("{b}/api/tags")),
    };
    // Keep harmless query parameters (never a key: the adapters strip `key=`).
    match query.filter(|q| !q.is_empty() && !q.contains("key=")) {
        Some(q) => format!("{url}?{q}"),
        None => url,
    }
}

/// The probe request for a provider's key, built from one of its models.
pub fn model_list_request(
    provider: &Provider,
    model: &Model,
    key: Option<&Secret>,
) -> UpstreamRequest {
    let dummy = ChatRequest {
        messages: vec![ChatMessage::new(Role::User, String::new())].into(),
        options: ChatOptions::default(),
        disable_thinking: false,
        tooling: Default::default(),
    };
    let mut req = build_request(provider, model, key, &dummy);
    req.url = model_list_url(provider.kind, &req.url);
    req.headers
        .retain(|(name, _)| name != awc::http::header::CONTENT_TYPE);
    req.body = bytes::Bytes::new();
    req
}

/// Calls the model list: `Ok` on 2xx, otherwise the error classified as for a chat call.
pub async fn probe(
    client: &awc::Client,
    kind: ProviderKind,
    req: &UpstreamRequest,
    timeout: Duration,
) -> Result<(), UpstreamError> {
    // Asked unencoded and read as sent: a compressed body is never expanded here (only
    // the status matters, and an error body that is not JSON is classified by its status).
    let mut res = req
        .with_headers(client.get(&req.url).timeout(timeout))
        .no_decompress()
        .insert_header((awc::http::header::ACCEPT_ENCODING, "identity"))
        .send()
        .await
        .map_err(send_error)?;
    let status = res.status().as_u16();
    let body = res.body().limit(1 << 20).await.unwrap_or_default();
    if (200..300).contains(&status) {
        return Ok(());
    }
    Err(classify_error(kind, status, res.headers(), &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_list_urls_per_api() {
        use ProviderKind::*;
        let cases = [
            (Openai, "https://api.openai.com/v1/chat/completions", "https://api.openai.com/v1/models"),
            (OpenaiCompatible, "http://h:8000/keyless/v1/chat/completions", "http://h:8000/keyless/v1/models"),
            (Anthropic, "https://api.anthropic.com/v1/messages", "https://api.anthropic.com/v1/models"),
            (
                Gemini,
                "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent?key=X",
                "https://generativelanguage.googleapis.com/v1beta/models",
            ),
            (Ollama, "http://127.0.0.1:11434/api/chat", "http://127.0.0.1:11434/api/tags"),
        ];
        for (kind, endpoint, want) in cases {
            assert_eq!(model_list_url(kind, endpoint), want, "{endpoint}");
        }
    }
}
