//! The HTTP layer's error type: every failure a request can meet, each mapped to one
//! status code and one stable JSON shape in exactly one place.
//!
//! Shape: `{"success": false, "error": "<what went wrong>", "error_code": "<stable code>"}`;
//! the `/llm/*` endpoints add their response keys around it (see `http::llm`).

use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

/// Everything the HTTP layer can answer with instead of a success.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON at all (syntax error, truncated, not UTF-8).
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// Well-formed JSON that does not fit the request schema, or invalid values.
    #[error("{0}")]
    Invalid(String),
    /// A path parameter that is not a `YYYY-MM-DD` date.
    #[error("invalid date {0:?}: expected YYYY-MM-DD")]
    InvalidDate(String),
    /// The body is larger than `MAX_REQUEST_BYTES`.
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit.
        limit: usize,
    },
    /// A JSON endpoint was sent a body that does not say it is JSON (`Content-Type`
    /// other than `application/json`, or none).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The endpoint exists but not for this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The request body did not arrive in time.
    #[error("the request body did not arrive in time ({0} s)")]
    BodyTimeout(u64),
    /// The client's address is not allow-listed for this endpoint.
    #[error("Access denied: {0}")]
    Forbidden(String),
    /// No client key, or one `clients.json` does not know (or a wrong admin token).
    #[error("{0}")]
    Unauthorized(String),
    /// The client key may not ask for this (its `allow` list), or the body's `client_id`
    /// names another client.
    #[error("{0}")]
    NotAllowed(String),
    /// The client's own `rpm`/`rpd` is spent.
    #[error("{message}")]
    ClientRateLimited {
        /// What was reached.
        message: String,
        /// Seconds until a request could pass.
        retry_after_secs: Option<u64>,
    },
    /// The call could take the client's spend over its daily or monthly budget.
    #[error("{message}")]
    InsufficientQuota {
        /// Which budget, spent and estimated.
        message: String,
        /// Seconds until the budget's period ends.
        retry_after_secs: Option<u64>,
    },
    /// A named thing (scenario, provider, model, key, tier, path) does not exist.
    #[error("{message}")]
    NotFound {
        /// Stable code, e.g. `scenario_not_found`.
        code: &'static str,
        /// What was not found.
        message: String,
    },
    /// No candidate can take the request now (all keys limited, paused, full or disabled).
    #[error("{message}")]
    Unavailable {
        /// Stable code.
        code: &'static str,
        /// Details.
        message: String,
        /// Seconds until a retry could succeed, if known.
        retry_after_secs: Option<u64>,
    },
    /// An upstream refused the request itself (400, 413, 422): every candidate would.
    #[error("{0}")]
    RequestRefused(String),
    /// Every candidate was tried and failed upstream.
    #[error("{0}")]
    AllFailed(String),
    /// The request's deadline passed.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// A bug or an actor that stopped answering.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "malformed_json",
            Self::Invalid(_) => "invalid_request",
            Self::InvalidDate(_) => "invalid_date",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Forbidden(_) => "access_denied",
            Self::Unauthorized(_) => "invalid_api_key",
            Self::NotAllowed(_) => "not_allowed",
            Self::ClientRateLimited { .. } => "rate_limit_exceeded",
            Self::InsufficientQuota { .. } => "insufficient_quota",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::BodyTimeout(_) => "request_timeout",
            Self::NotFound { code, .. } | Self::Unavailable { code, .. } => code,
            Self::RequestRefused(_) => "request_refused_upstream",
            Self::AllFailed(_) => "all_alternatives_failed",
            Self::DeadlineExceeded(_) => "deadline_exceeded",
            Self::Internal(_) => "internal_error",
        }
    }

    /// Seconds for a `Retry-After` header, where one applies.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::Unavailable {
                retry_after_secs, ..
            }
            | Self::ClientRateLimited {
                retry_after_secs, ..
            }
            | Self::InsufficientQuota {
                retry_after_secs, ..
            } => *retry_after_secs,
            _ => None,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "success": false,
            "error": self.to_string(),
            "error_code": self.code(),
        })
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::MalformedJson(_) => StatusCode::BAD_REQUEST,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::InvalidDate(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Forbidden(_) | Self::NotAllowed(_) => StatusCode::FORBIDDEN,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::ClientRateLimited { .. } | Self::InsufficientQuota { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::RequestRefused(_) => StatusCode::BAD_REQUEST,
            Self::AllFailed(_) => StatusCode::BAD_GATEWAY,
            Self::DeadlineExceeded(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        respond(self, self.body())
    }
}

/// An error response with the given body (the `/llm/*` endpoints send a larger one).
pub fn respond(err: &ApiError, body: serde_json::Value) -> HttpResponse {
    let mut res = HttpResponse::build(err.status_code());
    if matches!(err, ApiError::Unauthorized(_)) {
        res.insert_header((actix_web::http::header::WWW_AUTHENTICATE, "Bearer"));
    }
    if let Some(secs) = err.retry_after_secs() {
        if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
            res.insert_header((RETRY_AFTER, v));
        }
    }
    res.json(body)
}

