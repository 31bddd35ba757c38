//! How the rest of bkvy talks to a key/model actor: a [`KeyModelHandle`] that reads the
//! actor's published view, takes its permits without a message, bounds every `send` that
//! waits for a reply by a timeout and counts every message for mailbox metrics, and a
//! [`LeaseGuard`] that
//! releases a granted slot exactly once, even when the request is dropped mid-way
//! (client gone, deadline passed).

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Addr;

use crate::clock::Millis;
use crate::key_model::capacity::{
    CapacityStatus, Lease, Outcome, Rejection, WaitEstimate, FAST_LEASE,
};
use crate::key_model::published::Published;
use crate::key_model::{
    CancelWait, Disable, GetStatus, KeyModelActor, KeyModelSpec, Nudge, Release, Reserve,
    ReserveReply, Reset,
};
use crate::key_model::{FlushReleases, RELEASE_BATCH};
use crate::mailbox::MailboxMeter;

/// What a request asks of [`KeyModelHandle::acquire_with`].
#[derive(Debug, Clone, Copy)]
pub struct Want {
    /// Unix ms after which the request no longer wants the slot.
    pub deadline: Millis,
    /// The latest start the request accepts here (see [`Reserve`]'s field); `None`: any
    /// start before the deadline.
    pub latest_start: Option<Millis>,
    /// Whether a permit granted ahead may be taken. `false` after this pair answered 429:
    /// the actor may not have taken the pause in yet, so the request must ask it.
    pub fast: bool,
}

/// Address of one key/model actor plus what is known about it statically.
#[derive(Clone)]
pub struct KeyModelHandle {
    /// The pair's static description.
    pub spec: Arc<KeyModelSpec>,
    addr: Addr<KeyModelActor>,
    meter: MailboxMeter,
    published: Arc<Published>,
}

impl std::fmt::Debug for KeyModelHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyModelHandle")
            .field("id", &self.spec.id)
            .finish()
    }
}

impl KeyModelHandle {
    /// Wraps a started actor and the estimate it publishes.
    pub fn new(
        spec: Arc<KeyModelSpec>,
        addr: Addr<KeyModelActor>,
        meter: MailboxMeter,
        published: Arc<Published>,
    ) -> Self {
        Self {
            spec,
            addr,
            meter,
            published,
        }
    }

    /// The estimate the actor last published, as it stands at `now` (no message).
    pub fn estimate_now(&self, now: Millis) -> WaitEstimate {
        self.published.read(now)
    }

    /// The 95th percentile of the pair's recent successful latencies (its configured
    /// `avg_response_time_ms` before the first), as last published.
    pub fn latency_p95_ms(&self) -> Millis {
        self.published.latency_p95_ms()
    }

    /// Live numbers, `None` if the actor does not answer within `timeout`.
    pub async fn status(&self, timeout: Duration) -> Option<CapacityStatus> {
        self.meter.sent();
        self.addr.send(GetStatus).timeout(timeout).await.ok()
    }

    /// Asks for a slot and waits for it in the FIFO until `deadline` (Unix ms, measured by
    /// `now`). The returned guard must be released with the call's outcome.
    ///
    /// When the actor has granted capacity ahead (see `permits`), the slot is taken
    /// without a message; otherwise `Reserve` asks the actor.
    pub async fn acquire(
        &self,
        deadline: Millis,
        now: impl Fn() -> Millis,
    ) -> Result<LeaseGuard, Rejection> {
        let want = Want {
            deadline,
            latest_start: None,
            fast: true,
        };
        self.acquire_with(want, now).await
    }

    /// [`acquire`](Self::acquire) with a latest acceptable start and a choice of the
    /// fast path (see [`Want`]).
    pub async fn acquire_with(
        &self,
        want: Want,
        now: impl Fn() -> Millis,
    ) -> Result<LeaseGuard, Rejection> {
        let deadline = want.deadline;
        if want.fast && self.published.fast_grants().try_take() {
            let granted_at = now();
            self.published.note_take(granted_at);
            return Ok(LeaseGuard {
                handle: self.clone(),
                lease: Lease {
                    lease_id: FAST_LEASE,
                    granted_at,
                    queue_wait_ms: 0,
                    rate_limit_wait_ms: 0,
                    trial: false,
                },
                sent_at: None,
                released: false,
            });
        }
        let remaining = |now: Millis| Duration::from_millis((deadline - now).max(0) as u64);
        self.meter.sent();
        let reply = self
            .addr
            .send(Reserve {
                deadline,
                latest_start: want.latest_start,
                sent_at: Instant::now(),
            })
            .timeout(remaining(now()).min(Duration::from_secs(5)))
            .await
            .map_err(|_| Rejection::ActorUnavailable)?;
        let lease = match reply {
            ReserveReply::Granted(lease) => lease,
            ReserveReply::Rejected(r) => return Err(r),
            ReserveReply::Queued { waiter_id, grant } => {
                let cancel = CancelOnDrop {
                    handle: self,
                    waiter_id,
                    armed: true,
                };
                let outcome = tokio::time::timeout(remaining(now()), grant).await;
                let lease = match outcome {
                    Ok(Ok(Ok(lease))) => lease,
                    Ok(Ok(Err(rejection))) => {
                        cancel.disarm();
                        return Err(rejection);
                    }
                    Ok(Err(_)) => {
                        cancel.disarm();
                        return Err(Rejection::ActorUnavailable);
                    }
                    // Timed out: the guard cancels the wait on drop.
                    Err(_) => return Err(Rejection::DeadlinePassed),
                };
                cancel.disarm();
                lease
            }
        };
        Ok(LeaseGuard {
            handle: self.clone(),
            lease,
            sent_at: None,
            released: false,
        })
    }

