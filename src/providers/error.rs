//! The one error type of an upstream call, with stable labels for logs, metrics and CSV.
//!
//! Messages stored in it are short: only the provider's own error message field
//! (truncated), never the request body or the URL. A provider may still quote the key or
//! the prompt in that message: [`super::redact`] takes every configured key out where the
//! error enters the gateway, and cuts every stored copy before its first quote.

use std::time::Duration;

use serde_json::Value;

/// Longest provider message kept, in characters.
const MAX_MESSAGE_CHARS: usize = 300;

/// Why an upstream call failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// HTTP 429.
    #[error("upstream rate limited (429): {message}")]
    RateLimited {
        /// How long the provider asked us to wait, if it said so.
        retry_after: Option<Duration>,
        /// The provider's message.
        message: String,
    },
    /// HTTP 401 or 403 (or Gemini's "API key not valid" 400).
    #[error("upstream refused the credentials ({status}): {message}")]
    Auth {
        /// HTTP status.
        status: u16,
        /// The provider's message.
        message: String,
    },
    /// HTTP 5xx, including Anthropic's 529 "overloaded".
    #[error("upstream server error ({status}): {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// The provider's message.
        message: String,
    },
    /// Any other non-2xx status (400, 404, 413, 422 ...).
    #[error("upstream rejected the request ({status}): {message}")]
    BadRequest {
        /// HTTP status.
        status: u16,
        /// The provider's message.
        message: String,
    },
    /// A 2xx answer that is not the expected shape, not JSON, cut off, or empty.
    #[error("malformed upstream response: {message}")]
    Malformed {
        /// What was wrong.
        message: String,
    },
    /// The call did not finish in time.
    #[error("upstream call timed out")]
    Timeout,
    /// Refused, reset, DNS or TLS failure.
    #[error("upstream connection failed: {message}")]
    Connection {
        /// What failed (never the URL's query).
        message: String,
    },
    /// bkvy's own memory for upstream answers in flight (`MAX_INFLIGHT_RESPONSE_BYTES`)
    /// could not cover this answer: it was not read. Not the upstream's fault.
    #[error(
        "the answer was not read: the memory for upstream answers in flight \
         (MAX_INFLIGHT_RESPONSE_BYTES) is in use"
    )]
    Overloaded,
}

impl UpstreamError {
    /// A stable label: `rate_limited`, `auth`, `server_error`, `bad_request`,
    /// `malformed_response`, `timeout`, `connection` or `gateway_overloaded`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::RateLimited { .. } => "rate_limited",
            Self::Auth { .. } => "auth",
            Self::Server { .. } => "server_error",
            Self::BadRequest { .. } => "bad_request",
            Self::Malformed { .. } => "malformed_response",
            Self::Timeout => "timeout",
            Self::Connection { .. } => "connection",
            Self::Overloaded => "gateway_overloaded",
        }
    }

    /// Whether trying the same candidate again may succeed.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Self::Server { .. } | Self::Malformed { .. } | Self::Timeout | Self::Connection { .. }
        )
    }

    /// The HTTP status, where there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::RateLimited { .. } => Some(429),
            Self::Auth { status, .. }
            | Self::Server { status, .. }
            | Self::BadRequest { status, .. } => Some(*status),
            Self::Malformed { .. } | Self::Timeout | Self::Connection { .. } | Self::Overloaded => {
                None
            }
        }
    }
}

/// The provider's own error message from its JSON error body, made safe to store; or
/// `HTTP <status>` when there is none.
///
/// Shapes: OpenAI, Anthropic, Gemini and llama.cpp use `error.message`; Ollama uses an
/// `error` string; vLLM's older format has a top-level `message`.
pub(crate) fn error_message(body: Option<&Value>, status: u16) -> String {
    let found = body.and_then(|b| {
        b.pointer("/error/message")
            .and_then(Value::as_str)
            .or_else(|| b.get("error").and_then(Value::as_str))
            .or_else(|| b.get("message").and_then(Value::as_str))
    });
    match found.map(safe_text) {
        Some(text) if !text.is_empty() => text,
        _ => format!("HTTP {status}"),
    }
}

/// One line, at most [`MAX_MESSAGE_CHARS`] characters.
pub(crate) fn safe_text(s: &str) -> String {
    let line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_MESSAGE_CHARS)
        .collect();
    line.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_retryability_and_status() {
        let e = UpstreamError::RateLimited {
            retry_after: None,
            message: "slow down".into(),
        };
        assert_eq!(
            (e.kind(), e.retryable(), e.status()),
            ("rate_limited", false, Some(429))
        );
        assert_eq!(e.to_string(), "upstream rate limited (429): slow down");
        let e = UpstreamError::Server {
            status: 529,
            message: "Overloaded".into(),
        };
        assert_eq!(
            (e.kind(), e.retryable(), e.status()),
            ("server_error", true, Some(529))
        );
        let e = UpstreamError::Auth {
            status: 401,
            message: "x".into(),
        };
        assert_eq!((e.kind(), e.retryable()), ("auth", false));
        let e = UpstreamError::BadRequest {
            status: 400,
            message: "x".into(),
        };
        assert_eq!((e.kind(), e.retryable()), ("bad_request", false));
        let e = UpstreamError::Malformed {
            message: "x".into(),
        };
        assert_eq!(
            (e.kind(), e.retryable(), e.status()),
            ("malformed_response", true, None)
        );
        assert_eq!(
            (
                UpstreamError::Timeout.kind(),
                UpstreamError::Timeout.retryable()
            ),
            ("timeout", true)
        );
        let e = UpstreamError::Connection {
            message: "refused".into(),
        };
        assert_eq!((e.kind(), e.retryable()), ("connection", true));
    }

    #[test]
    fn extracts_each_error_shape() {
        let openai = json!({"error": {"message": "Rate limit reached", "type": "requests"}});
        assert_eq!(error_message(Some(&openai), 429), "Rate limit reached");
        let ollama = json!({"error": "model 'x' not found"});
        assert_eq!(error_message(Some(&ollama), 404), "model 'x' not found");
        let vllm = json!({"object": "error", "message": "bad", "code": 400});
        assert_eq!(error_message(Some(&vllm), 400), "bad");
        assert_eq!(
            error_message(Some(&json!({"detail": "x"})), 502),
            "HTTP 502"
        );
        assert_eq!(error_message(None, 500), "HTTP 500");
        assert_eq!(
            error_message(Some(&json!({"error": {"message": ""}})), 500),
            "HTTP 500"
        );
    }

    #[test]
    fn truncates_and_flattens() {
        let long = "é".repeat(400);
        assert_eq!(safe_text(&long).chars().count(), 300);
        assert_eq!(safe_text("a\nb\tc "), "a b c");
    }
}
