//! Client keys at the front doors: who is asking, whether they may ask for this, and
//! whether their limits and budgets let the request through.
//!
//! Every chat door runs the same steps (in [`super::chat`]): [`authenticate`] from the
//! headers alone, before the body is read (a caller without a key costs no body
//! buffering); after parsing, [`check_target`] against the client's `allow` list and
//! [`ClientLedger::check_rate`] against its request limits; after planning,
//! [`admit`] with a conservative estimate of the call's cost ([`CostEstimate`]), which
//! returns a [`Reservation`] that settles the real cost when the request's completion
//! event is emitted (see [`Reservation`] for what a call whose cost is unknown is charged).
//!
//! [`ClientLedger::check_rate`]: crate::client_ledger::ClientLedger::check_rate

use std::sync::Arc;

use actix_web::HttpRequest;
use bkvy_actors::{Plan, RequestCompleted, RouteTarget, SharedClock};

use super::error::ApiError;
use crate::client_ledger::{LedgerRefusal, SharedLedger};
use crate::config::{Client, ClientKeys, Config};

/// Output tokens assumed for the budget estimate when a request sets no `max_tokens`;
/// a client with a budget has it sent upstream as the call's `max_tokens`, so the estimate
/// is a ceiling.
pub const DEFAULT_OUTPUT_TOKENS_ESTIMATE: u32 = 4_096;
/// Input tokens assumed per byte of request body: one. No tokenizer makes more tokens of
/// text than it has bytes, and the body's JSON around the text adds bytes, not tokens.
pub const BYTES_PER_TOKEN: usize = 1;

/// Attempt error kinds after which the provider may still bill the call: it was sent and
/// read (a timeout cuts a call the provider may finish; a malformed answer is an answer,
/// and so is one bkvy had no memory left to read).
pub const MAYBE_BILLED: [&str; 3] = ["timeout", "malformed_response", "gateway_overloaded"];

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
    let retry_after_secs = r
        .retry_after_ms()
        .map(|ms| (ms.max(0) as u64).div_ceil(1000));
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

/// The most a call may use: input tokens from the request body's bytes at
/// [`BYTES_PER_TOKEN`], output tokens from `max_tokens` (or
/// [`DEFAULT_OUTPUT_TOKENS_ESTIMATE`]), and what that costs on the dearest candidate of
/// the plan (a failover may land there).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostEstimate {
    /// Input tokens, at most.
    pub input_tokens: f64,
    /// Output tokens, at most.
    pub output_tokens: f64,
    /// USD on the dearest candidate.
    pub usd: f64,
}

impl CostEstimate {
    /// The estimate for a planned call.
    pub fn new(config: &Config, plan: &Plan, body_bytes: usize, max_tokens: Option<u32>) -> Self {
        let input_tokens = (body_bytes / BYTES_PER_TOKEN + 1) as f64;
        let output_tokens = f64::from(max_tokens.unwrap_or(DEFAULT_OUTPUT_TOKENS_ESTIMATE));
        let mut e = Self {
            input_tokens,
            output_tokens,
            usd: 0.0,
        };
        e.usd = plan
            .ordered
            .iter()
            .filter_map(|p| {
                let id = p.candidate.id();
                e.on(config, &id.provider, &id.model)
            })
            .fold(0.0, f64::max);
        e
    }

    /// The most the call may cost on one model (`None`: not in `config`).
    fn on(&self, config: &Config, provider: &str, model: &str) -> Option<f64> {
        let m = config.provider(provider)?.model(model)?;
        Some(
            (self.input_tokens * m.cost_per_1k_input + self.output_tokens * m.cost_per_1k_output)
                / 1000.0,
        )
    }
}

/// Admits the request of `client` against its limits and budgets, reserving the
/// estimate's cost.
pub fn admit(
    ledger: &Arc<SharedLedger>,
    clock: &SharedClock,
    client: &Client,
    estimate: CostEstimate,
    config: Arc<Config>,
) -> Result<Reservation, ApiError> {
    ledger
        .with(true, |l| l.admit(client, clock.now_ms(), estimate.usd))
        .map_err(|r| refusal(&r))?;
    Ok(Reservation {
        ledger: ledger.clone(),
        clock: clock.clone(),
        client: client.name.clone(),
        estimate,
        config,
        open: true,
    })
}

/// An admitted request's reserved estimate, settled once with what the call cost.
///
/// [`settle`](Self::settle) charges what the completion event says: its cost when known;
/// the ceiling of the answering model when the answer was cut before its usage arrived
/// (the provider bills what it generated); plus the ceiling of every failed attempt the
/// provider may still bill ([`MAYBE_BILLED`]). A reservation dropped unsettled (the
/// request went away mid-call, its attempts unknown) charges the whole estimate: bkvy
/// never charges a client less than a provider may bill it.
pub struct Reservation {
    ledger: Arc<SharedLedger>,
    clock: SharedClock,
    client: String,
    estimate: CostEstimate,
    config: Arc<Config>,
    open: bool,
}

