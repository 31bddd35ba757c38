//! Carrying out a routing plan: reserve a slot, call upstream, classify the outcome, retry
//! or fail over — all inside the request's hard deadline.
//!
//! This runs in the HTTP handler on its worker (the upstream call needs that worker's
//! `awc::Client`); the key/model actors only grant and release capacity. Failures are
//! classified by status and error body in `providers`, never by message text:
//! 429 pauses the key/model and moves on, or waits the pause out on the same pair when it
//! ends within the wait budget and nothing no dearer fits; 401/403 takes the key out of
//! rotation for all its models; a 400, 413 or 422 refuses the request itself, which every
//! candidate would, so it is answered at once (400, with the upstream's redacted message);
//! other 4xx moves on without retrying; a timeout moves on
//! when another candidate is available; 5xx, connection errors and malformed bodies get a
//! bounded, jittered retry, then the next candidate. A candidate that could start only
//! past the budget is left for one that fits it (see [`execute_with`]).

mod stream;

pub use stream::{execute_stream, Probed};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix::Addr;
use bkvy_actors::key_model::circuit::FailureKind as PairFailure;
use bkvy_actors::{
    Candidate, KeyAuthFailed, KeyModelId, Lease, LeaseGuard, Millis, Outcome, Plan, Rejection,
    RouterActor, SharedClock, Want,
};
use futures::future::LocalBoxFuture;
use serde::Serialize;

use crate::clients::Clients;
use crate::config::{Config, Model, Provider, Secret};
use crate::providers::redact::stored;
use crate::providers::{self, Redactor, UpstreamError};
use crate::types::{ChatMessage, ChatOptions, ChatRequest, ChatResponse, Tier, Tooling, Usage};

/// First retry delay; doubles per attempt, with jitter, capped.
const RETRY_BASE_MS: u64 = 200;
const RETRY_CAP_MS: u64 = 2_000;

/// What the handler hands over for execution.
#[derive(Debug, Clone)]
pub struct Job {
    /// The conversation (shared: each candidate tried takes a reference, not a copy).
    pub messages: Arc<[ChatMessage]>,
    /// Options as sent by the client.
    pub options: ChatOptions,
    /// Tools and answer format (empty for `/llm/*`).
    pub tooling: Arc<Tooling>,
    /// Unix ms after which the client gets an answer no matter what.
    pub deadline: Millis,
    /// Unix ms by which the caller wants its answer (`max_wait_seconds` after arrival;
    /// at most the deadline): a candidate that cannot answer by then is left for one
    /// that can, when there is one.
    pub budget_end: Millis,
}

/// Shared, read-only inputs of execution.
#[derive(Clone)]
pub struct Upstreams {
    /// The validated config (endpoints, secrets, prices).
    pub config: Arc<Config>,
    /// For taking keys out of rotation.
    pub router: Addr<RouterActor>,
    /// Time source.
    pub clock: SharedClock,
    /// Response body limit per upstream call.
    pub max_response_bytes: usize,
    /// The memory every plain call's answer draws from while it is read, decoded and
    /// parsed (`MAX_INFLIGHT_RESPONSE_BYTES`; clones share it, also across reloads).
    pub response_budget: crate::budget::ByteBudget,
    /// Takes the config's secrets out of every upstream error (built from `config`,
    /// replaced with it on a reload).
    pub redactor: Arc<Redactor>,
    /// The last failure of each pair, for answers refused by an open circuit (kept
    /// across reloads with the pairs' circuits).
    pub last_failures: Arc<LastFailures>,
}

/// The last upstream failure of each key/model pair that counts against its health (its
/// message redacted), so that a request refused by the pair's open circuit is told the
/// real failure that opened it, not only "circuit open". One entry per pair ever
/// configured; written on a failure, read on a circuit refusal, never held across an
/// await.
#[derive(Debug, Default)]
pub struct LastFailures(Mutex<HashMap<KeyModelId, (Option<u16>, String)>>);

