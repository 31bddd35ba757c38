//! Optional background health probes (off by default).
//!
//! [`ProbeOptions`] is plain data: the binary fills it from its command line
//! (`--health-probe-enabled`, `--health-probe-interval-seconds`, or the environment
//! variables `HEALTH_PROBE_ENABLED` and `HEALTH_PROBE_INTERVAL_SECONDS`); this module
//! reads no environment. Every interval each (provider, key) is checked with the
//! provider's free model-list endpoint; the result goes to every key/model actor of that
//! key, where it is shown in `/circuits/status` and lets an open circuit (not one opened by
//! an authentication failure) try again at once when the provider answers.
//!
//! One slow provider must not freeze the others' probes: each probe is bounded as a whole
//! (head and body together) by [`probe_timeout`], the shorter of 10 s and the interval
//! (at least 1 s), and each key is probed on its own task, so the next round of the
//! other keys starts on time while one still waits; a key whose last probe is still
//! running is skipped for that round rather than probed twice at once.

use std::cell::RefCell;
use std::collections::HashSet;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::clients::Clients;
use crate::providers::probe::{model_list_request, probe};
use crate::providers::redact::stored;
use crate::providers::UpstreamError;
use crate::state::AppState;

/// Longest time allowed for one probe, head and body together.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Shortest probe time limit, however short the interval.
const MIN_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// When and how often to probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeOptions {
    /// Whether probes run.
    pub enabled: bool,
    /// Time between two rounds.
    pub interval: Duration,
}

impl ProbeOptions {
    /// `HEALTH_PROBE_INTERVAL_SECONDS` default.
    pub const DEFAULT_INTERVAL_SECONDS: u64 = 60;

    /// Probes off.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            interval: Duration::from_secs(Self::DEFAULT_INTERVAL_SECONDS),
        }
    }
}

/// The time one probe may take, head and body together: at most 10 s and at most the
/// interval, so that a probe is over before its key's next one is due (but never under
/// 1 s).
pub fn probe_timeout(interval: Duration) -> Duration {
    PROBE_TIMEOUT.min(interval.max(MIN_PROBE_TIMEOUT))
}

/// A (provider, key) pair as the probes name it.
type KeyName = (String, String);

/// The probe of every key of the live config: its name and the future that probes it
/// (within `timeout`) and hands the result to the key's key/model actors.
fn key_probes(
    state: &AppState,
    clients: &Clients,
    timeout: Duration,
) -> Vec<(KeyName, impl Future<Output = ()> + 'static)> {
    let live = state.live();
    let config = &live.upstreams.config;
    let mut probes = Vec::new();
    for p in &config.providers {
        for k in &p.keys {
            // Any model the key serves gives the endpoint's host and the auth headers.
            let Some(model) = p.models.iter().find(|m| k.limits_for(&m.name).is_some()) else {
                continue;
            };
            let req = model_list_request(p, model, k.secret.as_ref());
            let client = clients.get(p.connect_timeout).clone();
            let kind = p.kind;
            let redactor = live.upstreams.redactor.clone();
            let handles: Vec<_> = live
                .table
                .candidates
                .iter()
                .filter(|c| c.id().provider == p.name && c.id().key_id == k.id)
                .map(|c| c.handle.clone())
                .collect();
            let run = async move {
                // The whole exchange, a body that trickles included, within the limit.
                let result =
                    actix_web::rt::time::timeout(timeout, probe(&client, kind, &req, timeout))
                        .await
                        .unwrap_or(Err(UpstreamError::Timeout));
                let (ok, error) = match result {
                    Ok(()) => (true, None),
                    // Stored in the pairs' status: no secret, no quoted text.
                    Err(e) => (
                        false,
                        Some(stored(&redactor.error(e).to_string()).into_owned()),
                    ),
                };
                for h in handles {
                    h.probe_result(ok, error.clone());
                }
            };
            probes.push(((p.name.clone(), k.id.clone()), run));
        }
    }
    probes
}

/// One round: every key of every provider, concurrently, each within `timeout`; returns
/// when all are done.
pub async fn probe_all(state: &AppState, clients: &Clients, timeout: Duration) {
    let rounds = key_probes(state, clients, timeout)
        .into_iter()
        .map(|(_, run)| run);
    futures::future::join_all(rounds).await;
}

/// Runs probe rounds forever on the current arbiter: every interval, each key whose last
/// probe is over is probed on a task of its own.
pub fn start(state: Arc<AppState>, opts: ProbeOptions) {
    if !opts.enabled {
        return;
    }
    actix_web::rt::spawn(async move {
        let clients = Clients::for_config(&state.live().upstreams.config);
        let timeout = probe_timeout(opts.interval);
        let busy: Rc<RefCell<HashSet<KeyName>>> = Rc::default();
        loop {
            for (name, run) in key_probes(&state, &clients, timeout) {
                if !busy.borrow_mut().insert(name.clone()) {
                    continue;
                }
                let busy = Rc::clone(&busy);
                actix_web::rt::spawn(async move {
                    run.await;
                    busy.borrow_mut().remove(&name);
                });
            }
            actix_web::rt::time::sleep(opts.interval).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_never_outlives_its_interval_nor_ten_seconds() {
        assert_eq!(
            probe_timeout(Duration::from_secs(60)),
            Duration::from_secs(10)
        );
        assert_eq!(
            probe_timeout(Duration::from_secs(3)),
            Duration::from_secs(3)
        );
        assert_eq!(
            probe_timeout(Duration::from_millis(200)),
            Duration::from_secs(1)
        );
    }
}
