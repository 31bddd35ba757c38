//! Streamed execution: the same retry and failover loop as a plain call
//! ([`super::execute_with`]), but an attempt only counts as answered once its first
//! content (or a clean end) has arrived, so a connect error, a 429, a 5xx, or a stream
//! that errors or closes before content fails over invisibly to the client. What follows
//! the first content is the answer's body (`http::chat::stream`).

use std::collections::VecDeque;

use bkvy_actors::Plan;
use futures::StreamExt;

use super::{Answered, Failure, Job, Upstreams};
use crate::clients::Clients;
use crate::providers::stream::{build_stream_request, call_stream, StreamEvent, UpstreamStream};
use crate::providers::UpstreamError;

/// Largest single upstream stream event accepted.
const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// An upstream stream that has produced its first content (or ended cleanly).
pub struct Probed {
    /// The rest of the upstream stream.
    pub stream: UpstreamStream,
    /// What arrived up to and including the first content.
    pub first: VecDeque<StreamEvent>,
}

/// Runs the plan with streamed upstream calls; see the module docs.
pub async fn execute_stream(
    up: &Upstreams,
    clients: &Clients,
    plan: &Plan,
    job: &Job,
) -> Result<Answered<Probed>, Failure> {
    let idle = up.config.settings.stream_idle_timeout;
    let redactor = &up.redactor;
    super::execute_with(up, plan, job, |c| {
        let req = build_stream_request(c.provider, c.model, c.secret, c.request);
        let client = clients.get(c.provider.connect_timeout).clone();
        let (kind, timeout) = (c.provider.kind, c.timeout);
        let redactor = redactor.clone();
        Box::pin(async move {
            let probe = async {
                let stream =
                    call_stream(&client, kind, &req, timeout, idle, MAX_EVENT_BYTES).await?;
                // The rest of the stream is the answer's body: its errors are redacted
                // here, where they enter bkvy (the attempt loop redacts those before).
                let mut stream: UpstreamStream = stream
                    .map(move |item| item.map_err(|e| redactor.error(e)))
                    .boxed_local();
                let mut first = VecDeque::new();
                loop {
                    match stream.next().await {
                        Some(Ok(ev)) => {
                            let content = matches!(&ev, StreamEvent::Delta(t) if !t.is_empty())
                                || matches!(
                                    ev,
                                    StreamEvent::Done { .. } | StreamEvent::ToolCall(_)
                                );
                            first.push_back(ev);
                            if content {
                                return Ok(Probed { stream, first });
                            }
                        }
                        Some(Err(e)) => return Err(e),
                        None => {
                            return Err(UpstreamError::Malformed {
                                message: "stream ended before any content".into(),
                            })
                        }
                    }
                }
            };
            actix_web::rt::time::timeout(timeout, probe)
                .await
                .unwrap_or(Err(UpstreamError::Timeout))
        })
    })
    .await
}
