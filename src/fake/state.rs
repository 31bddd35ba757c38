//! What the fake's worker threads share: the request log, the fault scripts, the
//! options and the provider-side rate limits. Every lock is held only to copy or push a
//! value (or to count one arrival), never across an await. The options are kept behind
//! an `Arc` so that a call takes them without copying the limit and per-model lists.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use super::limits::{ArrivalLimits, Refused};
use super::{FakeOptions, Fault, RecordedRequest};

/// Shared state of one fake server.
#[derive(Debug)]
pub(crate) struct Shared {
    log: Mutex<Log>,
    scripts: Mutex<HashMap<String, VecDeque<Fault>>>,
    options: Mutex<Arc<FakeOptions>>,
    limits: Mutex<ArrivalLimits>,
}

/// The request log; `next_id` survives `clear` so a late status update of a cleared
/// request cannot land on a newer one.
#[derive(Debug, Default)]
struct Log {
    next_id: u64,
    entries: Vec<(u64, RecordedRequest)>,
}

/// A poisoned lock only means another handler panicked; the data is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn new(options: FakeOptions) -> Self {
        Self {
            log: Mutex::new(Log::default()),
            scripts: Mutex::new(HashMap::new()),
            limits: Mutex::new(ArrivalLimits::new(options.limits.clone())),
            options: Mutex::new(Arc::new(options)),
        }
    }

    /// Appends a request and returns its id for [`Shared::set_status`].
    pub(crate) fn record(&self, request: RecordedRequest) -> u64 {
        let mut log = lock(&self.log);
        let id = log.next_id;
        log.next_id += 1;
        log.entries.push((id, request));
        id
    }

    /// Sets the answered status of a recorded request (no-op if it was cleared).
    pub(crate) fn set_status(&self, id: u64, status: u16) {
        let mut log = lock(&self.log);
        if let Some((_, r)) = log.entries.iter_mut().rev().find(|(i, _)| *i == id) {
            r.status = status;
        }
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.log)
            .entries
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }

    pub(crate) fn clear(&self) {
        lock(&self.log).entries.clear();
    }

    pub(crate) fn script(&self, model: &str, faults: impl IntoIterator<Item = Fault>) {
        let faults: Vec<Fault> = faults.into_iter().collect();
        lock(&self.scripts)
            .entry(model.to_owned())
            .or_default()
            .extend(faults);
    }

    /// Takes the next scripted fault of a model, if any.
    pub(crate) fn next_fault(&self, model: &str) -> Option<Fault> {
        let mut scripts = lock(&self.scripts);
        let queue = scripts.get_mut(model)?;
        let fault = queue.pop_front();
        if queue.is_empty() {
            scripts.remove(model);
        }
        fault
    }

    pub(crate) fn options(&self) -> Arc<FakeOptions> {
        Arc::clone(&lock(&self.options))
    }

    pub(crate) fn set_options(&self, options: FakeOptions) {
        lock(&self.limits).set_limits(options.limits.clone());
        *lock(&self.options) = Arc::new(options);
    }

    /// Counts a valid call arriving at `at` against the limits, or refuses it.
    pub(crate) fn arrive(
        &self,
        credential: Option<&str>,
        model: &str,
        at: SystemTime,
    ) -> Result<(), Refused> {
        let micros = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        lock(&self.limits).arrive(credential, model, micros)
    }

    /// How many calls the limits refused.
    pub(crate) fn limit_refusals(&self) -> u64 {
        lock(&self.limits).refused()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeApi;

    fn req(model: &str) -> RecordedRequest {
        RecordedRequest {
            api: FakeApi::OpenAi,
            path: "/v1/chat/completions".into(),
            model: model.into(),
            credential: None,
            headers: Vec::new(),
            query: String::new(),
            peer: None,
            body: serde_json::Value::Null,
            received_at: std::time::SystemTime::now(),
            status: 0,
        }
    }

    #[test]
    fn status_update_survives_clear_without_hitting_newer_requests() {
        let s = Shared::new(FakeOptions::default());
        let old = s.record(req("a"));
        s.clear();
        let new = s.record(req("b"));
        s.set_status(old, 500);
        s.set_status(new, 200);
        let all = s.requests();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].model, "b");
        assert_eq!(all[0].status, 200);
    }

    #[test]
    fn scripts_are_per_model_and_in_order() {
        let s = Shared::new(FakeOptions::default());
        s.script("m", [Fault::Hang, Fault::Malformed]);
        s.script("m", [Fault::EmptyContent]);
        assert_eq!(s.next_fault("other"), None);
        assert_eq!(s.next_fault("m"), Some(Fault::Hang));
        assert_eq!(s.next_fault("m"), Some(Fault::Malformed));
        assert_eq!(s.next_fault("m"), Some(Fault::EmptyContent));
        assert_eq!(s.next_fault("m"), None);
    }
}
