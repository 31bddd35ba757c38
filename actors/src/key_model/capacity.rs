//! Everything one key/model pair knows about its capacity, as a plain struct.
//!
//! [`KeyModelCapacity`] combines the RPM/RPD window, the optional concurrency cap, the
//! bounded FIFO of waiters and the moving average of service times. The actor wrapping it
//! only turns messages into calls on it and delivers what it returns, so every rule here
//! is unit-tested without actix.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use super::permits::{FastGrants, PermitLedger};
use crate::clock::Millis;
use crate::key_model::circuit::{Blocked, Circuit, CircuitConfig, CircuitState, FailureKind};
use crate::key_model::rate_window::{Blocker, RateWindow, Wait};
use crate::key_model::waiters::{QueueFull, Waiter, WaiterHandle, WaiterQueue};

/// Weight of a new observation in the service-time average.
const SERVICE_EMA_ALPHA: f64 = 0.2;
/// Pause after a 429 that names no Retry-After; doubles per consecutive 429, capped.
const DEFAULT_PAUSE_MS: Millis = 1_000;
const MAX_DEFAULT_PAUSE_MS: Millis = 60_000;

/// The `lease_id` of a lease taken from the permits granted ahead (no message); its
/// `Release` carries `granted_at`, which the actor records as the dispatch time.
pub const FAST_LEASE: u64 = 0;

/// Permission to make one upstream call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Lease {
    /// Identifies the lease when it is released.
    pub lease_id: u64,
    /// When the call was allowed to go.
    pub granted_at: Millis,
    /// Time spent queued behind other requests or the concurrency cap.
    pub queue_wait_ms: Millis,
    /// Time spent at the head of the queue held back by RPM, RPD or a 429 pause.
    pub rate_limit_wait_ms: Millis,
    /// A half-open circuit's trial call.
    pub trial: bool,
}

/// Why a request cannot have (or keep waiting for) this key/model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Rejection {
    /// Taken out of rotation (authentication failed).
    #[error("key disabled: {message}")]
    Disabled {
        /// Why.
        message: String,
    },
    /// The FIFO is full.
    #[error("queue full ({capacity} waiting), room expected in {available_in_ms} ms")]
    QueueFull {
        /// The bound.
        capacity: usize,
        /// When the head of the queue is expected to go, making room.
        available_in_ms: Millis,
    },
    /// The earliest start lies beyond the request's wait budget (`max_wait_seconds`)
    /// while another candidate was estimated within it: the request moves on instead of
    /// queueing here.
    #[error("earliest start in {available_in_ms} ms ({blocker}) is past the wait budget")]
    OverBudget {
        /// Milliseconds until a call could start.
        available_in_ms: Millis,
        /// What holds it back (`rpm`, `rpd`, `paused`, `concurrency`).
        blocker: &'static str,
    },
    /// The earliest start lies beyond the request's deadline.
    #[error("earliest start in {available_in_ms} ms ({blocker}) is past the request deadline")]
    WouldMissDeadline {
        /// Milliseconds until a call could start.
        available_in_ms: Millis,
        /// What holds it back (`rpm`, `rpd`, `paused`, `concurrency`).
        blocker: &'static str,
    },
    /// The deadline passed while waiting.
    #[error("deadline passed while queued")]
    DeadlinePassed,
    /// The actor did not answer in time (mailbox full or gone).
    #[error("key/model actor unavailable")]
    ActorUnavailable,
    /// The circuit breaker is open.
    #[error("circuit open ({kind}){}", until_text(*.available_in_ms))]
    CircuitOpen {
        /// Milliseconds until it admits a trial (`None`: only after a reset).
        available_in_ms: Option<Millis>,
        /// The failure kind that opened it.
        kind: &'static str,
    },
    /// The circuit is half-open and its trial calls are in flight.
    #[error("circuit half-open, trial in progress")]
    TrialInProgress,
    /// bkvy is shutting down and takes no new upstream calls.
    #[error("shutting down")]
    ShuttingDown,
}

impl Rejection {
    /// Every [`label`](Self::label), for metrics and docs.
    pub const LABELS: [&'static str; 9] = [
        "shutting_down",
        "queue_full",
        "over_budget",
        "would_miss_deadline",
        "deadline_passed",
        "key_disabled",
        "actor_unavailable",
        "circuit_open",
        "circuit_trial_in_progress",
    ];

