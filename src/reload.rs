//! Config reload without restart (`SIGHUP` or `POST /admin/reload`).
//!
//! The config is re-read and validated; an invalid one is rejected with every problem and
//! the running config stays. A valid one replaces config and routing table in one atomic
//! swap: key/model pairs that still exist keep their actor (and with it their RPM/RPD
//! counts, queue, pauses and circuit) and get their new limits; new pairs get new actors;
//! removed pairs finish what they have and are dropped. Requests already running finish
//! on the snapshot they started with. The swap is the routing table's only writer: the
//! router reads the table from the same snapshot, so there is no copy to keep in step.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::web;
use bkvy_actors::persist::Loaded;
use bkvy_actors::{start_key_models_with_state, Candidate, KeyModelId};
use serde::Serialize;

use crate::config::{self, Config, ConfigProblem};
use crate::gateway::Upstreams;
use crate::providers::Redactor;
use crate::state::{AppState, Live};
use crate::table::{pair_specs, table_of};

/// Why a reload did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// bkvy was started without a config directory (tests, demo).
    #[error("reload is not available: bkvy was started without a config directory")]
    NoConfigDir,
    /// The new config has problems; the running one stays.
    #[error("the new config has {} problem(s); the running config stays", .0.len())]
    Invalid(Vec<ConfigProblem>),
    /// Reading the files failed in a way that is not a config problem.
    #[error("reload failed: {0}")]
    Failed(String),
}

/// What a reload changed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReloadReport {
    /// Pairs that are new.
    pub added: usize,
    /// Pairs that were kept (with their state) and given their new limits.
    pub kept: usize,
    /// Pairs that are gone.
    pub removed: usize,
}

/// Re-reads the config directory and applies it.
pub async fn reload(state: &AppState) -> Result<ReloadReport, ReloadError> {
    let _one_at_a_time = state.reload_lock.lock().await;
    let dir = state.config_dir.clone().ok_or(ReloadError::NoConfigDir)?;
    let loaded = web::block(move || config::load(&dir))
        .await
        .map_err(|e| ReloadError::Failed(e.to_string()))?;
    let config = loaded.map_err(ReloadError::Invalid)?;
    if state.require_client_keys && config.clients.is_none() {
        return Err(ReloadError::Invalid(vec![ConfigProblem {
            path: "clients.json".into(),
            message: "required: bkvy listens on a non-loopback address and was not started \
                      with --allow-unauthenticated"
                .into(),
        }]));
    }
    if state.live().upstreams.config.clients.is_some() && config.clients.is_none() {
        log::warn!(
            "config reload removes client keys (clients.json is gone): every /llm and /v1 \
             request is accepted without a key from now on"
        );
    }
    let report = apply(state, config);
    log::info!(
        "config reloaded: {} pair(s) added, {} kept, {} removed",
        report.added,
        report.kept,
        report.removed
    );
    Ok(report)
}

/// Swaps in a validated config.
pub fn apply(state: &AppState, config: Config) -> ReloadReport {
    let old = state.live();
    let mut existing: HashMap<&KeyModelId, &Arc<Candidate>> =
        old.table.candidates.iter().map(|c| (c.id(), c)).collect();
    let mut candidates = Vec::new();
    let (mut added, mut kept) = (0, 0);
    for (spec, tier, cost_per_1k) in pair_specs(&config) {
        let handle = match existing.remove(&spec.id) {
            Some(c) => {
                kept += 1;
                let secret = |cfg: &Config| {
                    cfg.provider(&spec.id.provider)
                        .and_then(|p| p.key(&spec.id.key_id))
                        .and_then(|k| k.secret.clone())
                };
                let key_changed = secret(&old.upstreams.config) != secret(&config);
                c.handle.reconfigure(spec, key_changed)
            }
            None => {
                added += 1;
                let mut started = start_key_models_with_state(
                    vec![spec],
                    &state.clock,
                    &state.key_model_meter,
                    state.state_store.as_ref(),
                    &Loaded::default(),
                );
                match started.pop() {
                    Some(h) => h,
                    None => continue,
                }
            }
        };
        candidates.push(Arc::new(Candidate {
            handle,
            tier,
            cost_per_1k,
        }));
    }
    let removed = existing.len();
    let table = Arc::new(table_of(&config, candidates));
    state.live.store(Arc::new(Live {
        upstreams: Upstreams {
            redactor: Arc::new(Redactor::for_config(&config)),
            config: Arc::new(config),
            ..old.upstreams.clone()
        },
        table,
    }));
    ReloadReport {
        added,
        kept,
        removed,
    }
}