impl LastFailures {
    /// Keeps the stored form of `message` (cut before any quote: another caller will
    /// read it, and what an upstream quoted of this request is not theirs to see).
    fn record(&self, id: &KeyModelId, status: Option<u16>, message: &str) {
        let message = stored(message);
        let message = message.as_ref();
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get_mut(id) {
            Some(entry) => {
                entry.0 = status;
                entry.1.clear();
                entry.1.push_str(message);
            }
            None => {
                map.insert(id.clone(), (status, message.to_owned()));
            }
        }
    }

    /// The pair's last failure: its HTTP status, if any, and its (redacted) message.
    pub fn get(&self, id: &KeyModelId) -> Option<(Option<u16>, String)> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(id).cloned()
    }
}

/// One failed try, as reported in debug responses and logs.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptRecord {
    /// 1-based position of the candidate in the plan.
    pub alternative: usize,
    /// 1-based try on that candidate.
    pub retry: u32,
    /// Provider name.
    pub provider: String,
    /// Model name.
    pub model: String,
    /// API key id.
    pub api_key_id: String,
    /// Stable label: `rate_limited`, `auth`, `server_error`, `bad_request`,
    /// `malformed_response`, `timeout`, `connection`, or a capacity rejection
    /// ([`Rejection::label`]: `over_budget`, `queue_full`, `would_miss_deadline`, …).
    pub error_type: String,
    /// Short description (provider's own error message, never content or secrets).
    pub error: String,
    /// Upstream HTTP status, when there was one.
    pub status: Option<u16>,
    /// What happened next: `retry`, `wait_and_retry` (a 429 pause within the wait budget,
    /// waited out in the pair's queue), `next_alternative`, `skip_key`, `refuse` (an
    /// upstream refused the request itself: answered 400 without asking another).
    pub strategy: &'static str,
}

/// A successful execution.
#[derive(Debug, Clone)]
pub struct Success {
    /// The combination that answered.
    pub candidate: Arc<Candidate>,
    /// Its answer.
    pub response: ChatResponse,
    /// Measured queue and rate-limit waits of the successful attempt.
    pub lease: Lease,
    /// Upstream time of the successful attempt.
    pub upstream_ms: Millis,
    /// The same in microseconds, from the monotonic clock.
    pub upstream_us: u64,
    /// Real cost of the answer at the model's input/output prices.
    pub cost_usd: f64,
    /// Failed tries before it.
    pub attempts: Vec<AttemptRecord>,
    /// Distinct candidates tried.
    pub alternatives_tried: usize,
    /// Whether thinking was switched off for the call.
    pub thinking_disabled: bool,
}

/// Why execution produced no answer.
#[derive(Debug, Clone)]
pub enum FailureKind {
    /// No candidate would take the request (all refused a slot); retry after this long.
    NoneAvailable {
        /// Milliseconds until a slot is expected, if any candidate said.
        retry_after_ms: Option<Millis>,
    },
    /// Candidates were called and all failed.
    AllFailed,
    /// An upstream refused the request itself (400, 413 or 422: its size, a parameter,
    /// a list too long), which every other candidate would refuse as well; the last
    /// attempt holds its (redacted) message.
    Refused,
    /// The deadline passed.
    Deadline,
}

/// A failed execution.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Which kind.
    pub kind: FailureKind,
    /// Every try.
    pub attempts: Vec<AttemptRecord>,
    /// Distinct candidates tried.
    pub alternatives_tried: usize,
    /// How many candidates the plan had.
    pub candidates: usize,
}

