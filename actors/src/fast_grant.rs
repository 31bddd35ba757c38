//! Capacity a key/model actor grants in advance, taken by HTTP handlers without a message.
//!
//! Asking the actor for every slot (`Reserve` and its reply) cost a wake-up of the actor
//! thread and of the handler's thread per request, the largest item of bkvy's own cost.
//! So after every change of its state the actor computes how many calls could start right
//! now (its *room*) and leaves that many permits in one atomic counter; a handler that
//! finds a permit takes it with a compare-and-swap and calls upstream at once. The actor
//! stays the only one that decides how much capacity exists: handlers only ever take what
//! it left, and it learns of each taken permit from the lease's release (a `Release`
//! message, or for a success the batch it takes in on `FlushReleases`).
//!
//! Why one counter of *available* permits rather than a pair (`taken`, `ceiling`): a
//! handler that read a ceiling and then incremented `taken` could overrun a ceiling the
//! actor lowered in between (a 429 pause, an opened circuit). With one counter the take
//! and the actor's replacement are each a single atomic step on the same word, so every
//! permit is either taken before the actor's replacement (and counted by it) or comes from
//! the new value.
//!
//! The bookkeeping (how many permits were ever issued, how many taken ones the actor has
//! been told about) lives in [`KeyModelCapacity`](crate::capacity::KeyModelCapacity).

use std::sync::atomic::{AtomicU64, Ordering};

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

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
}