    /// A stable label for metrics, logs and debug answers.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Disabled { .. } => "key_disabled",
            Self::QueueFull { .. } => "queue_full",
            Self::OverBudget { .. } => "over_budget",
            Self::WouldMissDeadline { .. } => "would_miss_deadline",
            Self::DeadlinePassed => "deadline_passed",
            Self::ActorUnavailable => "actor_unavailable",
            Self::CircuitOpen { .. } => "circuit_open",
            Self::TrialInProgress => "circuit_trial_in_progress",
            Self::ShuttingDown => "shutting_down",
        }
    }
}

fn until_text(ms: Option<Millis>) -> String {
    match ms {
        Some(ms) => format!(", may return in {ms} ms"),
        None => ", until reset".to_owned(),
    }
}

impl Rejection {
    /// Milliseconds until this pair could take a request, when known.
    pub fn available_in_ms(&self) -> Option<Millis> {
        match self {
            Self::WouldMissDeadline {
                available_in_ms, ..
            }
            | Self::OverBudget {
                available_in_ms, ..
            } => Some(*available_in_ms),
            Self::CircuitOpen {
                available_in_ms, ..
            } => *available_in_ms,
            Self::QueueFull {
                available_in_ms, ..
            } => Some(*available_in_ms),
            _ => None,
        }
    }
}

/// How a leased call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Answered.
    Success {
        /// Upstream latency.
        latency_ms: Millis,
    },
    /// Upstream answered 429.
    RateLimited {
        /// How long upstream asked us to wait, if it said.
        retry_after_ms: Option<Millis>,
    },
    /// Upstream failed otherwise (5xx, timeout, connection, malformed, 4xx).
    Failed {
        /// Upstream latency.
        latency_ms: Millis,
        /// What failed, for the circuit breaker; `None` for failures that say nothing about
        /// the pair (the request itself was rejected, e.g. 400).
        kind: Option<FailureKind>,
    },
    /// Upstream rejected the key (401/403).
    AuthFailed,
    /// The call never left bkvy: the dispatch is taken back.
    NotSent,
    /// The call was sent but its requester went away before the outcome was known.
    Abandoned,
}

/// What a new request would face here.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WaitEstimate {
    /// Wait imposed by RPM, RPD or a pause on a request arriving at an empty queue.
    pub rate_limit_wait_ms: Millis,
    /// Extra wait caused by requests already queued or in flight.
    pub queue_wait_ms: Millis,
    /// Expected upstream time (moving average of observed latencies).
    pub service_ms: Millis,
    /// All three together: time until this request could be answered.
    pub total_ms: Millis,
    /// Waiters in the queue.
    pub queue_len: usize,
    /// Calls in flight.
    pub in_flight: u32,
    /// What holds the next call back.
    pub blocker: &'static str,
    /// Set when no request can be admitted at all.
    pub unavailable: Option<Rejection>,
}

/// What `admit` decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Go now.
    Granted(Lease),
    /// Join the queue; the estimate says it can start in time.
    Enqueue,
    /// Cannot be served in time or at all.
    Rejected(Rejection),
}

/// What a pump of the queue produced.
#[derive(Debug)]
pub struct Pump<T> {
    /// Waiters that may go now, with their leases.
    pub granted: Vec<(T, Lease)>,
    /// Waiters whose deadline passed.
    pub expired: Vec<T>,
    /// Waiters refused because the circuit opened, with the reason.
    pub rejected: Vec<(T, Rejection)>,
    /// When to pump again because the head waits for a rate limit (ms from now).
    pub wake_in: Option<Millis>,
}

/// Live numbers for status endpoints and metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CapacityStatus {
    /// Limit per minute.
    pub rpm_limit: u32,
    /// Limit per day.
    pub rpd_limit: u32,
    /// Calls in the current 60-second window.
    pub requests_this_minute: u32,
    /// Calls today.
    pub requests_today: u32,
    /// When the oldest call leaves the 60-second window.
    pub minute_reset_at: Option<Millis>,
    /// When the day counter resets.
    pub day_reset_at: Millis,
    /// End of a 429 pause in force.
    pub paused_until: Option<Millis>,
    /// Time of the latest dispatch.
    pub last_request_at: Option<Millis>,
    /// What holds the next call back now.
    pub blocker: &'static str,
    /// Wait before the next call could go (empty queue).
    pub rate_limit_wait_ms: Millis,
    /// Waiters.
    pub queue_length: usize,
    /// Queue bound.
    pub max_queue: usize,
    /// Calls in flight.
    pub in_flight: u32,
    /// Concurrency cap.
    pub max_concurrent: Option<u32>,
    /// How long the head of the queue has waited.
    pub oldest_wait_ms: Millis,
    /// Estimated wait for a request arriving now (before service).
    pub estimated_queue_wait_ms: Millis,
    /// Service-time average.
    pub service_ms: Millis,
    /// Set when taken out of rotation.
    pub disabled: Option<String>,
    /// Calls granted since start.
    pub dispatched_total: u64,
    /// 429 answers since start.
    pub rate_limited_total: u64,
    /// Circuit breaker state (`closed`, `open`, `half_open`, `auth_open`).
    pub circuit_state: &'static str,
    /// When an open circuit admits a trial.
    pub circuit_open_until: Option<Millis>,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// Failures in the circuit's sliding window.
    pub window_failures: usize,
    /// The failure kind that last opened the circuit.
    pub last_failure_kind: Option<&'static str>,
    /// Times the circuit opened since start.
    pub circuit_opened_total: u64,
    /// The last health probe of the key, if probes run.
    pub probe: Option<ProbeRecord>,
}