impl Failure {
    /// A message naming the real last error.
    pub fn message(&self) -> String {
        let last = self.attempts.last().map_or_else(
            || "none".to_owned(),
            |a| {
                format!(
                    "{}/{} (key {}): {}",
                    a.provider, a.model, a.api_key_id, a.error
                )
            },
        );
        match self.kind {
            FailureKind::NoneAvailable { .. } => format!(
                "No candidate could take the request: all {} alternatives unavailable. Last: {last}",
                self.candidates
            ),
            FailureKind::AllFailed => format!(
                "All {} alternatives failed after {} attempts. Last error: {last}",
                self.candidates,
                self.attempts.len()
            ),
            FailureKind::Refused => format!(
                "The request was refused upstream, as every alternative would refuse it: {last}"
            ),
            FailureKind::Deadline => format!(
                "Request deadline passed after {} attempts on {} alternatives. Last error: {last}",
                self.attempts.len(),
                self.alternatives_tried
            ),
        }
    }
}

/// Whether thinking is switched off for a call: the caller's explicit choice wins;
/// otherwise off for a `low`-tier model that supports thinking.
pub fn thinking_disabled(options: &ChatOptions, model: &Model) -> bool {
    options
        .disable_thinking
        .unwrap_or(model.tier == Tier::Low && model.supports_thinking)
}

/// USD cost of an answer: input at the input price, output and thinking at the output
/// price (providers bill reasoning tokens as output).
pub fn cost_usd(usage: &Usage, model: &Model) -> f64 {
    (usage.input_tokens as f64 * model.cost_per_1k_input
        + (usage.output_tokens + usage.thinking_tokens) as f64 * model.cost_per_1k_output)
        / 1000.0
}

/// What a failure says about the key/model pair, for its circuit breaker.
pub fn failure_kind(e: &UpstreamError) -> Option<PairFailure> {
    match e {
        UpstreamError::RateLimited { .. } => Some(PairFailure::RateLimited),
        UpstreamError::Auth { .. } => Some(PairFailure::Auth),
        UpstreamError::Server { .. } => Some(PairFailure::Server),
        UpstreamError::Timeout | UpstreamError::Connection { .. } => Some(PairFailure::Timeout),
        UpstreamError::Malformed { .. } => Some(PairFailure::BadResponse),
        // bkvy's own memory limit says nothing of the pair.
        UpstreamError::BadRequest { .. } | UpstreamError::Overloaded => None,
    }
}

/// Whether an upstream refused the request itself, so that every candidate would: a
/// 400, 413 or 422 (too large, a parameter or list out of range). A 404 (an unknown
/// model), an authentication failure (Gemini's bad key is a 400, classified as `Auth`)
/// and a 429 are about the provider or the key, and fail over.
pub fn refuses_the_request(e: &UpstreamError) -> bool {
    matches!(
        e,
        UpstreamError::BadRequest {
            status: 400 | 413 | 422,
            ..
        }
    )
}

fn backoff_ms(retry: u32) -> u64 {
    let base = (RETRY_BASE_MS << retry.min(8)).min(RETRY_CAP_MS);
    // Jitter in [base/2, base].
    base / 2 + rand::random_range(0..=base / 2)
}

fn find<'a>(config: &'a Config, c: &Candidate) -> Option<(&'a Provider, &'a Model)> {
    let id = c.id();
    let p = config.provider(&id.provider)?;
    Some((p, p.model(&id.model)?))
}

/// What one attempt is given: where to call and what to send.
pub struct CallSpec<'a> {
    /// The provider.
    pub provider: &'a Provider,
    /// The model.
    pub model: &'a Model,
    /// The key's secret, if the provider uses one.
    pub secret: Option<&'a Secret>,
    /// The normalised request (thinking already decided).
    pub request: &'a ChatRequest,
    /// Time allowed for this call.
    pub timeout: Duration,
}

