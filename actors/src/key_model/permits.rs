//! The permit protocol: capacity a key/model actor grants ahead, taken by HTTP handlers
//! without a message.
//!
//! Asking the actor for every slot (`Reserve` and its reply) cost a wake-up of the actor
//! thread and of the handler's thread per request, the largest item of bkvy's own cost.
//! So after every change of its state the actor computes how many calls could start right
//! now (its *room*) and leaves that many permits in one atomic counter ([`FastGrants`]); a
//! handler that finds a permit takes it with a compare-and-swap
//! ([`FastGrants::try_take`], through `KeyModelHandle`) and calls upstream at once. The
//! actor stays the only one that decides how much capacity exists: handlers only ever
//! take what it left, and it learns of each taken permit from the lease's release (a
//! `Release` message, or for a success the batch it takes in on `FlushReleases`).
//!
//! The whole protocol, in the order it runs:
//!
//! 1. **Grant** (actor, after every change of state): [`PermitLedger::grant`] leaves
//!    `room - unreported` permits, where `room` is what the *recorded* state allows now
//!    (RPM window, RPD, concurrency, no pause; 0 while waiters queue, the circuit is not
//!    closed, or the pair is disabled or draining) and `unreported` the permits taken and
//!    not yet reported.
//! 2. **Take** (handler): [`FastGrants::try_take`] lowers the counter by one, or finds 0
//!    and sends `Reserve` instead.
//! 3. **Decide** (actor, before any decision or report that counts calls): it takes the
//!    untaken permits back ([`PermitLedger::revoke`]), so [`PermitLedger::unreported`] is
//!    exact, and counts those calls as dispatched now and in flight.
//! 4. **Report** (actor, on the release): [`PermitLedger::report`] records that one taken
//!    permit has become a recorded dispatch (at the time the call left).
//!
//! **Why the limits hold.** Let `room` be what the recorded state allows at `now` and `u`
//! the permits taken but not yet reported when the replacement succeeds. The new count
//! is `room - u` (never negative), so unreported permits, old and new, never exceed
//! `room`. Recorded dispatches in any later 60 s window ending at `t >= now` are a subset
//! of those in the window at `now`, because every recorded dispatch is at or before `now`
//! until the next state change, which replaces the count again. So recorded + unreported
//! <= recorded + `room` <= the limit, for RPM, RPD and concurrency alike. The replacement
//! is a compare-and-swap against the value `u` was computed from, so a permit taken in
//! between makes it retry with the new `u`. A property test in the capacity tests
//! interleaves takes, grants, reports, `Reserve`s and time steps and checks RPM, RPD and
//! concurrency after every step.
//!
//! **Why one counter of *available* permits** rather than a pair (`taken`, `ceiling`): a
//! handler that read a ceiling and then incremented `taken` could overrun a ceiling the
//! actor lowered in between (a 429 pause, an opened circuit). With one counter the take
//! and the actor's replacement are each a single atomic step on the same word, so every
//! permit is either taken before the actor's replacement (and counted by it) or comes from
//! the new value.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The permits one key/model actor leaves for handlers.
#[derive(Debug, Default)]
pub struct FastGrants {
    available: AtomicU64,
}

impl FastGrants {
    /// Takes one permit if the actor left any. `true`: the call may go now.
    pub fn try_take(&self) -> bool {
        let mut a = self.available.load(Ordering::Acquire);
        loop {
            if a == 0 {
                return false;
            }
            match self.available.compare_exchange_weak(
                a,
                a - 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => a = now,
            }
        }
    }

    /// Permits left now.
    pub fn available(&self) -> u64 {
        self.available.load(Ordering::Acquire)
    }

    /// Takes every permit back; returns how many were left (actor side).
    pub(crate) fn revoke(&self) -> u64 {
        self.available.swap(0, Ordering::AcqRel)
    }

    /// Replaces `expected` permits by `new` if no permit was taken since `expected` was
    /// read (actor side).
    pub(crate) fn replace(&self, expected: u64, new: u64) -> Result<(), u64> {
        self.available
            .compare_exchange(expected, new, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| ())
    }
}