/// What the actor remembers of a lease granted through `Reserve` until its release.
#[derive(Debug, Clone, Copy)]
struct LeaseRecord {
    /// When it was granted (recorded in the window as the dispatch until the release says
    /// when the call really left).
    dispatched_at: Millis,
    /// A half-open circuit's trial.
    trial: bool,
}

/// The most recent upstream latencies of successful calls, for the attempt timeout's
/// percentile (see [`KeyModelCapacity::latency_p95`]).
#[derive(Debug, Clone)]
struct LatencyRing {
    samples: [Millis; LATENCY_SAMPLES],
    len: usize,
    next: usize,
}

/// How many recent latencies the percentile is taken over.
const LATENCY_SAMPLES: usize = 32;

impl LatencyRing {
    fn new() -> Self {
        Self {
            samples: [0; LATENCY_SAMPLES],
            len: 0,
            next: 0,
        }
    }

    fn push(&mut self, ms: Millis) {
        self.samples[self.next] = ms.max(0);
        self.next = (self.next + 1) % LATENCY_SAMPLES;
        self.len = (self.len + 1).min(LATENCY_SAMPLES);
    }

    /// The 95th percentile (nearest rank) of the samples, `None` before the first.
    fn p95(&self) -> Option<Millis> {
        if self.len == 0 {
            return None;
        }
        let mut v = self.samples[..self.len].to_vec();
        v.sort_unstable();
        let rank = (self.len * 95).div_ceil(100).max(1);
        Some(v[rank - 1])
    }
}

enum Block {
    Ready,
    Rate(Wait),
    Concurrency,
}

/// The capacity state of one key/model pair.
#[derive(Debug)]
pub struct KeyModelCapacity<T> {
    /// RPM/RPD window and 429 pause.
    window: RateWindow,
    /// The pair's circuit breaker.
    circuit: Circuit,
    /// Calls allowed in flight at once (`max_concurrent`), if capped.
    max_concurrent: Option<u32>,
    /// Calls in flight on leases granted through `admit`/`pump` (those on permits granted
    /// ahead and not yet reported are [`PermitLedger::unreported`]).
    in_flight: u32,
    /// Leases granted through `admit`/`pump` and not yet released, by lease id.
    leases: HashMap<u64, LeaseRecord>,
    /// The next lease id (never [`FAST_LEASE`]).
    next_lease: u64,
    /// Requests waiting for a slot, in arrival order.
    queue: WaiterQueue<T>,
    /// Moving average of successful calls' latency, seeded by `avg_response_time_ms`.
    service_ms: f64,
    /// Recent latencies of successful calls (the attempt timeout's percentile).
    latencies: LatencyRing,
    /// The configured `avg_response_time_ms`, the latency assumed before any observation.
    service_seed_ms: Millis,
    /// Why the pair is out of rotation (authentication failed), if it is.
    disabled: Option<String>,
    /// Shutdown has begun: nothing more is admitted.
    draining: bool,
    /// The last health probe of the key.
    probe: Option<ProbeRecord>,
    /// 429s in a row without a Retry-After-free success (doubles the default pause).
    consecutive_429: u32,
    /// Calls dispatched since start (status).
    dispatched_total: u64,
    /// 429 answers since start (status).
    rate_limited_total: u64,
    /// The permits granted ahead (see [`super::permits`]).
    permits: PermitLedger,
}