impl Reservation {
    /// Releases the estimate and charges what the call of `event` cost (see the type).
    pub fn settle(mut self, event: &RequestCompleted) {
        let ceiling = |p: &str, m: &str| {
            self.estimate
                .on(&self.config, p, m)
                .unwrap_or(self.estimate.usd)
        };
        let answer = match (event.cost_usd, &event.provider_used, &event.model_used) {
            (Some(cost), _, _) => cost,
            (None, Some(p), Some(m)) => ceiling(p, m),
            _ => 0.0,
        };
        let failed: f64 = event
            .attempt_errors
            .iter()
            .filter(|a| MAYBE_BILLED.contains(&a.kind.as_str()))
            .map(|a| ceiling(&a.provider, &a.model))
            .sum();
        self.close(answer + failed);
    }

    fn close(&mut self, cost: f64) {
        if std::mem::take(&mut self.open) {
            let now = self.clock.now_ms();
            self.ledger.with(true, |l| {
                l.settle(&self.client, now, self.estimate.usd, cost)
            });
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.close(self.estimate.usd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_ledger::ClientLedger;
    use bkvy_actors::{AttemptError, ManualClock, RoutingMethod};

    const PROVIDERS: &str = r#"{"ollama": {"keys": {"local": {"rate_limits": {
        "cheap": {"rpm": 10, "rpd": 100}, "dear": {"rpm": 10, "rpd": 100}}}},
        "models": {
          "cheap": {"endpoint": "http://127.0.0.1:9/api/chat", "cost_per_1k_input_tokens": 1.0,
                    "cost_per_1k_output_tokens": 2.0, "cost_per_1k_tokens": 1.0, "intelligence_tier": "low"},
          "dear": {"endpoint": "http://127.0.0.1:9/api/chat", "cost_per_1k_input_tokens": 10.0,
                   "cost_per_1k_output_tokens": 20.0, "cost_per_1k_tokens": 10.0, "intelligence_tier": "low"}}}}"#;

    /// Settles one call of `event` and returns what the client was charged.
    fn charged(event: Option<&RequestCompleted>) -> f64 {
        let config = Arc::new(
            crate::config::load_from_strs(PROVIDERS, r#"{"scenarios": {}}"#, &|_| None).unwrap(),
        );
        let client = Client {
            name: "c".into(),
            key_sha256: [0; 32],
            allow: None,
            rpm: None,
            rpd: None,
            daily_budget_usd: Some(100.0),
            monthly_budget_usd: None,
        };
        let ledger = SharedLedger::new(ClientLedger::default());
        let clock: SharedClock = Arc::new(ManualClock::new(1_796_551_200_000));
        // 1,000 tokens in and out at most: $3 on cheap, $30 on dear (the plan's dearest).
        let estimate = CostEstimate {
            input_tokens: 1000.0,
            output_tokens: 1000.0,
            usd: 30.0,
        };
        let r = admit(&ledger, &clock, &client, estimate, config).unwrap();
        match event {
            Some(e) => r.settle(e),
            None => drop(r),
        }
        let view = ledger.with(false, |l| l.view(&client, clock.now_ms()));
        assert_eq!(view.reserved_usd, 0.0);
        view.spent_today_usd
    }

    fn event() -> RequestCompleted {
        RequestCompleted::new(0, "r".into(), "c".into(), RoutingMethod::Intelligence)
    }

    fn attempt(model: &str, kind: &str) -> AttemptError {
        AttemptError {
            provider: "ollama".into(),
            model: model.into(),
            kind: kind.into(),
        }
    }

    #[test]
    fn a_call_is_charged_what_it_cost_or_what_a_provider_may_bill() {
        // Answered with its usage: the real cost.
        let mut e = event();
        e.cost_usd = Some(0.25);
        e.provider_used = Some("ollama".into());
        e.model_used = Some("cheap".into());
        assert_eq!(charged(Some(&e)), 0.25);
        // Answered, cut before its usage: the answering model's ceiling.
        e.cost_usd = None;
        assert_eq!(charged(Some(&e)), 3.0);
        // A timed-out try on dear before it: its ceiling as well; a 500 costs nothing.
        e.attempt_errors = vec![attempt("dear", "timeout"), attempt("dear", "server_error")];
        assert_eq!(charged(Some(&e)), 33.0);
        // Failed everywhere, one answer malformed: that try's ceiling.
        let mut e = event();
        e.attempt_errors = vec![
            attempt("cheap", "malformed_response"),
            attempt("dear", "rate_limited"),
        ];
        assert_eq!(charged(Some(&e)), 3.0);
        // Refused before any call: nothing.
        assert_eq!(charged(Some(&event())), 0.0);
        // Dropped unsettled (the request went away mid-call): the whole estimate.
        assert_eq!(charged(None), 30.0);
    }
}
