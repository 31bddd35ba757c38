//! The one place an upstream HTTP call is made.
//!
//! One deadline covers the whole call (connect, headers and body), because a provider
//! that sends headers quickly and then trickles the body must not hold a request past
//! its budget. The body is read with a size limit so a broken or hostile upstream
//! cannot exhaust memory, and decoded here rather than by awc: awc decodes each piece of a
//! gzip or deflate body whole as it arrives (one 64 KiB piece of a compression bomb is
//! 64 MiB decoded) and checks the limit only after, so twenty bombs at once held hundreds
//! of megabytes. Here the encoded body is read within the limit, then decoded through a
//! reader that stops one byte past it ([`decode_bounded`]): a body never holds more than
//! the limit decoded, whatever its ratio. Every byte held for an answer (as sent, then
//! decoded) is drawn from one budget shared by all calls in flight
//! (`MAX_INFLIGHT_RESPONSE_BYTES`), so many large answers at once cannot together exhaust
//! memory either: past it an answer is not read ([`UpstreamError::Overloaded`]). Transport failures are mapped to [`UpstreamError`] variants
//! with messages that never include the URL (whose query could hold a credential).

use std::io::{self, Read};
use std::time::Duration;

use awc::error::{ConnectError, PayloadError, SendRequestError};
use awc::http::header::{self, HeaderMap};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::{parse_response, UpstreamError, UpstreamRequest};
use crate::budget::{ByteBudget, Reservation};
use crate::config::ProviderKind;
use crate::types::ChatResponse;

/// Sends `req` with `client`, bounded by `timeout` for the whole call, reading at most
/// `max_body_bytes` of (decoded) response body, and parses the answer for `kind`. The
/// bytes held while the body is read, decoded and parsed are drawn from `budget`, shared
/// by every call in flight: when it cannot cover them the call ends with
/// [`UpstreamError::Overloaded`] instead of holding more.
pub async fn call(
    client: &awc::Client,
    kind: ProviderKind,
    req: &UpstreamRequest,
    timeout: Duration,
    max_body_bytes: usize,
    budget: &ByteBudget,
) -> Result<ChatResponse, UpstreamError> {
    let exchange = async {
        // The deadline is the `timeout` around this whole exchange (the client has none).
        let mut response = req.post_encoded(client).await.map_err(send_error)?;
        let status = response.status().as_u16();
        let mut held = budget.reservation();
        let raw = read_body(&mut response, max_body_bytes, &mut held).await?;
        check_complete(response.headers(), raw.len())?;
        // `held` covers the body until it is parsed.
        let (body, _held) = decode(response.headers(), raw, max_body_bytes, held).await?;
        parse_response(kind, status, response.headers(), &body)
    };
    match actix_web::rt::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_elapsed) => Err(UpstreamError::Timeout),
    }
}

/// The `Accept-Encoding` of a call whose body [`decode`] reads.
pub(super) const ACCEPT_ENCODING: &str = "gzip, deflate";

/// Encoded bodies up to this size are decoded on the worker; larger ones on the blocking
/// pool (as awc does), since decoding up to the limit takes milliseconds.
const DECODE_IN_PLACE: usize = 2048;

/// Reads the body as sent, at most `limit` bytes, growing `held` to cover every byte
/// allocated for it.
async fn read_body<S>(
    response: &mut S,
    limit: usize,
    held: &mut Reservation,
) -> Result<Bytes, UpstreamError>
where
    S: futures::Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    let mut buf = BytesMut::new();
    while let Some(chunk) = response.next().await {
        let chunk = chunk.map_err(|e| payload_error(e, limit))?;
        if buf.len() + chunk.len() > limit {
            return Err(payload_error(PayloadError::Overflow, limit));
        }
        buf.reserve(chunk.len());
        if !held.grow_to(buf.capacity()) {
            return Err(UpstreamError::Overloaded);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// The body as sent, decoded by its `Content-Encoding` within `limit` bytes; `held`
/// (covering `raw`) grows to cover the decoded bytes too and comes back with them.
async fn decode(
    headers: &HeaderMap,
    raw: Bytes,
    limit: usize,
    mut held: Reservation,
) -> Result<(Bytes, Reservation), UpstreamError> {
    let Some(coding) = Coding::of(headers)? else {
        return Ok((raw, held));
    };
    if raw.len() <= DECODE_IN_PLACE {
        return decode_bounded(coding, &raw, limit, &mut held).map(|b| (b, held));
    }
    actix_web::rt::task::spawn_blocking(move || {
        decode_bounded(coding, &raw, limit, &mut held).map(|b| (b, held))
    })
    .await
    .map_err(|_| UpstreamError::Malformed {
        message: "response body could not be decoded".to_string(),
    })?
}

/// A content coding bkvy decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    Gzip,
    /// HTTP's `deflate`: a zlib stream.
    Deflate,
}

impl Coding {
    /// The coding `headers` name; `None` for none or `identity`.
    fn of(headers: &HeaderMap) -> Result<Option<Self>, UpstreamError> {
        let Some(value) = headers.get(header::CONTENT_ENCODING) else {
            return Ok(None);
        };
        let value = value.to_str().unwrap_or_default().trim();
        if value.is_empty() || value.eq_ignore_ascii_case("identity") {
            Ok(None)
        } else if value.eq_ignore_ascii_case("gzip") || value.eq_ignore_ascii_case("x-gzip") {
            Ok(Some(Self::Gzip))
        } else if value.eq_ignore_ascii_case("deflate") {
            Ok(Some(Self::Deflate))
        } else {
            Err(UpstreamError::Malformed {
                message: format!(
                    "response body in an encoding not asked for: {:?}",
                    value.chars().take(40).collect::<String>()
                ),
            })
        }
    }
}

/// Decodes `raw`, holding at most `limit` + 1 decoded bytes: past the limit it stops and
/// refuses, however much more the input would expand to. `held` grows with the decoded
/// bytes, piece by piece: a budget that cannot cover the next piece ends the decoding.
fn decode_bounded(
    coding: Coding,
    raw: &[u8],
    limit: usize,
    held: &mut Reservation,
) -> Result<Bytes, UpstreamError> {
    /// Decoded per step.
    const PIECE: usize = 64 * 1024;
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let reader: Box<dyn Read> = match coding {
        Coding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        Coding::Deflate => Box::new(flate2::read::ZlibDecoder::new(raw)),
    };
    let mut reader = reader.take(cap);
    let base = held.held();
    let mut out: Vec<u8> = Vec::new();
    loop {
        out.reserve(PIECE);
        if !held.grow_to(base + out.capacity()) {
            return Err(UpstreamError::Overloaded);
        }
        let start = out.len();
        out.resize(start + PIECE, 0);
        let n = reader
            .read(&mut out[start..])
            .map_err(|_| UpstreamError::Malformed {
                message: "response body could not be decoded".to_string(),
            })?;
        out.truncate(start + n);
        if n == 0 {
            break;
        }
    }
    if out.len() > limit {
        return Err(UpstreamError::Malformed {
            message: format!("response body larger than {limit} bytes"),
        });
    }
    Ok(Bytes::from(out))
}

/// awc ends a body silently when the connection closes early, so a cut-off body is
/// detected here: fewer bytes than the response's `Content-Length` promised (the body is
/// read as sent, so this holds for an encoded body too). A chunked body cut off is caught
/// when it fails to decode or to parse as JSON.
fn check_complete(headers: &HeaderMap, received: usize) -> Result<(), UpstreamError> {
    let promised = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    match promised {
        Some(promised) if received < promised => Err(UpstreamError::Malformed {
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