impl<T: WaiterHandle> KeyModelCapacity<T> {
    /// New state: `service_seed_ms` seeds the latency average (the configured
    /// `avg_response_time_ms`).
    pub fn new(
        window: RateWindow,
        circuit: CircuitConfig,
        max_concurrent: Option<u32>,
        max_queue: usize,
        service_seed_ms: u64,
    ) -> Self {
        Self {
            window,
            circuit: Circuit::new(circuit),
            max_concurrent: max_concurrent.map(|c| c.max(1)),
            in_flight: 0,
            leases: HashMap::new(),
            next_lease: 1,
            queue: WaiterQueue::new(max_queue),
            service_ms: service_seed_ms as f64,
            latencies: LatencyRing::new(),
            service_seed_ms: service_seed_ms as Millis,
            disabled: None,
            draining: false,
            probe: None,
            consecutive_429: 0,
            dispatched_total: 0,
            rate_limited_total: 0,
            permits: PermitLedger::default(),
        }
    }

    /// Uses `fast` (shared with the handles) for the permits granted ahead.
    #[must_use]
    pub fn with_fast_grants(mut self, fast: Arc<FastGrants>) -> Self {
        self.permits = PermitLedger::new(fast);
        self
    }

    /// The permits granted ahead, for handlers to take.
    pub fn fast_grants(&self) -> &Arc<FastGrants> {
        self.permits.shared()
    }

    /// How many calls could start at `now` on top of those recorded (ignoring the permits
    /// granted ahead): RPM, RPD, pause and concurrency room.
    fn recorded_room(&mut self, now: Millis) -> u64 {
        let rate = self.window.room(now);
        match self.max_concurrent {
            Some(c) => rate.min(u64::from(c.saturating_sub(self.in_flight))),
            None => rate,
        }
    }

    /// Leaves in the shared counter as many permits as calls could start now, after every
    /// change of state (step 1 of [the permit protocol](super::permits), which says why
    /// the limits hold). None while the queue is not empty (waiters go first, in order),
    /// the circuit is not closed (half-open trials are granted one by one by `admit`),
    /// or the pair is disabled or draining.
    pub fn grant_ahead(&mut self, now: Millis) {
        let open = self.draining
            || self.disabled.is_some()
            || !self.queue.is_empty()
            || self.circuit.state(now) != CircuitState::Closed;
        let room = if open { 0 } else { self.recorded_room(now) };
        self.permits.grant(room);
    }

    /// The rate window (status, persistence).
    pub fn window_mut(&mut self) -> &mut RateWindow {
        &mut self.window
    }

    /// The circuit breaker (status, persistence).
    pub fn circuit_mut(&mut self) -> &mut Circuit {
        &mut self.circuit
    }

    /// What survives a restart: rate counts, the 429 pause and the circuit. Calls granted
    /// ahead and not yet reported count as dispatched at `now`.
    pub fn snapshot(
        &self,
        now: Millis,
    ) -> (
        crate::key_model::rate_window::RateSnapshot,
        crate::key_model::circuit::CircuitSnapshot,
    ) {
        let mut rate = self.window.snapshot();
        let unreported = self.permits.unreported();
        if unreported > 0 {
            let at = rate
                .recent_runs
                .last()
                .map_or(now, |&(last, _)| last.max(now));
            crate::key_model::rate_window::push_run(&mut rate.recent_runs, at, unreported as u32);
            rate.day_count = rate.day_count.saturating_add(unreported as u32);
        }
        (rate, self.circuit.snapshot())
    }

    /// Restores what [`snapshot`](Self::snapshot) saved. An auth-opened circuit is not
    /// restored: a restart re-reads the keys, like a config reload.
    pub fn restore(
        &mut self,
        rate: &crate::key_model::rate_window::RateSnapshot,
        circuit: &crate::key_model::circuit::CircuitSnapshot,
        now: Millis,
    ) {
        self.window.restore(rate, now);
        if circuit.state != CircuitState::AuthOpen {
            self.circuit.restore(circuit);
        }
    }

    fn circuit_rejection(&mut self, now: Millis) -> Option<Rejection> {
        match self.circuit.check(now) {
            Ok(()) => None,
            Err(Blocked::Open { until }) => Some(Rejection::CircuitOpen {
                available_in_ms: until.map(|u| (u - now).max(0)),
                kind: self
                    .circuit
                    .last_kind()
                    .map_or("unknown", FailureKind::as_str),
            }),
            Err(Blocked::TrialInProgress) => Some(Rejection::TrialInProgress),
        }
    }

    /// Applies new limits from a reloaded config.
    ///
    /// A reload re-reads the keys, so a key taken out of rotation for failing
    /// authentication gets another chance; counts, pauses and other circuit state stay.
    pub fn reconfigure(
        &mut self,
        rpm: u32,
        rpd: u32,
        max_concurrent: Option<u32>,
        max_queue: usize,
        circuit: CircuitConfig,
    ) {
        self.window.set_limits(rpm, rpd);
        self.max_concurrent = max_concurrent.map(|c| c.max(1));
        self.queue.set_capacity(max_queue);
        self.circuit.set_config(circuit);
    }

