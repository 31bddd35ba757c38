//! The state every worker shares, below the web layer: the live snapshot (config and
//! routing table, swapped whole by a reload) and the handles of the actors and sinks.
//!
//! It lives here rather than in `http/` so that reload, probes and the server build on it
//! without importing the web layer; what only the web layer needs (request limits, the
//! admin allow-list, the dashboard) is [`crate::http::WebState`].

use std::sync::Arc;

use actix::Addr;
use arc_swap::ArcSwap;
use bkvy_actors::{MailboxMeter, RouterActor, RoutingTable, SharedClock, StatsActor};

use crate::events::CompletionSinks;
use crate::gateway::Upstreams;
use crate::metrics::Metrics;

/// What a config reload replaces, swapped atomically: a request loads it once and works
/// on that snapshot to the end, whatever reloads happen meanwhile.
pub struct Live {
    /// Config, router and clock for execution.
    pub upstreams: Upstreams,
    /// The routing table: every key/model handle with its tier and price, the providers'
    /// names and the scenarios. This is the only copy; the router reads it from here.
    pub table: Arc<RoutingTable>,
}

/// State shared by every worker.
pub struct AppState {
    /// The current config and routing table. Written only by [`crate::reload::apply`]
    /// (under `reload_lock`) and at start.
    pub live: Arc<ArcSwap<Live>>,
    /// Where the config was read from (reload re-reads it there).
    pub config_dir: Option<std::path::PathBuf>,
    /// Where key/model state is persisted (new pairs of a reload save there too).
    pub state_store: Option<bkvy_actors::persist::StateStore>,
    /// One reload at a time.
    pub reload_lock: tokio::sync::Mutex<()>,
    /// The router (takes a key's pairs out of rotation when the key fails authentication).
    pub router: Addr<RouterActor>,
    /// Time source.
    pub clock: SharedClock,
    /// Mailbox counters of the router.
    pub router_meter: MailboxMeter,
    /// Mailbox counters of the key/model actors.
    pub key_model_meter: MailboxMeter,
    /// Where completion events go.
    pub sinks: CompletionSinks,
    /// Operator metrics.
    pub metrics: Arc<Metrics>,
    /// The statistics actor (the `/statistics/*` endpoints ask it).
    pub stats: Addr<StatsActor>,
    /// What each client of `clients.json` has used and spent (kept across reloads, and
    /// across restarts when `STATE_DIR` is set).
    pub ledger: Arc<crate::client_ledger::SharedLedger>,
    /// A reload must keep `clients.json` (see `ServerOptions::require_client_keys`).
    pub require_client_keys: bool,
}

impl AppState {
    /// The current config and routing table.
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }
}