impl From<bkvy_actors::RouteError> for ApiError {
    fn from(e: bkvy_actors::RouteError) -> Self {
        use bkvy_actors::RouteError as R;
        let message = e.to_string();
        match e {
            R::NoModelsAvailable(_)
            | R::ScenarioNotFound(_)
            | R::ProviderNotFound(_)
            | R::ModelNotFound(_)
            | R::ApiKeyNotFound(_) => Self::NotFound {
                code: e.code(),
                message,
            },
            R::NoCombinations(_) => Self::Unavailable {
                code: e.code(),
                message,
                retry_after_secs: None,
            },
            R::AllUnavailable { retry_after_ms, .. } => Self::Unavailable {
                code: e.code(),
                message,
                retry_after_secs: retry_after_ms.map(|ms| (ms.max(0) as u64).div_ceil(1000)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_its_status() {
        let cases = [
            (ApiError::MalformedJson("x".into()), 400),
            (ApiError::Invalid("x".into()), 422),
            (ApiError::InvalidDate("x".into()), 400),
            (ApiError::PayloadTooLarge { limit: 1 }, 413),
            (ApiError::UnsupportedMediaType("x".into()), 415),
            (ApiError::Forbidden("x".into()), 403),
            (ApiError::Unauthorized("x".into()), 401),
            (ApiError::NotAllowed("x".into()), 403),
            (
                ApiError::ClientRateLimited {
                    message: "x".into(),
                    retry_after_secs: Some(1),
                },
                429,
            ),
            (
                ApiError::InsufficientQuota {
                    message: "x".into(),
                    retry_after_secs: None,
                },
                429,
            ),
            (ApiError::MethodNotAllowed("x".into()), 405),
            (ApiError::BodyTimeout(30), 408),
            (
                ApiError::NotFound {
                    code: "scenario_not_found",
                    message: "x".into(),
                },
                404,
            ),
            (
                ApiError::Unavailable {
                    code: "all_candidates_unavailable",
                    message: "x".into(),
                    retry_after_secs: Some(3),
                },
                503,
            ),
            (ApiError::RequestRefused("x".into()), 400),
            (ApiError::AllFailed("x".into()), 502),
            (ApiError::DeadlineExceeded("x".into()), 504),
            (ApiError::Internal("x".into()), 500),
        ];
        for (err, status) in cases {
            assert_eq!(err.status_code().as_u16(), status, "{err:?}");
            let body = err.body();
            assert_eq!(body["success"], false);
            assert_eq!(body["error_code"], err.code());
        }
    }

    #[test]
    fn unavailable_sends_retry_after() {
        let err = ApiError::Unavailable {
            code: "all_candidates_unavailable",
            message: "x".into(),
            retry_after_secs: Some(7),
        };
        let res = err.error_response();
        assert_eq!(
            res.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()),
            Some("7")
        );
    }
}