    /// Puts a key that failed authentication back into rotation: a reload gave it a new
    /// value. (A reload that keeps the value keeps it out, as a reset or a restart would
    /// be needed for the same value to be tried again.)
    pub fn reenable(&mut self) {
        self.disabled = None;
        if self.circuit.state(0) == CircuitState::AuthOpen {
            self.circuit.reset();
        }
    }

    fn block(&mut self, now: Millis) -> Block {
        let unreported = self.permits.unreported();
        let wait = self.window.wait_with(now, unreported);
        if wait.ms > 0 {
            return Block::Rate(wait);
        }
        match self.max_concurrent {
            Some(c) if u64::from(self.in_flight) + unreported >= u64::from(c) => Block::Concurrency,
            _ => Block::Ready,
        }
    }

    /// Milliseconds until a request with `n_ahead` waiters before it could start.
    ///
    /// Calls granted ahead and not yet reported count as dispatched at `now` and in flight.
    fn start_wait(&mut self, now: Millis, n_ahead: usize) -> (Millis, &'static str) {
        let unreported = self.permits.unreported();
        self.start_wait_with(now, n_ahead, unreported)
    }

    /// [`start_wait`](Self::start_wait) with `unreported` calls counted as dispatched at
    /// `now` and in flight.
    fn start_wait_with(
        &mut self,
        now: Millis,
        n_ahead: usize,
        unreported: u64,
    ) -> (Millis, &'static str) {
        let rate = self
            .window
            .start_after(now, n_ahead.saturating_add(unreported as usize));
        let conc = match self.max_concurrent {
            Some(c) => {
                let busy = u64::from(self.in_flight) + unreported + n_ahead as u64 + 1;
                let c = u64::from(c);
                if busy <= c {
                    0
                } else {
                    ((busy - c).div_ceil(c) as f64 * self.service_ms) as Millis
                }
            }
            None => 0,
        };
        if conc > rate {
            (conc, "concurrency")
        } else {
            (
                rate,
                self.window.wait_with(now, unreported).blocker.as_str(),
            )
        }
    }

    fn dispatch(&mut self, now: Millis, trial: bool) -> u64 {
        self.window.record(now);
        self.in_flight += 1;
        self.dispatched_total += 1;
        let id = self.next_lease;
        self.next_lease += 1;
        self.leases.insert(
            id,
            LeaseRecord {
                dispatched_at: now,
                trial,
            },
        );
        id
    }

    /// Decides what to do with a new request whose deadline is `deadline`. With
    /// `latest_start`, a request that could not start by then is refused
    /// ([`Rejection::OverBudget`]) instead of queued: it has a better candidate elsewhere.
    pub fn admit(
        &mut self,
        now: Millis,
        deadline: Millis,
        latest_start: Option<Millis>,
    ) -> Admission {
        self.permits.revoke();
        if self.draining {
            return Admission::Rejected(Rejection::ShuttingDown);
        }
        if let Some(message) = &self.disabled {
            return Admission::Rejected(Rejection::Disabled {
                message: message.clone(),
            });
        }
        if let Some(r) = self.circuit_rejection(now) {
            return Admission::Rejected(r);
        }
        if self.queue.is_empty() && matches!(self.block(now), Block::Ready) {
            let trial = self.circuit.admit(now).unwrap_or(false);
            let lease_id = self.dispatch(now, trial);
            return Admission::Granted(Lease {
                lease_id,
                granted_at: now,
                queue_wait_ms: 0,
                rate_limit_wait_ms: 0,
                trial,
            });
        }
        let (start, blocker) = self.start_wait(now, self.queue.len());
        if now + start > deadline {
            return Admission::Rejected(Rejection::WouldMissDeadline {
                available_in_ms: start,
                blocker,
            });
        }
        if latest_start.is_some_and(|latest| now + start > latest) {
            return Admission::Rejected(Rejection::OverBudget {
                available_in_ms: start,
                blocker,
            });
        }
        if self.queue.len() >= self.queue.capacity() {
            return Admission::Rejected(self.queue_full(now));
        }
        Admission::Enqueue
    }

    /// Records a health probe of the key. A success lets an open circuit try at once.
    pub fn record_probe(&mut self, now: Millis, ok: bool, error: Option<String>) {
        if ok {
            self.circuit.probe_succeeded(now);
        }
        self.probe = Some(ProbeRecord { ok, at: now, error });
    }

