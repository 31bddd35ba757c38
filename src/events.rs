//! Fan-out of completion events from the HTTP handlers to their consumers.
//!
//! Handlers never wait for a consumer: each event is offered with `try_send` to every
//! subscribed actor (whose mailbox is large and whose handler is O(1)); an event that does
//! not fit is counted as dropped rather than slowing or failing the request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix::Recipient;
use bkvy_actors::{MailboxMeter, RequestCompleted};

use crate::metrics::Metrics;

/// The subscribers of completion events: the metrics (updated in place) and the actors.
pub struct CompletionSinks {
    metrics: Arc<Metrics>,
    recipients: Vec<(Recipient<RequestCompleted>, MailboxMeter)>,
    dropped: AtomicU64,
}

impl CompletionSinks {
    /// Sinks updating `metrics` and delivering to these actors (each with the meter of
    /// its mailbox).
    pub fn new(
        metrics: Arc<Metrics>,
        recipients: Vec<(Recipient<RequestCompleted>, MailboxMeter)>,
    ) -> Self {
        Self {
            metrics,
            recipients,
            dropped: AtomicU64::new(0),
        }
    }

    /// Counts the event in the metrics and offers it to every subscriber without waiting.
    pub fn emit(&self, event: RequestCompleted) {
        self.metrics.observe(&event);
        let Some((last, rest)) = self.recipients.split_last() else {
            return;
        };
        for r in rest {
            self.offer(r, event.clone());
        }
        self.offer(last, event);
    }

    fn offer(
        &self,
        (r, meter): &(Recipient<RequestCompleted>, MailboxMeter),
        event: RequestCompleted,
    ) {
        if r.try_send(event).is_ok() {
            meter.sent();
        } else {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                log::warn!("{n} completion events dropped: a consumer's mailbox is full");
            }
        }
    }

    /// Events that could not be delivered.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}
