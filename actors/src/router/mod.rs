//! `RouterActor`: takes a key's pairs out of rotation when the key fails authentication
//! (`KeyAuthFailed` fans out as `Disable` to every key/model actor of that key), and
//! answers `/health`'s ping. It reads the one live [`RoutingTable`] (owned by the
//! gateway's live snapshot, swapped whole on reload) and keeps no copy of its own.
//!
//! Routing itself needs no message: [`RoutingTable::plan`] (in [`table`]) reads the
//! estimates the key/model actors publish, and [`choice`] is the rule as a pure function.

pub mod choice;
pub mod table;

use std::sync::Arc;

use actix::prelude::*;

use crate::mailbox::MailboxMeter;
pub use table::{
    Candidate, Considered, Plan, Planned, ProviderNames, Route, RouteError, RouteTarget,
    RoutingTable, ScenarioStep,
};

/// Command: authentication failed for a key; take it out of rotation for all its models.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct KeyAuthFailed {
    /// Provider name.
    pub provider: String,
    /// Key id.
    pub key_id: String,
    /// What upstream said (status and short message, no secrets).
    pub message: String,
}

/// Query: is the router alive (`GET /health`)?
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Ping;

/// Where the router reads the current routing table. The table has one owner (the
/// gateway's live snapshot, swapped whole on reload); the router keeps no copy, so a
/// message handled just after a reload already sees the new table.
pub type TableSource = Box<dyn Fn() -> Arc<RoutingTable>>;

/// The actor.
pub struct RouterActor {
    /// The current table, read when a message needs it.
    table: TableSource,
    /// Mailbox counters of the router.
    meter: MailboxMeter,
}

impl RouterActor {
    /// A router reading the table from `table`.
    pub fn new(table: TableSource, meter: MailboxMeter) -> Self {
        Self { table, meter }
    }
}

impl Actor for RouterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(crate::key_model::MAILBOX_CAPACITY);
    }
}

impl Handler<KeyAuthFailed> for RouterActor {
    type Result = ();

    fn handle(&mut self, msg: KeyAuthFailed, _: &mut Self::Context) {
        let _m = self.meter.handling();
        for c in &(self.table)().candidates {
            let id = c.id();
            if id.provider == msg.provider && id.key_id == msg.key_id {
                c.handle
                    .disable(format!("authentication failed: {}", msg.message));
            }
        }
    }
}

impl Handler<Ping> for RouterActor {
    type Result = ();

    fn handle(&mut self, _: Ping, _: &mut Self::Context) {
        let _m = self.meter.handling();
    }
}