    /// The rejection for a full queue, with the time until its head is expected to go.
    pub fn queue_full(&mut self, now: Millis) -> Rejection {
        Rejection::QueueFull {
            capacity: self.queue.capacity(),
            available_in_ms: self.start_wait(now, 0).0.max(1),
        }
    }

    /// Queues a request that `admit` said may wait; past `latest_start` (if given) it
    /// would rather leave than wait (a 429 pause reaching past it hands it back).
    pub fn enqueue(
        &mut self,
        now: Millis,
        deadline: Millis,
        latest_start: Option<Millis>,
        handle: T,
    ) -> Result<u64, QueueFull> {
        self.queue.push(now, deadline, latest_start, handle)
    }

    /// Removes a waiter that gave up.
    pub fn cancel(&mut self, waiter_id: u64) -> bool {
        self.queue.remove(waiter_id).is_some()
    }

    /// Grants as many waiters as the limits allow, strictly in FIFO order.
    pub fn pump(&mut self, now: Millis) -> Pump<T> {
        if !self.queue.is_empty() {
            self.permits.revoke();
        }
        let expired = self
            .queue
            .sweep(now)
            .into_iter()
            .map(|w| w.handle)
            .collect();
        let mut granted = Vec::new();
        let mut wake_in = None;
        let mut circuit_open = Vec::new();
        if self.disabled.is_none() {
            while !self.queue.is_empty() {
                match self.circuit.check(now) {
                    Ok(()) => {}
                    Err(Blocked::TrialInProgress) => break,
                    Err(Blocked::Open { .. }) => {
                        circuit_open = self.queue.extract_if(|_| true);
                        break;
                    }
                }
                match self.block(now) {
                    Block::Ready => {
                        let Some(w) = self.queue.pop() else { break };
                        if w.handle.is_gone() {
                            continue;
                        }
                        let lease = self.grant_waiter(now, &w);
                        granted.push((w.handle, lease));
                    }
                    Block::Rate(wait) => {
                        if let Some(head) = self.queue.head_mut() {
                            head.rate_blocked_since.get_or_insert(now);
                        }
                        wake_in = Some(wait.ms);
                        break;
                    }
                    Block::Concurrency => {
                        if let Some(head) = self.queue.head_mut() {
                            if let Some(since) = head.rate_blocked_since.take() {
                                head.rate_waited += now - since;
                            }
                        }
                        break;
                    }
                }
            }
        }
        let rejected = self.circuit_rejection(now);
        let circuit_rejected = circuit_open
            .into_iter()
            .map(|w| {
                (
                    w.handle,
                    rejected.clone().unwrap_or(Rejection::TrialInProgress),
                )
            })
            .collect();
        Pump {
            granted,
            expired,
            rejected: circuit_rejected,
            wake_in,
        }
    }

    fn grant_waiter(&mut self, now: Millis, w: &Waiter<T>) -> Lease {
        let rate = w.rate_waited + w.rate_blocked_since.map_or(0, |s| now - s);
        let total = now - w.enqueued_at;
        let trial = self.circuit.admit(now).unwrap_or(false);
        let lease_id = self.dispatch(now, trial);
        Lease {
            lease_id,
            granted_at: now,
            queue_wait_ms: (total - rate).max(0),
            rate_limit_wait_ms: rate.min(total).max(0),
            trial,
        }
    }