    /// Takes the pair out of rotation.
    pub fn disable(&self, message: String) {
        self.meter.sent();
        self.addr.do_send(Disable { message });
    }

    /// Puts the pair back into rotation (clears disable, pause and circuit).
    pub fn reset(&self) {
        self.meter.sent();
        self.addr.do_send(Reset);
    }

    /// The state that survives a restart, `None` if the actor does not answer in time.
    pub async fn snapshot(&self, timeout: Duration) -> Option<crate::persist::PairSnapshot> {
        self.meter.sent();
        self.addr
            .send(crate::key_model::GetSnapshot)
            .timeout(timeout)
            .await
            .ok()
    }

    /// Applies a reloaded description to the running actor and returns a handle carrying
    /// it; the actor keeps its counts, queue and circuit.
    pub fn reconfigure(&self, spec: KeyModelSpec, key_changed: bool) -> Self {
        self.meter.sent();
        self.addr.do_send(crate::key_model::Reconfigure {
            spec: spec.clone(),
            key_changed,
        });
        Self {
            spec: Arc::new(spec),
            addr: self.addr.clone(),
            meter: self.meter.clone(),
            published: self.published.clone(),
        }
    }

    /// Reports a health probe of the pair's key.
    pub fn probe_result(&self, ok: bool, error: Option<String>) {
        self.meter.sent();
        self.addr
            .do_send(crate::key_model::ProbeResult { ok, error });
    }

    /// Shutdown: refuse new requests, answer every waiter now.
    pub fn drain(&self) {
        self.meter.sent();
        self.addr.do_send(crate::key_model::Drain);
    }

    /// Makes the actor re-evaluate its queue now.
    pub fn nudge(&self) {
        self.meter.sent();
        self.addr.do_send(Nudge);
    }

    fn release(&self, lease: &Lease, sent_at: Option<Millis>, outcome: Outcome) {
        // A successful call on a permit granted ahead, while nobody waits: nothing the
        // actor must act on now, so it joins a batch the actor takes in shortly (see
        // `FlushReleases`) instead of waking the actor thread once per request. Failures,
        // queued pairs and slow-path leases are reported at once.
        let batchable = lease.lease_id == FAST_LEASE
            && matches!(outcome, Outcome::Success { .. })
            && self.published.queued() == 0;
        if batchable {
            let at = sent_at.unwrap_or(lease.granted_at);
            let n = self.published.batch_release(at, outcome);
            if n == 1 || n == RELEASE_BATCH {
                self.meter.sent();
                self.addr.do_send(FlushReleases {
                    at_once: n == RELEASE_BATCH,
                });
            }
            return;
        }
        self.meter.sent();
        self.addr.do_send(Release {
            lease_id: lease.lease_id,
            granted_at: lease.granted_at,
            sent_at,
            outcome,
        });
    }
}

/// Cancels a queued wait if the waiting future is dropped or times out.
struct CancelOnDrop<'a> {
    handle: &'a KeyModelHandle,
    waiter_id: u64,
    armed: bool,
}

impl CancelOnDrop<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.handle.meter.sent();
            self.handle.addr.do_send(CancelWait {
                waiter_id: self.waiter_id,
            });
        }
    }
}

/// A granted slot. Release it with [`LeaseGuard::finish`]; if dropped unreleased, it
/// tells the actor the call was abandoned (or never sent, if [`LeaseGuard::mark_sent`] was
/// not called), so no slot ever leaks.
#[derive(Debug)]
pub struct LeaseGuard {
    handle: KeyModelHandle,
    lease: Lease,
    /// When the upstream request left (see [`LeaseGuard::mark_sent`]).
    sent_at: Option<Millis>,
    released: bool,
}

impl LeaseGuard {
    /// The lease's measured waits.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Call right before the upstream request leaves, with the time (Unix ms): the
    /// actor records the dispatch then, since the provider counts the call from its
    /// arrival.
    pub fn mark_sent(&mut self, at: Millis) {
        self.sent_at = Some(at);
        // A permit granted ahead is not in the actor's window until its release, which
        // carries the time; a `Reserve` grant is, at its grant time, so it moves now.
        if self.lease.lease_id != FAST_LEASE {
            self.handle.meter.sent();
            self.handle.addr.do_send(crate::key_model::Sent {
                lease_id: self.lease.lease_id,
                at,
            });
        }
    }

    /// Releases the slot with the call's outcome.
    pub fn finish(mut self, outcome: Outcome) {
        self.released = true;
        self.handle.release(&self.lease, self.sent_at, outcome);
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if !self.released {
            let outcome = if self.sent_at.is_some() {
                Outcome::Abandoned
            } else {
                Outcome::NotSent
            };
            self.handle.release(&self.lease, self.sent_at, outcome);
        }
    }
}
