//! bkvy's actor system and the plain-struct logic it wraps.
//!
//! Each actor is the single writer of its state and publishes a read-only view; the
//! request path reads views and messages an actor only when the view says no.
//!
//! ```text
//!   HTTP handler ── RoutingTable::plan: reads every candidate's Published estimate
//!        │                              (choice::choose fixes the attempt order; no message)
//!        ├── takes a permit the actor left (FastGrants, compare-and-swap; no message)
//!        │   └─ none left ──Reserve / CancelWait──▶ KeyModelActor (FIFO grant → LeaseGuard)
//!        ├── upstream call (in the handler, never in an actor)
//!        └── release: a success on a permit joins a batch (FlushReleases);
//!            anything else ──Release{outcome}──▶ KeyModelActor (429 → pause; NotSent → back)
//!   RouterActor: reads the one live table and fans KeyAuthFailed out as Disable
//!   StatsActor, DashboardActor: take CompletedBatch (try_send), answer reads from memory
//! ```
//!
//! One folder per actor, holding its messages, the actor and the plain structs it wraps:
//!
//! ```text
//!   key_model/   KeyModelActor (mod.rs) · capacity (what one pair may do now) ·
//!                rate_window · waiters (bounded FIFO) · circuit · permits (the permit
//!                protocol and its proof) · published (the view) · handle (how others
//!                talk to it: KeyModelHandle, LeaseGuard)
//!   router/      RouterActor (mod.rs) · table (RoutingTable::plan) · choice (the rule)
//!   stats/       StatsActor · counters, daily files, CSV log and its writer thread
//!   dashboard/   DashboardActor · minute/hour buckets, report, CSV loader
//!   clock · ids · events (RequestCompleted) · mailbox (metrics) · persist (snapshots)
//! ```
//!
//! The actors only translate messages into calls on the plain structs, which carry the
//! unit and property tests (and the mutation scores in docs/TESTING.md).

pub mod clock;
pub mod dashboard;
pub mod events;
pub mod ids;
pub mod key_model;
pub mod mailbox;
pub mod persist;
pub mod router;
pub mod stats;

pub use clock::{Clock, ManualClock, Millis, SharedClock, SystemClock};
pub use dashboard::{DashboardActor, GetDashboard, GetDashboardStatus};
pub use events::{AttemptError, CompletedBatch, RequestCompleted};
pub use ids::{KeyModelId, RoutingMethod, Tier};
pub use key_model::capacity::{
    CapacityStatus, Lease, Outcome, ProbeRecord, Rejection, WaitEstimate,
};
pub use key_model::handle::{KeyModelHandle, LeaseGuard, Want};
pub use key_model::{KeyModelActor, KeyModelSpec};
pub use mailbox::{MailboxMeter, MailboxReading};
pub use router::{
    Candidate, Considered, KeyAuthFailed, Ping, Plan, Planned, ProviderNames, Route, RouteError,
    RouteTarget, RouterActor, RoutingTable, ScenarioStep, TableSource,
};
pub use stats::{StatsActor, StatsOptions};

use std::sync::Arc;

use actix::Actor;

/// Starts one key/model actor per spec on the current arbiter, all sharing one meter.
pub fn start_key_models(
    specs: Vec<KeyModelSpec>,
    clock: &SharedClock,
    meter: &MailboxMeter,
) -> Vec<KeyModelHandle> {
    start_key_models_with_state(specs, clock, meter, None, &persist::Loaded::default())
}

/// Like [`start_key_models`], restoring each pair from `loaded` and saving its state to
/// `store`.
pub fn start_key_models_with_state(
    specs: Vec<KeyModelSpec>,
    clock: &SharedClock,
    meter: &MailboxMeter,
    store: Option<&persist::StateStore>,
    loaded: &persist::Loaded,
) -> Vec<KeyModelHandle> {
    specs
        .into_iter()
        .map(|spec| {
            let shared = Arc::new(spec.clone());
            let restore = loaded.snapshots.get(&spec.id);
            let published = Arc::new(key_model::published::Published::default());
            let actor = KeyModelActor::new(
                spec,
                clock.clone(),
                meter.clone(),
                store.cloned(),
                restore,
                published.clone(),
            );
            KeyModelHandle::new(shared, actor.start(), meter.clone(), published)
        })
        .collect()
}
