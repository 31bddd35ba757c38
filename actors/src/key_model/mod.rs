//! `KeyModelActor`: one per (provider, API key, model). It owns that pair's RPM/RPD state
//! and FIFO queue, publishes its wait estimates and the permits it grants ahead, grants
//! queued slots in arrival order, and is told when a slot is released with the outcome.
//!
//! The actor never calls upstream; the HTTP handler does, holding a
//! [`LeaseGuard`](crate::LeaseGuard) that releases the slot even when the handler is
//! dropped.

pub mod capacity;
pub mod circuit;
pub mod handle;
pub mod permits;
pub mod published;
pub mod rate_window;
pub mod waiters;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::clock::{Millis, SharedClock};
use crate::ids::KeyModelId;
use crate::key_model::capacity::{
    Admission, CapacityStatus, KeyModelCapacity, Lease, Outcome, Rejection, FAST_LEASE,
};
use crate::key_model::circuit::CircuitConfig;
use crate::key_model::published::Published;
use crate::key_model::rate_window::RateWindow;
use crate::mailbox::MailboxMeter;
use crate::persist::{PairSnapshot, StateStore};

/// Mailbox bound; `send` waits (and, with its timeout, fails) beyond it.
pub const MAILBOX_CAPACITY: usize = 4096;

type GrantSender = oneshot::Sender<Result<Lease, Rejection>>;

/// Static description of a key/model pair, from the config.
#[derive(Debug, Clone)]
pub struct KeyModelSpec {
    /// Identity.
    pub id: KeyModelId,
    /// Calls per 60 s.
    pub rpm: u32,
    /// Calls per day.
    pub rpd: u32,
    /// Day boundary time zone.
    pub rpd_timezone: chrono_tz::Tz,
    /// Concurrency cap.
    pub max_concurrent: Option<u32>,
    /// Queue bound.
    pub max_queue: usize,
    /// Seed of the service-time average (`avg_response_time_ms`).
    pub avg_response_time_ms: u64,
    /// Circuit breaker thresholds.
    pub circuit: CircuitConfig,
    /// Safety margin at the RPM window's edge and before the day boundary, for the
    /// provider counting arrivals (`rate_limit_margin_ms`; see `rate_window`).
    pub rate_margin_ms: Millis,
}

/// Command: ask for a slot, waiting in the FIFO if needed, until `deadline`.
#[derive(Debug, Message)]
#[rtype(result = "ReserveReply")]
pub struct Reserve {
    /// Unix ms after which the request no longer wants the slot.
    pub deadline: Millis,
    /// The latest start the request accepts here, when another candidate could serve it
    /// within its wait budget: a later start is refused ([`Rejection::OverBudget`]), and a
    /// waiter that a 429 pause would hold past it is handed back.
    pub latest_start: Option<Millis>,
    /// When it was sent (mailbox-wait metric).
    pub sent_at: Instant,
}

/// The answer to [`Reserve`].
#[derive(Debug)]
pub enum ReserveReply {
    /// Go now.
    Granted(Lease),
    /// Queued; the lease (or a rejection) arrives on `grant`.
    Queued {
        /// For [`CancelWait`].
        waiter_id: u64,
        /// Delivers the outcome of waiting.
        grant: oneshot::Receiver<Result<Lease, Rejection>>,
    },
    /// Cannot be served in time or at all.
    Rejected(Rejection),
}

/// Command: a queued request gave up.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct CancelWait {
    /// From [`ReserveReply::Queued`].
    pub waiter_id: u64,
}

/// Command: a lease ended.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Release {
    /// From the [`Lease`]; [`FAST_LEASE`] for a permit granted ahead.
    pub lease_id: u64,
    /// From the [`Lease`]: when the call was allowed to go.
    pub granted_at: Millis,
    /// When the call really left, if it did: recorded as its dispatch time.
    pub sent_at: Option<Millis>,
    /// How the call ended.
    pub outcome: Outcome,
}

/// Event: the call on a lease granted through [`Reserve`] left at `at` (its dispatch
/// moves there; a permit granted ahead says so in its release instead).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Sent {
    /// From the [`Lease`].
    pub lease_id: u64,
    /// When the request left (Unix ms).
    pub at: Millis,
}

/// Command: take in the batched releases of successful calls, within [`RELEASE_FLUSH`]
/// (sent by the first release of a batch) or at once (sent by a full batch).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct FlushReleases {
    /// At once rather than within [`RELEASE_FLUSH`].
    pub at_once: bool,
}

