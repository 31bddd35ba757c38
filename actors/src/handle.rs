//! How the rest of bkvy talks to a key/model actor: a [`KeyModelHandle`] whose every send
//! is bounded by a timeout and counted for mailbox metrics, and a [`LeaseGuard`] that
//! releases a granted slot exactly once, even when the request is dropped mid-way
//! (client gone, deadline passed).

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Addr;

use crate::capacity::{CapacityStatus, Lease, Outcome, Rejection, WaitEstimate, FAST_LEASE};
use crate::clock::Millis;
use crate::key_model::{
    CancelWait, Disable, GetStatus, GetWaitTime, KeyModelActor, KeyModelSpec, Nudge, Release,
    Reserve, ReserveReply, Reset,
};
use crate::key_model::{FlushLater, RELEASE_BATCH};
use crate::mailbox::MailboxMeter;
use crate::published::Published;

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

    /// Wait-time query, `None` if the actor does not answer within `timeout`.
    pub async fn wait_time(&self, timeout: Duration) -> Option<WaitEstimate> {
        self.meter.sent();
        self.addr
            .send(GetWaitTime {
                sent_at: Instant::now(),
            })
            .timeout(timeout)
            .await
            .ok()
    }

    /// Live numbers, `None` if the actor does not answer within `timeout`.
    pub async fn status(&self, timeout: Duration) -> Option<CapacityStatus> {
        self.meter.sent();
        self.addr.send(GetStatus).timeout(timeout).await.ok()
    }

    /// Asks for a slot and waits for it in the FIFO until `deadline` (Unix ms, measured by
    /// `now`). The returned guard must be released with the call's outcome.
    ///
    /// When the actor has granted capacity ahead (see `fast_grant`), the slot is taken
    /// without a message; otherwise `Reserve` asks the actor.
    pub async fn acquire(
        &self,
        deadline: Millis,
        now: impl Fn() -> Millis,
    ) -> Result<LeaseGuard, Rejection> {
        if self.published.fast_grants().try_take() {
            return Ok(LeaseGuard {
                handle: self.clone(),
                lease: Lease {
                    lease_id: FAST_LEASE,
                    granted_at: now(),
                    queue_wait_ms: 0,
                    rate_limit_wait_ms: 0,
                    trial: false,
                },
                sent: false,
                released: false,
            });
        }
        let remaining = |now: Millis| Duration::from_millis((deadline - now).max(0) as u64);
        self.meter.sent();
        let reply = self
            .addr
            .send(Reserve {
                deadline,
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
            sent: false,
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
    pub fn reconfigure(&self, spec: KeyModelSpec) -> Self {
        self.meter.sent();
        self.addr
            .do_send(crate::key_model::Reconfigure { spec: spec.clone() });
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

    fn release(&self, lease: &Lease, outcome: Outcome) {
        // A successful call on a permit granted ahead, while nobody waits: nothing the
        // actor must act on now, so it joins a batch the actor takes in shortly (see
        // `FlushLater`) instead of waking the actor thread once per request. Failures,
        // queued pairs and slow-path leases are reported at once.
        let batchable = lease.lease_id == FAST_LEASE
            && matches!(outcome, Outcome::Success { .. })
            && self.published.queued() == 0;
        if batchable {
            let n = self.published.batch_release(lease.granted_at, outcome);
            if n == 1 || n == RELEASE_BATCH {
                self.meter.sent();
                self.addr.do_send(FlushLater {
                    now: n == RELEASE_BATCH,
                });
            }
            return;
        }
        self.meter.sent();
        self.addr.do_send(Release {
            lease_id: lease.lease_id,
            granted_at: lease.granted_at,
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
    sent: bool,
    released: bool,
}

impl LeaseGuard {
    /// The lease's measured waits.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Call right before the upstream request leaves.
    pub fn mark_sent(&mut self) {
        self.sent = true;
    }

    /// Releases the slot with the call's outcome.
    pub fn finish(mut self, outcome: Outcome) {
        self.released = true;
        self.handle.release(&self.lease, outcome);
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if !self.released {
            let outcome = if self.sent {
                Outcome::Abandoned
            } else {
                Outcome::NotSent
            };
            self.handle.release(&self.lease, outcome);
        }
    }
}