/// The attempt that answered, still holding its key/model slot.
pub struct Answered<T> {
    /// The combination that answered.
    pub candidate: Arc<Candidate>,
    /// What the call produced.
    pub value: T,
    /// The slot; release it with the outcome (a stream releases it when it ends).
    pub guard: LeaseGuard,
    /// When the upstream call started (Unix ms).
    pub started_ms: Millis,
    /// When the upstream call started (monotonic).
    pub started_mono: Instant,
    /// The model's configuration (prices, tier).
    pub model: Model,
    /// Failed tries before it.
    pub attempts: Vec<AttemptRecord>,
    /// Distinct candidates tried.
    pub alternatives_tried: usize,
    /// Whether thinking was switched off for the call.
    pub thinking_disabled: bool,
}

/// Runs the plan until one candidate answers, all fail, or the deadline passes.
pub async fn execute(
    up: &Upstreams,
    clients: &Clients,
    plan: &Plan,
    job: &Job,
) -> Result<Success, Failure> {
    let max_body = up.max_response_bytes;
    let answered = execute_with(up, plan, job, |c: CallSpec<'_>| {
        let req = providers::build_request(c.provider, c.model, c.secret, c.request);
        let client = clients.get(c.provider.connect_timeout).clone();
        let (kind, timeout) = (c.provider.kind, c.timeout);
        let budget = up.response_budget.clone();
        Box::pin(
            async move { providers::call(&client, kind, &req, timeout, max_body, &budget).await },
        )
    })
    .await?;
    let upstream_ms = up.clock.now_ms() - answered.started_ms;
    let upstream_us = answered.started_mono.elapsed().as_micros() as u64;
    let lease = *answered.guard.lease();
    answered.guard.finish(Outcome::Success {
        latency_ms: upstream_ms,
    });
    let cost = cost_usd(&answered.value.usage, &answered.model);
    Ok(Success {
        candidate: answered.candidate,
        response: answered.value,
        lease,
        upstream_ms,
        upstream_us,
        cost_usd: cost,
        attempts: answered.attempts,
        alternatives_tried: answered.alternatives_tried,
        thinking_disabled: answered.thinking_disabled,
    })
}

/// How long one attempt on `cand` may take before it is abandoned for the next
/// candidate: a multiple of the pair's recent 95th-percentile latency (its configured
/// `avg_response_time_ms` before any observation), never below the floor, never above
/// the provider's `timeout_seconds` or the time left; and when another candidate follows
/// (`next_total_ms`: its estimated start plus service), short enough to leave it that
/// much time, unless that would go below the floor.
pub fn attempt_timeout(
    settings: &crate::config::Settings,
    provider_timeout: Duration,
    p95_ms: Millis,
    remaining_ms: Millis,
    next_total_ms: Option<Millis>,
) -> Duration {
    let floor = settings.attempt_timeout_floor;
    let adaptive = Duration::from_secs_f64(
        (p95_ms.max(0) as f64 * settings.attempt_timeout_multiplier / 1000.0).min(1e9),
    );
    let mut t = adaptive.max(floor).min(provider_timeout);
    let remaining = Duration::from_millis(remaining_ms.max(0) as u64);
    if let Some(next) = next_total_ms {
        let room = remaining.saturating_sub(Duration::from_millis(next.max(0) as u64));
        if room >= floor {
            t = t.min(room);
        }
    }
    t.min(remaining)
}

/// What the loop knows of the plan's candidates while it runs: which were tried, and
/// fresh estimates of the others (read from what their actors publish, no message).
struct Progress<'p> {
    plan: &'p Plan,
    /// Candidates taken up already (answered, failed or moved on from).
    tried: Vec<bool>,
    /// Keys that failed authentication in this request (rare: usually empty, and never
    /// more than a few, so a list beats hashing two strings per candidate).
    bad_keys: Vec<(&'p str, &'p str)>,
}

impl<'p> Progress<'p> {
    /// Not tried yet, and its key has not failed authentication.
    fn open(&self, i: usize) -> bool {
        !self.tried[i] && self.key_ok(i)
    }

