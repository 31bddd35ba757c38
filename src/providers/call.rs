//! The one place an upstream HTTP call is made.
//!
//! One deadline covers the whole call (connect, headers and body), because a provider
//! that sends headers quickly and then trickles the body must not hold a request past
//! its budget. The body is read with a size limit so a broken or hostile upstream
//! cannot exhaust memory. Transport failures are mapped to [`UpstreamError`] variants
//! with messages that never include the URL (whose query could hold a credential).

use std::io;
use std::time::Duration;

use awc::error::{ConnectError, PayloadError, SendRequestError};
use awc::http::header::{self, HeaderMap};

use super::{parse_response, UpstreamError, UpstreamRequest};
use crate::config::ProviderKind;
use crate::types::ChatResponse;

/// Sends `req` with `client`, bounded by `timeout` for the whole call, reading at most
/// `max_body_bytes` of (decoded) response body, and parses the answer for `kind`.
pub async fn call(
    client: &awc::Client,
    kind: ProviderKind,
    req: &UpstreamRequest,
    timeout: Duration,
    max_body_bytes: usize,
) -> Result<ChatResponse, UpstreamError> {
    let exchange = async {
        // The deadline is the `timeout` around this whole exchange (the client has none).
        let mut response = req.post(client).await.map_err(send_error)?;
        let status = response.status().as_u16();
        let body = response
            .body()
            .limit(max_body_bytes)
            .await
            .map_err(|e| payload_error(e, max_body_bytes))?;
        check_complete(response.headers(), body.len())?;
        parse_response(kind, status, response.headers(), &body)
    };
    match actix_web::rt::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_elapsed) => Err(UpstreamError::Timeout),
    }
}

/// awc ends a body silently when the connection closes early, so a cut-off body is
/// detected here: fewer bytes than an unencoded response's `Content-Length` promised.
/// (An encoded or chunked body cut off is caught when it fails to parse as JSON.)
fn check_complete(headers: &HeaderMap, received: usize) -> Result<(), UpstreamError> {
    let encoded = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.trim().eq_ignore_ascii_case("identity"));
    let promised = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    match promised {
        Some(promised) if !encoded && received < promised => Err(UpstreamError::Malformed {
            message: format!("response body cut off: received {received} of {promised} bytes"),
        }),
        _ => Ok(()),
    }
}

pub(super) fn send_error(e: SendRequestError) -> UpstreamError {
    let message = match e {
        SendRequestError::Timeout => return UpstreamError::Timeout,
        SendRequestError::Response(e) => {
            return UpstreamError::Malformed {
                message: format!("invalid HTTP response: {e}"),
            }
        }
        SendRequestError::Connect(ConnectError::Timeout) => "connect timed out".to_string(),
        SendRequestError::Connect(ConnectError::Io(e)) => io_message(&e),
        SendRequestError::Connect(e) => e.to_string(),
        SendRequestError::Send(e) => format!("sending the request failed: {}", io_message(&e)),
        // The URL or a header value could not be used; their text may hold the key.
        SendRequestError::Url(_) => "invalid endpoint URL".to_string(),
        SendRequestError::Http(_) => "invalid request header".to_string(),
        other => other.to_string(),
    };
    UpstreamError::Connection { message }
}

fn payload_error(e: PayloadError, limit: usize) -> UpstreamError {
    match e {
        PayloadError::Io(ref io) if io.kind() == io::ErrorKind::TimedOut => UpstreamError::Timeout,
        PayloadError::Overflow => UpstreamError::Malformed {
            message: format!("response body larger than {limit} bytes"),
        },
        PayloadError::EncodingCorrupted => UpstreamError::Malformed {
            message: "response body could not be decoded".to_string(),
        },
        other => UpstreamError::Malformed {
            message: format!("response body cut off: {other}"),
        },
    }
}

fn io_message(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        io::ErrorKind::ConnectionReset => "connection reset".to_string(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
#[path = "call_tests.rs"]
mod tests;