    fn jitter(lease_id: u64, now: Millis) -> f64 {
        // A cheap, well-mixed value in [0, 1) (splitmix64 finaliser).
        let mut z = lease_id ^ (now as u64).rotate_left(17);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Ends a lease. Returns waiters that can no longer be served in time (a 429 pause
    /// reaching past their deadline), so they can fail over at once instead of waiting.
    ///
    /// `sent_at` is when the call really left (later than the grant by the time it took
    /// to build and send it): the dispatch moves there, so it holds its place in the
    /// window from when the provider can have seen it.
    pub fn release(
        &mut self,
        now: Millis,
        lease_id: u64,
        sent_at: Option<Millis>,
        outcome: Outcome,
    ) -> Vec<T> {
        let Some(lease) = self.leases.remove(&lease_id) else {
            return Vec::new();
        };
        self.in_flight = self.in_flight.saturating_sub(1);
        let mut dispatched_at = lease.dispatched_at;
        if let Some(sent) = sent_at.filter(|_| outcome != Outcome::NotSent) {
            if sent > dispatched_at {
                self.window.move_dispatch(now, dispatched_at, sent);
                dispatched_at = sent.min(now);
            }
        }
        self.conclude(now, dispatched_at, lease.trial, lease_id, outcome)
    }

    /// A lease granted through `Reserve` was used: its call left at `at`. The dispatch
    /// moves there at once, so that the window holds the call from when the provider can
    /// see it even while the call is still running.
    pub fn sent(&mut self, now: Millis, lease_id: u64, at: Millis) {
        if let Some(lease) = self.leases.get_mut(&lease_id) {
            if at > lease.dispatched_at {
                self.window.move_dispatch(now, lease.dispatched_at, at);
                lease.dispatched_at = at.min(now);
            }
        }
    }

    /// Ends a lease taken from the permits granted ahead ([`FAST_LEASE`]) whose call left
    /// at `sent_at` (its grant time if it never left): records its dispatch (unless it
    /// was never sent), then treats the outcome like [`release`](Self::release).
    pub fn release_fast(&mut self, now: Millis, sent_at: Millis, outcome: Outcome) -> Vec<T> {
        let reported = self.permits.report();
        if outcome == Outcome::NotSent {
            return Vec::new();
        }
        self.window.record_at(now, sent_at);
        self.dispatched_total += 1;
        let seed = reported.rotate_left(32) ^ sent_at as u64;
        self.conclude(now, sent_at, false, seed, outcome)
    }

    /// The 95th percentile of the recent latencies of successful calls, or the
    /// configured `avg_response_time_ms` before the first (the attempt timeout's base).
    pub fn latency_p95(&self) -> Millis {
        self.latencies.p95().unwrap_or(self.service_seed_ms)
    }

    fn conclude(
        &mut self,
        now: Millis,
        dispatched_at: Millis,
        trial: bool,
        lease_id: u64,
        outcome: Outcome,
    ) -> Vec<T> {
        let jitter = Self::jitter(lease_id, now);
        let mut opened = false;
        let late = match outcome {
            Outcome::Success { latency_ms } => {
                self.circuit.on_success(trial);
                self.consecutive_429 = 0;
                self.service_ms = self.service_ms * (1.0 - SERVICE_EMA_ALPHA)
                    + latency_ms.max(0) as f64 * SERVICE_EMA_ALPHA;
                self.latencies.push(latency_ms);
                Vec::new()
            }
            Outcome::RateLimited { retry_after_ms } => {
                self.rate_limited_total += 1;
                let pause = retry_after_ms.unwrap_or_else(|| {
                    (DEFAULT_PAUSE_MS << self.consecutive_429.min(10)).min(MAX_DEFAULT_PAUSE_MS)
                });
                self.consecutive_429 = self.consecutive_429.saturating_add(1);
                let until = now + pause.max(0);
                self.window.pause_until(until);
                opened = self.circuit.on_failure(
                    now,
                    FailureKind::RateLimited,
                    retry_after_ms,
                    trial,
                    jitter,
                );
                // Waiters the pause would make late (past their deadline, or past the
                // start they accepted) leave now, to fail over instead of waiting.
                self.queue
                    .extract_if(|w| w.latest_start.min(w.deadline) < until)
                    .into_iter()
                    .map(|w| w.handle)
                    .collect()
            }
            Outcome::NotSent => {
                self.circuit.return_trial(trial);
                self.window.unrecord(dispatched_at);
                self.dispatched_total = self.dispatched_total.saturating_sub(1);
                Vec::new()
            }
            Outcome::Failed { kind, .. } => {
                match kind {
                    Some(kind) => opened = self.circuit.on_failure(now, kind, None, trial, jitter),
                    None => self.circuit.return_trial(trial),
                }
                Vec::new()
            }
            Outcome::AuthFailed => {
                opened = self
                    .circuit
                    .on_failure(now, FailureKind::Auth, None, trial, jitter);
                Vec::new()
            }
            Outcome::Abandoned => {
                self.circuit.return_trial(trial);
                Vec::new()
            }
        };
        if opened {
            // Nobody should wait for a pair that is known to be failing: all fail over.
            let mut all = late;
            all.extend(
                self.queue
                    .extract_if(|_| true)
                    .into_iter()
                    .map(|w| w.handle),
            );
            return all;
        }
        late
    }

    /// Shutdown: admits nothing more and returns every waiter (to be answered at once);
    /// calls in flight finish normally.
    pub fn drain(&mut self) -> Vec<T> {
        self.draining = true;
        self.queue
            .extract_if(|_| true)
            .into_iter()
            .map(|w| w.handle)
            .collect()
    }

    /// Takes the pair out of rotation; returns every waiter so each can fail over.
    pub fn disable(&mut self, message: String) -> Vec<T> {
        self.disabled = Some(message);
        self.queue
            .extract_if(|_| true)
            .into_iter()
            .map(|w| w.handle)
            .collect()
    }

    /// Puts the pair back into rotation: clears a disable, a 429 pause and the circuit.
    pub fn reset(&mut self) {
        self.disabled = None;
        self.consecutive_429 = 0;
        self.window.clear_pause();
        self.circuit.reset();
    }

    /// What a new request would face.
    pub fn estimate(&mut self, now: Millis) -> WaitEstimate {
        let unreported = self.permits.unreported();
        self.estimate_with(now, unreported)
    }

    /// What a new request would face once every permit granted ahead and left now is
    /// taken too: the estimate a planner must see as soon as the permits run out, before
    /// the actor has heard of the calls made on them (see `published`).
    pub fn estimate_exhausted(&mut self, now: Millis) -> WaitEstimate {
        let outstanding = self.permits.outstanding();
        self.estimate_with(now, outstanding)
    }

    /// The estimate with `unreported` calls counted as dispatched at `now` and in flight.
    fn estimate_with(&mut self, now: Millis, unreported: u64) -> WaitEstimate {
        let rate_wait = self.window.wait_with(now, unreported);
        let (start, blocker) = self.start_wait_with(now, self.queue.len(), unreported);
        let service_ms = self.service_ms.round() as Millis;
        let unavailable = if self.draining {
            Some(Rejection::ShuttingDown)
        } else if let Some(message) = &self.disabled {
            Some(Rejection::Disabled {
                message: message.clone(),
            })
        } else if let Some(r) = self.circuit_rejection(now) {
            Some(r)
        } else if self.queue.len() >= self.queue.capacity() {
            Some(self.queue_full(now))
        } else {
            None
        };
        WaitEstimate {
            rate_limit_wait_ms: rate_wait.ms,
            queue_wait_ms: (start - rate_wait.ms).max(0),
            service_ms,
            total_ms: start + service_ms,
            queue_len: self.queue.len(),
            in_flight: self
                .in_flight
                .saturating_add(u32::try_from(unreported).unwrap_or(u32::MAX)),
            blocker: if start > 0 {
                blocker
            } else {
                Blocker::None.as_str()
            },
            unavailable,
        }
    }

    /// Calls in flight, those granted ahead and not yet reported included.
    fn in_flight_all(&self) -> u32 {
        let unreported = u32::try_from(self.permits.unreported()).unwrap_or(u32::MAX);
        self.in_flight.saturating_add(unreported)
    }

    /// Live numbers (calls granted ahead and not yet reported count as dispatched now).
    pub fn status(&mut self, now: Millis) -> CapacityStatus {
        let unreported = self.permits.unreported();
        let unreported32 = u32::try_from(unreported).unwrap_or(u32::MAX);
        let (rpm_limit, rpd_limit) = self.window.limits();
        let wait = self.window.wait_with(now, unreported);
        let (start, _) = self.start_wait(now, self.queue.len());
        let circuit_state = self.circuit.state(now);
        CapacityStatus {
            rpm_limit,
            rpd_limit,
            requests_this_minute: self.window.minute_used(now).saturating_add(unreported32),
            requests_today: self.window.day_used(now).saturating_add(unreported32),
            minute_reset_at: self.window.minute_reset_at(now),
            day_reset_at: self.window.day_reset_at(now),
            paused_until: self.window.paused_until(now),
            last_request_at: self.window.last_dispatch(),
            blocker: wait.blocker.as_str(),
            rate_limit_wait_ms: wait.ms,
            queue_length: self.queue.len(),
            max_queue: self.queue.capacity(),
            in_flight: self.in_flight_all(),
            max_concurrent: self.max_concurrent,
            oldest_wait_ms: self.queue.oldest_wait(now),
            estimated_queue_wait_ms: start,
            service_ms: self.service_ms.round() as Millis,
            disabled: self.disabled.clone(),
            dispatched_total: self.dispatched_total + unreported,
            rate_limited_total: self.rate_limited_total,
            circuit_state: circuit_state.as_str(),
            circuit_open_until: match circuit_state {
                CircuitState::Open { until } => Some(until),
                _ => None,
            },
            consecutive_failures: self.circuit.consecutive_failures(),
            window_failures: self.circuit.window_failures(),
            last_failure_kind: self.circuit.last_kind().map(FailureKind::as_str),
            circuit_opened_total: self.circuit.opened_total(),
            probe: self.probe.clone(),
        }
    }
}

/// The last health probe of a key, as one of its pairs recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeRecord {
    /// The provider answered the free model-list request.
    pub ok: bool,
    /// When (Unix ms).
    pub at: Millis,
    /// What failed, if it did.
    pub error: Option<String>,
}

#[cfg(test)]
#[path = "capacity_tests.rs"]
mod tests;