/// How long a batch of successful releases may wait before the actor takes it in.
pub const RELEASE_FLUSH: Duration = Duration::from_millis(20);
/// A batch this long is taken in at once.
pub const RELEASE_BATCH: usize = 256;

/// Command: take the pair out of rotation (authentication failed).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Disable {
    /// Why, for status endpoints.
    pub message: String,
}

/// Command: put the pair back into rotation: clear a disable, a 429 pause and the circuit.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Reset;

/// Query: live numbers for status endpoints.
#[derive(Debug, Message)]
#[rtype(result = "CapacityStatus")]
pub struct GetStatus;

/// Command: the config was reloaded; apply the pair's new limits, keeping its counts.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Reconfigure {
    /// The pair's new description (same id).
    pub spec: KeyModelSpec,
    /// The key's value changed: a key out of rotation after failing authentication
    /// comes back.
    pub key_changed: bool,
}

/// Event: a free health probe of this pair's key finished.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ProbeResult {
    /// Whether the provider answered the model list.
    pub ok: bool,
    /// What failed, if it did (no secrets: the classified upstream error).
    pub error: Option<String>,
}

/// Command: shutdown has begun: refuse new requests and answer every waiter at once.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Drain;

/// Query: the state that survives a restart (shutdown flush).
#[derive(Debug, Message)]
#[rtype(result = "PairSnapshot")]
pub struct GetSnapshot;

/// Command: re-evaluate the queue now (after a clock change in tests, or a timer).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Nudge;

/// The actor.
pub struct KeyModelActor {
    /// The pair's static description (replaced by `Reconfigure`).
    spec: Arc<KeyModelSpec>,
    /// Time source (manual in tests).
    clock: SharedClock,
    /// Everything the pair knows about its capacity: the single writer's state.
    capacity: KeyModelCapacity<GrantSender>,
    /// The armed wake-up timer: when it fires and its handle (to re-arm earlier).
    wake: Option<(Millis, SpawnHandle)>,
    /// Mailbox counters of the key/model actors.
    meter: MailboxMeter,
    /// Where snapshots are saved, when state persists.
    store: Option<StateStore>,
    /// State changed since the last snapshot.
    dirty: bool,
    /// The read-only view handlers read: estimates, permits, batched releases.
    published: Arc<Published>,
    /// A batch flush is scheduled (see [`FlushReleases`]).
    flush_armed: bool,
}

/// How often changed state is handed to the state store.
const SAVE_INTERVAL: Duration = Duration::from_secs(1);

impl KeyModelActor {
    /// An actor for the pair, restored from `restore` when given; with a `store`, its
    /// state is saved there when it changes.
    pub fn new(
        spec: KeyModelSpec,
        clock: SharedClock,
        meter: MailboxMeter,
        store: Option<StateStore>,
        restore: Option<&PairSnapshot>,
        published: Arc<Published>,
    ) -> Self {
        let now = clock.now_ms();
        let window = RateWindow::new(spec.rpm, spec.rpd, spec.rpd_timezone, now)
            .with_margin(spec.rate_margin_ms);
        let mut capacity = KeyModelCapacity::new(
            window,
            spec.circuit,
            spec.max_concurrent,
            spec.max_queue,
            spec.avg_response_time_ms,
        )
        .with_fast_grants(published.fast_grants().clone());
        if let Some(snap) = restore {
            capacity.restore(&snap.rate, &snap.circuit, now);
        }
        Self {
            spec: Arc::new(spec),
            clock,
            capacity,
            wake: None,
            meter,
            store,
            dirty: false,
            published,
            flush_armed: false,
        }
    }

    /// Makes the current estimate readable without a message (see `published`) and
    /// leaves the permits for calls that may start now (see `permits`).
    fn publish(&mut self) {
        let now = self.clock.now_ms();
        self.capacity.grant_ahead(now);
        let e = self.capacity.estimate(now);
        let spent = self.capacity.estimate_exhausted(now);
        self.published
            .publish_both(now, &e, &spent, self.capacity.latency_p95());
    }

    fn snapshot(&self) -> PairSnapshot {
        let now = self.clock.now_ms();
        let (rate, circuit) = self.capacity.snapshot(now);
        PairSnapshot {
            id: self.spec.id.clone(),
            saved_at: now,
            rate,
            circuit,
        }
    }