/// The actor's side of the protocol: how many permits it ever left and how many taken
/// ones it has been told about. Owned by the pair's `KeyModelCapacity`; only the actor
/// writes it.
#[derive(Debug, Default)]
pub struct PermitLedger {
    /// The counter shared with the handles.
    shared: Arc<FastGrants>,
    /// Permits ever left in `shared`, minus those taken back unused.
    issued: u64,
    /// Permits taken whose release has been reported (recorded into the window).
    reported: u64,
}

impl PermitLedger {
    /// A ledger over `shared` (the counter the handles take from).
    pub fn new(shared: Arc<FastGrants>) -> Self {
        Self {
            shared,
            issued: 0,
            reported: 0,
        }
    }

    /// The counter the handles take from.
    pub fn shared(&self) -> &Arc<FastGrants> {
        &self.shared
    }

    /// Permits taken and not yet reported. Exact right after [`revoke`](Self::revoke);
    /// otherwise a lower bound that may grow.
    pub fn unreported(&self) -> u64 {
        let taken = self.issued.saturating_sub(self.shared.available());
        taken.saturating_sub(self.reported)
    }

    /// Permits issued and not yet reported, taken or not: what the pair will have
    /// dispatched once every permit left now is taken too.
    pub fn outstanding(&self) -> u64 {
        self.issued.saturating_sub(self.reported)
    }

    /// Takes back the permits not taken yet, so that [`unreported`](Self::unreported) is
    /// exact while the actor decides (until the next [`grant`](Self::grant)).
    pub fn revoke(&mut self) {
        self.issued -= self.shared.revoke();
    }

    /// One taken permit was reported; returns how many have been so far.
    pub fn report(&mut self) -> u64 {
        self.reported += 1;
        self.reported
    }

    /// Leaves `room - unreported` permits (step 1 of the protocol; see the module
    /// header for why the limits hold). `room` is what the recorded state allows now.
    pub fn grant(&mut self, room: u64) {
        let mut available = self.shared.available();
        loop {
            let taken = self.issued - available;
            let unreported = taken.saturating_sub(self.reported);
            let new = room.saturating_sub(unreported);
            match self.shared.replace(available, new) {
                Ok(()) => {
                    self.issued = taken + new;
                    return;
                }
                Err(seen) => available = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_taken_until_none_is_left() {
        let g = FastGrants::default();
        assert!(!g.try_take());
        g.replace(0, 2).unwrap();
        assert!(g.try_take());
        assert!(g.try_take());
        assert!(!g.try_take());
        assert_eq!(g.revoke(), 0);
    }

    #[test]
    fn a_replacement_fails_when_a_permit_was_taken_since_it_was_read() {
        let g = FastGrants::default();
        g.replace(0, 3).unwrap();
        let seen = g.available();
        assert!(g.try_take());
        assert_eq!(g.replace(seen, 0), Err(2));
    }

    #[test]
    fn threads_never_take_more_permits_than_were_left() {
        let g = Arc::new(FastGrants::default());
        g.replace(0, 1_000).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let g = g.clone();
                std::thread::spawn(move || (0..1_000).filter(|_| g.try_take()).count())
            })
            .collect();
        let taken: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(taken, 1_000);
        assert_eq!(g.available(), 0);
    }

    #[test]
    fn a_grant_leaves_the_room_minus_the_permits_taken_and_not_reported() {
        let mut l = PermitLedger::default();
        l.grant(3);
        assert_eq!(l.shared().available(), 3);
        assert!(l.shared().try_take());
        assert!(l.shared().try_take());
        assert_eq!(l.unreported(), 2);
        assert_eq!(l.outstanding(), 3);
        // The room is still 3 by the recorded state: two are out, one more may go.
        l.grant(3);
        assert_eq!(l.shared().available(), 1);
        assert_eq!(l.report(), 1);
        assert_eq!(l.unreported(), 1);
        assert_eq!(l.outstanding(), 2);
        // A room smaller than what is out leaves none, never a negative count.
        l.grant(0);
        assert_eq!(l.shared().available(), 0);
        assert_eq!(l.unreported(), 1);
    }

    #[test]
    fn a_revoke_takes_back_only_the_untaken_permits() {
        let mut l = PermitLedger::default();
        l.grant(4);
        assert!(l.shared().try_take());
        l.revoke();
        assert_eq!(l.shared().available(), 0);
        assert_eq!(l.unreported(), 1);
        assert_eq!(l.outstanding(), 1);
        assert_eq!(l.report(), 1);
        assert_eq!(l.outstanding(), 0);
    }
}
