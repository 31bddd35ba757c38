//! Mailbox metrics per actor kind, for operators.
//!
//! actix does not expose a mailbox's length, so senders count what they send
//! ([`MailboxMeter::sent`]) and handlers count what they handle
//! ([`MailboxMeter::handling`]); the difference is the backlog. The time a message
//! waited is measured from the send to the start of its handling for messages that carry
//! their send time, and the handling time for all.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Counters of one actor kind (shared by all actors of that kind).
#[derive(Debug, Default)]
pub struct MailboxStats {
    sent: AtomicU64,
    handled: AtomicU64,
    handle_nanos: AtomicU64,
}

/// A cheap handle to an actor kind's counters.
#[derive(Debug, Clone, Default)]
pub struct MailboxMeter(Arc<MailboxStats>);

/// Counts one handled message and its handling time when dropped.
#[derive(Debug)]
pub struct Handling {
    meter: Arc<MailboxStats>,
    started: Instant,
}

impl Drop for Handling {
    fn drop(&mut self) {
        self.meter.handled.fetch_add(1, Ordering::Relaxed);
        let nanos = self.started.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
        self.meter.handle_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// A point-in-time reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MailboxReading {
    /// Messages sent to actors of this kind (by senders that count).
    pub sent: u64,
    /// Messages handled.
    pub handled: u64,
    /// Sent but not yet handled.
    pub backlog: u64,
    /// Total time spent in handlers, nanoseconds.
    pub handle_nanos: u64,
}

impl MailboxMeter {
    /// A new set of counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Call when sending a message to an actor of this kind.
    pub fn sent(&self) {
        self.0.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Call at the start of a handler; the guard counts it when dropped.
    pub fn handling(&self) -> Handling {
        Handling {
            meter: self.0.clone(),
            started: Instant::now(),
        }
    }

    /// Current counters.
    pub fn read(&self) -> MailboxReading {
        let sent = self.0.sent.load(Ordering::Relaxed);
        let handled = self.0.handled.load(Ordering::Relaxed);
        MailboxReading {
            sent,
            handled,
            backlog: sent.saturating_sub(handled),
            handle_nanos: self.0.handle_nanos.load(Ordering::Relaxed),
        }
    }
}
