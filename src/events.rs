//! Fan-out of completion events from the HTTP handlers to their consumers.
//!
//! Handlers never wait for a consumer: each batch of events is offered with `try_send` to
//! every subscribed actor (whose mailbox is large and whose handler is O(1) per event); a
//! batch that does not fit is counted as dropped events rather than slowing or failing
//! the request.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix::Recipient;
use bkvy_actors::{CompletedBatch, MailboxMeter, RequestCompleted};

use crate::metrics::Metrics;
use crate::providers::redact::stored;

/// How long an event may wait in the batch before it is delivered.
const EVENT_FLUSH: Duration = Duration::from_millis(20);
/// A batch this long is delivered at once.
const EVENT_BATCH: usize = 256;

/// The subscribers of completion events: the metrics (updated in place) and the actors.
///
/// Events reach the actors in batches, one message per batch and actor: delivering each
/// one at once woke the actors' thread once per request. The first event of a batch
/// starts an `EVENT_FLUSH` timer on the handler's own thread; a full batch, a statistics or dashboard read ([`flush`])
/// and shutdown deliver what is pending at once, so a read always sees every request
/// answered before it.
///
/// [`flush`]: CompletionSinks::flush
pub struct CompletionSinks {
    metrics: Arc<Metrics>,
    inner: Arc<Inner>,
}

struct Inner {
    recipients: Vec<(Recipient<CompletedBatch>, MailboxMeter)>,
    dropped: AtomicU64,
    pending: Mutex<Vec<RequestCompleted>>,
}

impl CompletionSinks {
    /// Sinks updating `metrics` and delivering to these actors (each with the meter of
    /// its mailbox).
    pub fn new(
        metrics: Arc<Metrics>,
        recipients: Vec<(Recipient<CompletedBatch>, MailboxMeter)>,
    ) -> Self {
        Self {
            metrics,
            inner: Arc::new(Inner {
                recipients,
                dropped: AtomicU64::new(0),
                pending: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Counts the event in the metrics and queues it for every subscriber, never waiting.
    ///
    /// The event's error message is stored (CSV, dashboard) only up to its first
    /// quotation mark ([`stored`]): what an upstream or the request parser quoted of the
    /// request never reaches a file or a page.
    pub fn emit(&self, mut event: RequestCompleted) {
        if let Some(m) = &event.error_message {
            if let Cow::Owned(cut) = stored(m) {
                event.error_message = Some(cut);
            }
        }
        self.metrics.observe(&event);
        if self.inner.recipients.is_empty() {
            return;
        }
        let queued = {
            let mut p = self
                .inner
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            p.push(event);
            p.len()
        };
        if queued >= EVENT_BATCH {
            self.inner.deliver();
        } else if queued == 1 {
            let inner = self.inner.clone();
            actix_web::rt::spawn(async move {
                actix_web::rt::time::sleep(EVENT_FLUSH).await;
                inner.deliver();
            });
        }
    }

    /// Delivers every pending event now (before a statistics read, and at shutdown).
    pub fn flush(&self) {
        self.inner.deliver();
    }

    /// Events that could not be delivered.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }
}

impl Inner {
    fn deliver(&self) {
        let batch =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        if batch.is_empty() {
            return;
        }
        let events = batch.len() as u64;
        let batch = CompletedBatch::from(batch);
        for (r, meter) in &self.recipients {
            if r.try_send(batch.clone()).is_ok() {
                meter.sent();
            } else {
                let before = self.dropped.fetch_add(events, Ordering::Relaxed);
                // Warn when the count crosses a power of two, not on every lost batch.
                if (before + events).ilog2() != before.checked_ilog2().unwrap_or(u32::MAX) {
                    log::warn!(
                        "{} completion events dropped: a consumer's mailbox is full",
                        before + events
                    );
                }
            }
        }
    }
}
