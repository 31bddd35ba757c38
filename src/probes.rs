//! Optional background health probes (off by default).
//!
//! [`ProbeOptions`] is plain data: the binary fills it from its command line
//! (`--health-probe-enabled`, `--health-probe-interval-seconds`, or the environment
//! variables `HEALTH_PROBE_ENABLED` and `HEALTH_PROBE_INTERVAL_SECONDS`); this module
//! reads no environment. Every interval each (provider, key) is checked with the
//! provider's free model-list endpoint; the result goes to every key/model actor of that
//! key, where it is shown in `/circuits/status` and lets an open circuit (not one opened by
//! an authentication failure) try again at once when the provider answers.

use std::sync::Arc;
use std::time::Duration;

use crate::clients::Clients;
use crate::providers::probe::{model_list_request, probe};
use crate::providers::redact::stored;
use crate::state::AppState;

/// Time allowed for one probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

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

/// One round: every key of every provider, concurrently.
pub async fn probe_all(state: &AppState, clients: &Clients) {
    let live = state.live();
    let config = &live.upstreams.config;
    let mut rounds = Vec::new();
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
            rounds.push(async move {
                let result = probe(&client, kind, &req, PROBE_TIMEOUT).await;
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
            });
        }
    }
    futures::future::join_all(rounds).await;
}

/// Runs probe rounds forever on the current arbiter.
pub fn start(state: Arc<AppState>, opts: ProbeOptions) {
    if !opts.enabled {
        return;
    }
    actix_web::rt::spawn(async move {
        let clients = Clients::for_config(&state.live().upstreams.config);
        loop {
            probe_all(&state, &clients).await;
            actix_web::rt::time::sleep(opts.interval).await;
        }
    });
}
