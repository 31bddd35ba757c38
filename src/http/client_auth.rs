//! Client keys at the front doors: who is asking, whether they may ask for this, and
//! whether their limits and budgets let the request through.
//!
//! Every chat door runs the same steps (in [`super::chat`]): [`authenticate`] from the
//! headers alone, before the body is read (a caller without a key costs no body
//! buffering); after parsing, [`check_target`] against the client's `allow` list and
//! [`ClientLedger::check_rate`] against its request limits; after planning,
//! [`admit`] with a conservative estimate of the call's cost, which returns a
//! [`Reservation`] that settles the real cost when the request's completion event is
//! emitted (or releases the estimate if the request ends without one).
//!
//! [`ClientLedger::check_rate`]: crate::client_ledger::ClientLedger::check_rate

use std::sync::Arc;

use actix_web::HttpRequest;
use bkvy_actors::{Plan, RouteTarget, SharedClock};

use super::error::ApiError;
use crate::client_ledger::{LedgerRefusal, SharedLedger};
use crate::config::{Client, ClientKeys, Config};

/// Output tokens assumed for the budget estimate when a request sets no `max_tokens`.
pub const DEFAULT_OUTPUT_TOKENS_ESTIMATE: u32 = 4_096;
/// Input tokens assumed per byte of request body: three bytes per token is more tokens
/// than any tokenizer makes of text, so the estimate errs on the safe side.
pub const BYTES_PER_TOKEN: usize = 3;

/// The key a request presents: `Authorization: Bearer <key>`, else `x-api-key: <key>`.
fn presented(req: &HttpRequest) -> Option<&str> {
    let h = req.headers();
    if let Some(v) = h.get(actix_web::http::header::AUTHORIZATION) {
        let v = v.to_str().ok()?;
        let (scheme, key) = v.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| key.trim())
            .filter(|k| !k.is_empty());
    }
    h.get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

/// The client whose key the request carries.
pub fn authenticate<'k>(req: &HttpRequest, keys: &'k ClientKeys) -> Result<&'k Client, ApiError> {
    let Some(key) = presented(req) else {
        return Err(ApiError::Unauthorized(
            "missing API key: send it as \"Authorization: Bearer <key>\" or \"x-api-key: <key>\""
                .into(),
        ));
    };
    keys.identify(key)
        .ok_or_else(|| ApiError::Unauthorized("invalid API key".into()))
}

/// Refuses a `client_id` the request named (`declared`) that is someone else's, and a
/// target outside the client's `allow` list.
pub fn check_target(
    client: &Client,
    declared: Option<&str>,
    target: &RouteTarget,
) -> Result<(), ApiError> {
    if let Some(id) = declared.filter(|id| *id != client.name) {
        return Err(ApiError::NotAllowed(format!(
            "client_id \"{}\" does not match the API key's client",
            id.escape_debug()
        )));
    }
    if !client.allows(target) {
        return Err(ApiError::NotAllowed(format!(
            "client \"{}\" may not use {}",
            client.name,
            describe(target)
        )));
    }
    Ok(())
}

fn describe(target: &RouteTarget) -> String {
    match target {
        RouteTarget::Intelligence(t) => format!("intelligence level \"{}\"", t.as_str()),
        RouteTarget::Scenario(s) => format!("scenario \"{}\"", s.escape_debug()),
        RouteTarget::Direct {
            provider, model, ..
        } => format!(
            "model \"{}/{}\"",
            provider.escape_debug(),
            model.escape_debug()
        ),
    }
}

/// A client's refusal as the door answers it: 429 with `Retry-After`, `insufficient_quota`
/// for budgets.
pub fn refusal(r: &LedgerRefusal) -> ApiError {
    let retry_after_secs = Some((r.retry_after_ms().max(0) as u64).div_ceil(1000));
    match r {
        LedgerRefusal::Budget { .. } => ApiError::InsufficientQuota {
            message: r.to_string(),
            retry_after_secs,
        },
        _ => ApiError::ClientRateLimited {
            message: r.to_string(),
            retry_after_secs,
        },
    }
}

/// The most the planned call may cost: the dearest candidate of the plan (a failover
/// may land there), with the request body's bytes as input tokens at
/// [`BYTES_PER_TOKEN`] and `max_tokens` (or [`DEFAULT_OUTPUT_TOKENS_ESTIMATE`]) output
/// tokens.
pub fn estimate_usd(
    config: &Config,
    plan: &Plan,
    body_bytes: usize,
    max_tokens: Option<u32>,
) -> f64 {
    let input = (body_bytes / BYTES_PER_TOKEN + 1) as f64;
    let output = f64::from(max_tokens.unwrap_or(DEFAULT_OUTPUT_TOKENS_ESTIMATE));
    plan.ordered
        .iter()
        .filter_map(|p| {
            let id = p.candidate.id();
            config.provider(&id.provider)?.model(&id.model)
        })
        .map(|m| (input * m.cost_per_1k_input + output * m.cost_per_1k_output) / 1000.0)
        .fold(0.0, f64::max)
}

/// Admits the request of `client` against its limits and budgets, reserving `estimate`.
pub fn admit(
    ledger: &Arc<SharedLedger>,
    clock: &SharedClock,
    client: &Client,
    estimate: f64,
) -> Result<Reservation, ApiError> {
    ledger
        .with(true, |l| l.admit(client, clock.now_ms(), estimate))
        .map_err(|r| refusal(&r))?;
    Ok(Reservation {
        ledger: ledger.clone(),
        clock: clock.clone(),
        client: client.name.clone(),
        estimate,
        open: true,
    })
}

/// An admitted request's reserved estimate. [`settle`](Self::settle) it with the real
/// cost; dropping it unsettled releases the estimate and adds nothing.
pub struct Reservation {
    ledger: Arc<SharedLedger>,
    clock: SharedClock,
    client: String,
    estimate: f64,
    open: bool,
}

impl Reservation {
    /// Releases the estimate and adds `cost_usd` (absent: the call cost nothing).
    pub fn settle(mut self, cost_usd: Option<f64>) {
        self.close(cost_usd.unwrap_or(0.0));
    }

    fn close(&mut self, cost: f64) {
        if std::mem::take(&mut self.open) {
            let now = self.clock.now_ms();
            self.ledger
                .with(true, |l| l.settle(&self.client, now, self.estimate, cost));
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.close(0.0);
    }
}