    /// Its key has not failed authentication in this request.
    fn key_ok(&self, i: usize) -> bool {
        let id = self.plan.ordered[i].candidate.id();
        !self
            .bad_keys
            .iter()
            .any(|&(p, k)| p == id.provider && k == id.key_id)
    }

    /// The candidates still to try, in plan order, with their estimated time to answer
    /// (start + service) as they stand at `now`; `None` for one that is unavailable now.
    fn others(
        &self,
        except: usize,
        now: Millis,
    ) -> impl Iterator<Item = (usize, Option<Millis>)> + '_ {
        (0..self.plan.ordered.len())
            .filter(move |&j| j != except && self.open(j))
            .map(move |j| {
                let e = self.plan.ordered[j].candidate.handle.estimate_now(now);
                (j, e.unavailable.is_none().then_some(e.total_ms))
            })
    }

    /// Whether a candidate other than `i` (and, with `max_cost`, no dearer than that)
    /// is estimated to answer by `budget_end`.
    fn other_within_budget(
        &self,
        i: usize,
        now: Millis,
        budget_end: Millis,
        max_cost: Option<f64>,
    ) -> bool {
        self.others(i, now).any(|(j, total)| {
            total.is_some_and(|t| now + t <= budget_end)
                && max_cost.is_none_or(|c| self.plan.ordered[j].candidate.cost_per_1k <= c)
        })
    }

    /// The next candidate to try after `i`: its estimated time to answer.
    fn next_total(&self, i: usize, now: Millis) -> Option<Millis> {
        self.others(i, now).find_map(|(_, total)| total)
    }
}