    /// Grants what can be granted, answers expired waiters, arms the wake-up timer, and
    /// publishes the new estimate.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        self.dirty = true;
        self.pump_queue(ctx);
        self.publish();
    }

    fn pump_queue(&mut self, ctx: &mut Context<Self>) {
        loop {
            let now = self.clock.now_ms();
            let pump = self.capacity.pump(now);
            for tx in pump.expired {
                let _ = tx.send(Err(Rejection::DeadlinePassed));
            }
            for (tx, why) in pump.rejected {
                let _ = tx.send(Err(why));
            }
            let mut undelivered = false;
            for (tx, lease) in pump.granted {
                if tx.send(Ok(lease)).is_err() {
                    // The requester left between the check and the grant: take it back.
                    self.capacity
                        .release(now, lease.lease_id, None, Outcome::NotSent);
                    undelivered = true;
                }
            }
            if let Some(wake_in) = pump.wake_in {
                self.arm(ctx, now + wake_in.max(1));
            }
            if !undelivered {
                break;
            }
        }
    }

    fn arm(&mut self, ctx: &mut Context<Self>, at: Millis) {
        if let Some((current, handle)) = self.wake {
            if current <= at {
                return;
            }
            ctx.cancel_future(handle);
        }
        let now = self.clock.now_ms();
        let delay = Duration::from_millis((at - now).max(1) as u64);
        let handle = ctx.run_later(delay, |act, ctx| {
            act.wake = None;
            act.pump(ctx);
        });
        self.wake = Some((at, handle));
    }
}

impl KeyModelActor {
    /// Where every handler but [`FlushReleases`]'s starts: counts the message for the
    /// mailbox metrics and takes in the batched releases first, so that no decision or
    /// report is ever made on counts a batch has not reached yet. Returns the metrics
    /// guard and whether anything was taken in (the handler then pumps).
    fn begin(&mut self) -> (crate::mailbox::Handling, bool) {
        let guard = self.meter.handling();
        let absorbed = self.absorb_batched();
        (guard, absorbed)
    }

    /// Takes in the batched releases (see [`FlushReleases`]); `true` if there were any.
    fn absorb_batched(&mut self) -> bool {
        let batch = self.published.take_batched();
        if batch.is_empty() {
            return false;
        }
        let now = self.clock.now_ms();
        for (sent_at, outcome) in batch {
            let late = self.capacity.release_fast(now, sent_at, outcome);
            self.refuse_late(now, late);
        }
        true
    }

    /// Answers waiters that can no longer be served in time, saying why.
    fn refuse_late(&mut self, now: Millis, late: Vec<GrantSender>) {
        if late.is_empty() {
            return;
        }
        let why = self.capacity.estimate(now).unavailable.unwrap_or_else(|| {
            let paused = self.capacity.window_mut().paused_until(now).unwrap_or(now);
            Rejection::WouldMissDeadline {
                available_in_ms: paused - now,
                blocker: "paused",
            }
        });
        for tx in late {
            let _ = tx.send(Err(why.clone()));
        }
    }
}

impl Actor for KeyModelActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        self.publish();
        if self.store.is_some() {
            ctx.run_interval(SAVE_INTERVAL, |act, _| {
                if act.dirty {
                    act.dirty = false;
                    if let Some(store) = &act.store {
                        store.save(act.snapshot());
                    }
                }
            });
        }
    }
}

impl Handler<FlushReleases> for KeyModelActor {
    type Result = ();

    fn handle(&mut self, msg: FlushReleases, ctx: &mut Self::Context) {
        let _m = self.meter.handling();
        if msg.at_once {
            if self.absorb_batched() {
                self.pump(ctx);
            }
        } else if !self.flush_armed {
            self.flush_armed = true;
            ctx.run_later(RELEASE_FLUSH, |act, ctx| {
                act.flush_armed = false;
                if act.absorb_batched() {
                    act.pump(ctx);
                }
            });
        }
    }
}

impl Handler<Reconfigure> for KeyModelActor {
    type Result = ();

    fn handle(&mut self, msg: Reconfigure, ctx: &mut Self::Context) {
        let _m = self.begin();
        let s = &msg.spec;
        self.capacity
            .reconfigure(s.rpm, s.rpd, s.max_concurrent, s.max_queue, s.circuit);
        if msg.key_changed {
            self.capacity.reenable();
        }
        self.capacity.window_mut().set_margin(s.rate_margin_ms);
        self.spec = Arc::new(msg.spec);
        self.pump(ctx);
    }
}

impl Handler<ProbeResult> for KeyModelActor {
    type Result = ();

