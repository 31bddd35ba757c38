//! `DashboardActor`: the aggregates behind the web dashboard, kept in memory so a page or a
//! data request never reads the transaction CSV.
//!
//! It receives the same [`RequestCompleted`](crate::RequestCompleted) events as the `StatsActor` and counts each in
//! per-minute and per-hour buckets ([`store`]); at start-up a thread of its own loads the
//! CSV history in `LOG_DIR` ([`loader`]) and hands it back to be merged. Queries
//! ([`GetDashboard`]) add up the buckets of the range, which takes milliseconds for any
//! range up to a year. The logic lives in plain structs with unit tests; the actor only
//! translates messages.

pub mod agg;
pub mod hist;
pub mod loader;
pub mod range;
pub mod report;
pub mod store;
pub mod tx;

use std::path::PathBuf;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

pub use range::TimeRange;
pub use report::Report;

use crate::clock::SharedClock;
use crate::events::CompletedBatch;
use loader::Loaded;
use store::Store;
use tx::Tx;

/// Mailbox bound: completion events are offered with `try_send` and dropped beyond it.
pub const MAILBOX_CAPACITY: usize = 65_536;
/// How often expired buckets are dropped.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// Query: the report for a range.
#[derive(Debug, Message)]
#[rtype(result = "Report")]
pub struct GetDashboard {
    /// The range.
    pub range: TimeRange,
}

/// Query: whether history has been loaded, and how much is kept.
#[derive(Debug, Message)]
#[rtype(result = "DashboardStatus")]
pub struct GetDashboardStatus;

/// The answer to [`GetDashboardStatus`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DashboardStatus {
    /// Whether the CSV history has been read (always true without a log directory).
    pub history_loaded: bool,
    /// Rows read from the CSV history.
    pub history_rows: u64,
    /// CSV rows that could not be read.
    pub malformed_rows: u64,
    /// Transactions counted in all.
    pub rows: u64,
    /// Minute and hour buckets kept.
    pub buckets: usize,
}

/// The actor.
pub struct DashboardActor {
    clock: SharedClock,
    log_dir: Option<PathBuf>,
    store: Store,
    history_loaded: bool,
    history_rows: u64,
    malformed: u64,
    meter: crate::mailbox::MailboxMeter,
}

impl DashboardActor {
    /// Counts this actor's messages in `meter` (mailbox metrics).
    pub fn with_meter(mut self, meter: crate::mailbox::MailboxMeter) -> Self {
        self.meter = meter;
        self
    }

    /// An actor that loads history from `log_dir` (if given) when started.
    pub fn new(clock: SharedClock, log_dir: Option<PathBuf>) -> Self {
        Self {
            clock,
            log_dir,
            store: Store::default(),
            history_loaded: false,
            history_rows: 0,
            malformed: 0,
            meter: crate::mailbox::MailboxMeter::new(),
        }
    }

    fn start_loader(&mut self, ctx: &mut Context<Self>) {
        let Some(dir) = self.log_dir.clone() else {
            self.history_loaded = true;
            return;
        };
        let now = self.clock.now_ms();
        let (tx, rx) = oneshot::channel::<Loaded>();
        let spawned = std::thread::Builder::new()
            .name("bkvy-dashboard-loader".into())
            .spawn(move || {
                let loaded = loader::load_dir(&dir, now, now);
                let _ = tx.send(loaded);
            });
        if let Err(e) = spawned {
            log::error!("cannot start the dashboard history loader: {e}");
            self.history_loaded = true;
            return;
        }
        ctx.spawn(rx.into_actor(self).map(|r, act, _| {
            let loaded = r.unwrap_or_default();
            log::info!(
                "dashboard: {} transaction(s) loaded from {} file(s), {} unreadable row(s)",
                loaded.store.rows,
                loaded.files,
                loaded.malformed
            );
            act.history_rows = loaded.store.rows;
            act.malformed = loaded.malformed;
            act.store.merge_history(loaded.store);
            act.history_loaded = true;
        }));
    }
}

impl Actor for DashboardActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        self.start_loader(ctx);
        ctx.run_interval(PRUNE_INTERVAL, |act, _| {
            let now = act.clock.now_ms();
            act.store.prune(now);
        });
    }
}

impl Handler<CompletedBatch> for DashboardActor {
    type Result = ();

    fn handle(&mut self, events: CompletedBatch, _: &mut Self::Context) {
        let _m = self.meter.handling();
        let now = self.clock.now_ms();
        for ev in events.0.iter() {
            self.store.record(Tx::from_event(ev), now);
        }
    }
}

impl Handler<GetDashboard> for DashboardActor {
    type Result = MessageResult<GetDashboard>;

    fn handle(&mut self, msg: GetDashboard, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.store.query(&msg.range, self.clock.now_ms()))
    }
}

impl Handler<GetDashboardStatus> for DashboardActor {
    type Result = MessageResult<GetDashboardStatus>;

    fn handle(&mut self, _: GetDashboardStatus, _: &mut Self::Context) -> Self::Result {
        MessageResult(DashboardStatus {
            history_loaded: self.history_loaded,
            history_rows: self.history_rows,
            malformed_rows: self.malformed,
            rows: self.store.rows,
            buckets: self.store.minutes.len() + self.store.hours.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;
    use crate::events::RequestCompleted;
    use crate::ids::RoutingMethod;

    #[actix_rt::test]
    async fn events_are_counted_and_history_is_merged() {
        let dir = tempfile::tempdir().unwrap();
        let now = 1_767_323_045_000;
        let mut bytes = crate::stats::csv_log::encode(crate::stats::csv_log::COLUMNS).unwrap();
        let old = RequestCompleted::new(
            now - 7_200_000,
            "old".into(),
            "c".into(),
            RoutingMethod::Direct,
        );
        bytes.extend(crate::stats::csv_log::encode(crate::stats::csv_log::row(&old)).unwrap());
        std::fs::write(dir.path().join("transactions.csv"), bytes).unwrap();
        let clock: SharedClock = Arc::new(ManualClock::new(now));
        let addr = DashboardActor::new(clock, Some(dir.path().to_owned())).start();
        let mut ev =
            RequestCompleted::new(now - 1_000, "new".into(), "c".into(), RoutingMethod::Direct);
        ev.success = true;
        addr.send(CompletedBatch::from(vec![ev])).await.unwrap();
        let mut status = addr.send(GetDashboardStatus).await.unwrap();
        for _ in 0..100 {
            if status.history_loaded {
                break;
            }
            actix_rt::time::sleep(Duration::from_millis(10)).await;
            status = addr.send(GetDashboardStatus).await.unwrap();
        }
        assert!(status.history_loaded);
        assert_eq!((status.history_rows, status.rows), (1, 2));
        let rep = addr
            .send(GetDashboard {
                range: TimeRange::last_hours(24, now),
            })
            .await
            .unwrap();
        assert_eq!(rep.overview.total_requests, 2);
        assert_eq!(rep.recent_transactions[0].tx.request_id, "new");
    }
}