/// The retry and failover loop shared by plain and streamed calls. `call` makes one
/// upstream attempt; a failure is classified, recorded, reported to the key/model actor
/// and retried, waited out or failed over; the first success is returned with its slot
/// still held.
///
/// Re-planning: a candidate whose real answer (queued past a start, paused, refused)
/// would put the request past its wait budget while another candidate is estimated
/// within it is left at once (`over_budget`); only when every candidate is past the
/// budget does the request go back and wait for the one that can start first. A 429
/// whose pause ends within the budget is waited out in that pair's queue unless another
/// candidate, no dearer, is estimated within the budget.
pub async fn execute_with<T, F>(
    up: &Upstreams,
    plan: &Plan,
    job: &Job,
    mut call: F,
) -> Result<Answered<T>, Failure>
where
    F: FnMut(CallSpec<'_>) -> LocalBoxFuture<'static, Result<T, UpstreamError>>,
{
    let settings = &up.config.settings;
    let mut attempts: Vec<AttemptRecord> = Vec::new();
    let mut progress = Progress {
        plan,
        tried: vec![false; plan.ordered.len()],
        bad_keys: Vec::new(),
    };
    // Candidates left because they could start only past the budget: (index, when).
    let mut over_budget: Vec<(usize, Millis)> = Vec::new();
    let mut past_budget = false;
    let mut alternatives_tried = 0;
    let mut soonest_available: Option<Millis> = None;
    let mut failed_upstream = false;
    let now = || up.clock.now_ms();
    let fail = |kind, attempts, alternatives_tried| Failure {
        kind,
        attempts,
        alternatives_tried,
        candidates: plan.ordered.len(),
    };
    let note_available = |soonest: &mut Option<Millis>, ms: Millis| {
        *soonest = Some(soonest.map_or(ms, |s: Millis| s.min(ms)));
    };

    loop {
        // The next candidate: in plan order; once all are taken up, the one left for
        // being past the budget that can start first, waited for this time.
        let next = (0..plan.ordered.len()).find(|&i| progress.open(i));
        let rank = match next {
            Some(i) => i,
            None => {
                over_budget.retain(|&(i, _)| progress.key_ok(i));
                let Some(pos) = (0..over_budget.len()).min_by_key(|&k| over_budget[k].1) else {
                    break;
                };
                past_budget = true;
                over_budget.swap_remove(pos).0
            }
        };
        progress.tried[rank] = true;
        let planned = &plan.ordered[rank];
        let cand = &planned.candidate;
        let id = cand.id();
        let Some((provider, model)) = find(&up.config, cand) else {
            continue;
        };
        let secret = provider.key(&id.key_id).and_then(|k| k.secret.as_ref());
        let disable = thinking_disabled(&job.options, model);
        let request = ChatRequest {
            messages: job.messages.clone(),
            options: job.options.clone(),
            disable_thinking: disable,
            tooling: job.tooling.clone(),
        };
        if !past_budget {
            alternatives_tried += 1;
        }
        let mut retry = 0;
        // After a 429 the actor may not have taken the pause in yet: ask it.
        let mut fast = true;
        loop {
            retry += 1;
            let record = |error_type: &str, error: String, status, strategy| AttemptRecord {
                alternative: rank + 1,
                retry,
                provider: id.provider.clone(),
                model: id.model.clone(),
                api_key_id: id.key_id.clone(),
                error_type: error_type.to_owned(),
                error,
                status,
                strategy,
            };
            let t = now();
            if t >= job.deadline {
                return Err(fail(FailureKind::Deadline, attempts, alternatives_tried));
            }
            // Past the budget only when no other candidate is estimated within it, and
            // never later than a candidate already left for the budget could start.
            let latest_start = if past_budget {
                None
            } else {
                let latest = job.budget_end - cand.handle.estimate_now(t).service_ms;
                let earliest_left = over_budget.iter().map(|&(_, at)| at).min();
                if progress.other_within_budget(rank, t, job.budget_end, None) {
                    Some(latest)
                } else {
                    earliest_left.map(|e| latest.max(e))
                }
            };
            let want = Want {
                deadline: job.deadline,
                latest_start,
                fast,
            };
            let mut guard = match cand.handle.acquire_with(want, now).await {
                Ok(g) => g,
                Err(rejection) => {
                    let t = now();
                    let available = rejection.available_in_ms();
                    if let Some(ms) = available {
                        note_available(&mut soonest_available, ms);
                    }
                    // Refused for the budget (at admission, or handed back from the queue
                    // by a pause): worth waiting for if nothing else answers in time.
                    let for_budget = matches!(
                        rejection,
                        Rejection::OverBudget { .. } | Rejection::WouldMissDeadline { .. }
                    ) && available.is_some_and(|ms| t + ms < job.deadline);
                    if for_budget && !past_budget {
                        over_budget.push((rank, t + available.unwrap_or(0)));
                    }
                    // An open circuit names the real failure that opened it.
                    let (status, error) = match (&rejection, up.last_failures.get(id)) {
                        (Rejection::CircuitOpen { .. }, Some((status, last))) => {
                            (status, format!("{rejection}; it opened on: {last}"))
                        }
                        _ => (None, rejection.to_string()),
                    };
                    attempts.push(record(rejection.label(), error, status, "next_alternative"));
                    break;
                }
            };
            let t = now();
            let timeout = attempt_timeout(
                settings,
                provider.call_timeout,
                cand.handle.latency_p95_ms(),
                job.deadline - t,
                progress.next_total(rank, t),
            );
            // A limit set by the request's own deadline is the caller's choice: running
            // into it says nothing about the pair's health.
            let bounded_by_caller =
                timeout >= Duration::from_millis((job.deadline - t).max(0) as u64);
            let started_ms = t;
            let started_mono = Instant::now();
            guard.mark_sent(started_ms);
            let result = call(CallSpec {
                provider,
                model,
                secret,
                request: &request,
                timeout,
            })
            .await;
            let upstream_ms = now() - started_ms;
            let err = match result {
                Ok(value) => {
                    return Ok(Answered {
                        candidate: cand.clone(),
                        value,
                        guard,
                        started_ms,
                        started_mono,
                        model: model.clone(),
                        attempts,
                        alternatives_tried,
                        thinking_disabled: disable,
                    });
                }
                // Upstream text enters here: no secret goes further.
                Err(err) => up.redactor.error(err),
            };
            let status = err.status();
            let message = err.to_string();
            let t = now();
            let deadline_hit = matches!(err, UpstreamError::Timeout) && t >= job.deadline;
            let strategy = match &err {
                UpstreamError::RateLimited { retry_after, .. } => {
                    up.last_failures.record(id, status, &message);
                    let retry_after_ms = retry_after.map(|d| d.as_millis() as Millis);
                    guard.finish(Outcome::RateLimited { retry_after_ms });
                    note_available(&mut soonest_available, retry_after_ms.unwrap_or(1_000));
                    // A pause that ends within the budget is waited out here, unless a
                    // candidate no dearer is estimated to answer within the budget.
                    let wait_out = retry_after_ms.is_some_and(|ms| {
                        let end = t + ms;
                        !past_budget
                            && end <= job.budget_end
                            && end < job.deadline
                            && retry < settings.max_attempts_per_candidate
                            && !progress.other_within_budget(
                                rank,
                                t,
                                job.budget_end,
                                Some(cand.cost_per_1k),
                            )
                    });
                    if wait_out {
                        fast = false;
                        "wait_and_retry"
                    } else {
                        "next_alternative"
                    }
                }
                UpstreamError::Auth { .. } => {
                    failed_upstream = true;
                    up.last_failures.record(id, status, &message);
                    guard.finish(Outcome::AuthFailed);
                    progress.bad_keys.push((&id.provider, &id.key_id));
                    up.router.do_send(KeyAuthFailed {
                        provider: id.provider.clone(),
                        key_id: id.key_id.clone(),
                        message: stored(&message).into_owned(),
                    });
                    "skip_key"
                }
                e if refuses_the_request(e) => {
                    // Not the pair's fault: released as a failure that says nothing of
                    // its health, and no other candidate is asked.
                    guard.finish(Outcome::Failed {
                        latency_ms: upstream_ms,
                        kind: None,
                    });
                    "refuse"
                }
                e => {
                    failed_upstream = true;
                    let caller_timeout = matches!(e, UpstreamError::Timeout) && bounded_by_caller;
                    let kind = if caller_timeout {
                        None
                    } else {
                        failure_kind(e)
                    };
                    if kind.is_some() {
                        up.last_failures.record(id, status, &message);
                    }
                    guard.finish(Outcome::Failed {
                        latency_ms: upstream_ms,
                        kind,
                    });
                    let time_left = job.deadline - t;
                    // An attempt abandoned for taking too long moves on when another
                    // candidate can be tried: the pair is likely hung.
                    let timed_out_with_others = matches!(e, UpstreamError::Timeout)
                        && progress.others(rank, t).any(|(_, total)| total.is_some());
                    if e.retryable()
                        && !timed_out_with_others
                        && retry < settings.max_attempts_per_candidate
                        && time_left > RETRY_BASE_MS as Millis
                    {
                        "retry"
                    } else {
                        "next_alternative"
                    }
                }
            };
            log::info!(
                "upstream {}/{} (key {}) failed: {} [{}]",
                id.provider,
                id.model,
                id.key_id,
                stored(&message),
                strategy
            );
            attempts.push(record(err.kind(), message, status, strategy));
            if deadline_hit {
                return Err(fail(FailureKind::Deadline, attempts, alternatives_tried));
            }
            match strategy {
                "refuse" => return Err(fail(FailureKind::Refused, attempts, alternatives_tried)),
                "retry" => {
                    let left = (job.deadline - now()).max(0) as u64;
                    let pause = backoff_ms(retry - 1).min(left / 2);
                    actix_web::rt::time::sleep(Duration::from_millis(pause)).await;
                }
                // The pair's queue holds the request until the pause ends.
                "wait_and_retry" => {}
                _ => break,
            }
        }
    }
    let kind = if now() >= job.deadline {
        FailureKind::Deadline
    } else if failed_upstream {
        FailureKind::AllFailed
    } else {
        // Nothing failed: every candidate refused a slot or asked to wait (429) past
        // what the request allows. The caller may retry after the soonest of them.
        FailureKind::NoneAvailable {
            retry_after_ms: soonest_available,
        }
    };
    Err(fail(kind, attempts, alternatives_tried))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(tier: Tier, thinking: bool) -> Model {
        Model {
            name: "m".into(),
            endpoint: "http://x".into(),
            cost_per_1k_input: 0.001,
            cost_per_1k_output: 0.004,
            cost_per_1k_tokens: 0.002,
            tier,
            supports_thinking: thinking,
            avg_response_time_ms: 100,
            version: None,
        }
    }

    #[test]
    fn thinking_is_off_for_low_thinking_models_unless_the_caller_says_otherwise() {
        let none = ChatOptions::default();
        assert!(thinking_disabled(&none, &model(Tier::Low, true)));
        assert!(!thinking_disabled(&none, &model(Tier::Low, false)));
        assert!(!thinking_disabled(&none, &model(Tier::High, true)));
        let keep = ChatOptions {
            disable_thinking: Some(false),
            ..ChatOptions::default()
        };
        assert!(!thinking_disabled(&keep, &model(Tier::Low, true)));
        let off = ChatOptions {
            disable_thinking: Some(true),
            ..ChatOptions::default()
        };
        assert!(thinking_disabled(&off, &model(Tier::High, true)));
    }

    #[test]
    fn cost_uses_separate_input_and_output_prices() {
        let usage = Usage {
            input_tokens: 1000,
            output_tokens: 500,
            thinking_tokens: 500,
        };
        let c = cost_usd(&usage, &model(Tier::Low, false));
        assert!((c - (0.001 + 0.004)).abs() < 1e-12);
    }

    #[test]
    fn the_attempt_timeout_follows_latency_within_floor_and_caps() {
        let settings = crate::config::Settings {
            attempt_timeout_multiplier: 4.0,
            attempt_timeout_floor: Duration::from_secs(2),
            ..crate::config::Settings::default()
        };
        let provider = Duration::from_secs(60);
        let t = |p95, remaining, next| attempt_timeout(&settings, provider, p95, remaining, next);
        // Seeded or observed p95 of 300 ms: the floor.
        assert_eq!(t(300, 100_000, None), Duration::from_secs(2));
        // 4 × 5 s.
        assert_eq!(t(5_000, 100_000, None), Duration::from_secs(20));
        // Never above the provider's timeout, nor the time left.
        assert_eq!(t(50_000, 100_000, None), provider);
        assert_eq!(t(5_000, 7_000, None), Duration::from_secs(7));
        // Leaves the next candidate its estimated time…
        assert_eq!(t(5_000, 30_000, Some(15_000)), Duration::from_secs(15));
        // …unless that would go below the floor.
        assert_eq!(t(5_000, 16_000, Some(15_000)), Duration::from_secs(16));
    }

    #[test]
    fn backoff_is_jittered_and_capped() {
        for retry in 0..12 {
            let b = backoff_ms(retry);
            let base = (RETRY_BASE_MS << retry.min(8)).min(RETRY_CAP_MS);
            assert!(b >= base / 2 && b <= base);
        }
    }

    #[test]
    fn backoff_jitter_spreads_over_the_upper_half_of_the_base() {
        // 200 draws from 100..=200: all on one side of 150 has a chance below 2^-190.
        let draws: Vec<u64> = (0..200).map(|_| backoff_ms(0)).collect();
        assert!(draws.iter().any(|&b| b < 150), "{draws:?}");
        assert!(draws.iter().any(|&b| b > 150), "{draws:?}");
    }
}