    fn handle(&mut self, msg: ProbeResult, ctx: &mut Self::Context) {
        let _m = self.begin();
        let now = self.clock.now_ms();
        self.capacity.record_probe(now, msg.ok, msg.error);
        self.pump(ctx);
    }
}

impl Handler<Drain> for KeyModelActor {
    type Result = ();

    fn handle(&mut self, _: Drain, _: &mut Self::Context) {
        let _m = self.begin();
        for tx in self.capacity.drain() {
            let _ = tx.send(Err(Rejection::ShuttingDown));
        }
        self.publish();
    }
}

impl Handler<GetSnapshot> for KeyModelActor {
    type Result = MessageResult<GetSnapshot>;

    fn handle(&mut self, _: GetSnapshot, ctx: &mut Self::Context) -> Self::Result {
        let (_m, absorbed) = self.begin();
        if absorbed {
            self.pump(ctx);
        }
        MessageResult(self.snapshot())
    }
}

impl Handler<Reserve> for KeyModelActor {
    type Result = MessageResult<Reserve>;

    fn handle(&mut self, msg: Reserve, ctx: &mut Self::Context) -> Self::Result {
        self.meter.waited(msg.sent_at);
        let _m = self.begin();
        let now = self.clock.now_ms();
        let reply = match self.capacity.admit(now, msg.deadline, msg.latest_start) {
            Admission::Granted(lease) => {
                self.dirty = true;
                self.publish();
                ReserveReply::Granted(lease)
            }
            Admission::Rejected(r) => ReserveReply::Rejected(r),
            Admission::Enqueue => {
                let (tx, rx) = oneshot::channel();
                match self
                    .capacity
                    .enqueue(now, msg.deadline, msg.latest_start, tx)
                {
                    Ok(waiter_id) => {
                        self.pump(ctx);
                        ReserveReply::Queued {
                            waiter_id,
                            grant: rx,
                        }
                    }
                    Err(_) => ReserveReply::Rejected(self.capacity.queue_full(now)),
                }
            }
        };
        MessageResult(reply)
    }
}

impl Handler<CancelWait> for KeyModelActor {
    type Result = ();

    fn handle(&mut self, msg: CancelWait, ctx: &mut Self::Context) {
        let _m = self.begin();
        if self.capacity.cancel(msg.waiter_id) {
            self.pump(ctx);
        }
    }
}

impl Handler<Release> for KeyModelActor {
    type Result = ();

    fn handle(&mut self, msg: Release, ctx: &mut Self::Context) {
        let _m = self.begin();
        let now = self.clock.now_ms();
        let late = if msg.lease_id == FAST_LEASE {
            let sent_at = msg.sent_at.unwrap_or(msg.granted_at);
            self.capacity.release_fast(now, sent_at, msg.outcome)
        } else {
            self.capacity
                .release(now, msg.lease_id, msg.sent_at, msg.outcome)
        };
        self.refuse_late(now, late);
        self.pump(ctx);
    }
}

impl Handler<Sent> for KeyModelActor {
    type Result = ();

    fn handle(&mut self, msg: Sent, _: &mut Self::Context) {
        let _m = self.begin();
        let now = self.clock.now_ms();
        self.capacity.sent(now, msg.lease_id, msg.at);
        self.dirty = true;
        self.publish();
    }
}

impl Handler<Disable> for KeyModelActor {
    type Result = ();

    fn handle(&mut self, msg: Disable, _: &mut Self::Context) {
        let _m = self.begin();
        log::warn!("{} taken out of rotation: {}", self.spec.id, msg.message);
        self.dirty = true;
        for tx in self.capacity.disable(msg.message.clone()) {
            let _ = tx.send(Err(Rejection::Disabled {
                message: msg.message.clone(),
            }));
        }
        self.publish();
    }
}

impl Handler<Reset> for KeyModelActor {
    type Result = ();

    fn handle(&mut self, _: Reset, ctx: &mut Self::Context) {
        let _m = self.begin();
        log::info!("{} reset: back in rotation", self.spec.id);
        self.capacity.reset();
        self.pump(ctx);
    }
}

impl Handler<GetStatus> for KeyModelActor {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, ctx: &mut Self::Context) -> Self::Result {
        let (_m, absorbed) = self.begin();
        if absorbed {
            self.pump(ctx);
        }
        MessageResult(self.capacity.status(self.clock.now_ms()))
    }
}

impl Handler<Nudge> for KeyModelActor {
    type Result = ();

    fn handle(&mut self, _: Nudge, ctx: &mut Self::Context) {
        let _m = self.begin();
        self.pump(ctx);
    }
}
