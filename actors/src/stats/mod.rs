//! `StatsActor`: the two opt-in usage logs and the numbers behind `/statistics/*`.
//!
//! It consumes one [`RequestCompleted`] per request, delivered in `CompletedBatch`es. Handling an event is O(1): count it
//! in memory (daily statistics, transaction-log summary) and push it to a batch. Once a
//! second the batch goes to the writer thread ([`writer`]) over a bounded channel; the
//! actor itself never touches a file, so a slow disk never slows a request or a query.
//! Queries answer from memory: what was on disk at start-up (loaded once by the writer
//! thread) plus what happened since.

pub mod csv_log;
pub mod daily;
mod options;
pub mod summary;
pub mod writer;

#[cfg(test)]
mod testing;

use std::path::Path;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::NaiveDate;
use tokio::sync::oneshot;

pub use daily::{DailyStats, DayStats};
pub use options::StatsOptions;
pub use summary::Summary;
use writer::{WriterCmd, WriterSetup};

use crate::events::{CompletedBatch, RequestCompleted};

/// Mailbox bound: completion events are offered with `try_send` and dropped beyond it.
pub const MAILBOX_CAPACITY: usize = 65_536;
/// Rows kept while the writer is behind; events beyond are counted as dropped.
pub const MAX_BUFFERED_ROWS: usize = 262_144;
/// How often the batch goes to the writer.
const BATCH_INTERVAL: Duration = Duration::from_secs(1);
/// Least time between two `daily_stats.json` writes.
const DAILY_INTERVAL: Duration = Duration::from_secs(5);
/// Longest a [`Flush`] waits for the writer.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Query: which logs are on, where they are, and how the actor is doing.
#[derive(Debug, Message)]
#[rtype(result = "StatsStatus")]
pub struct GetStatsStatus;

/// The answer to [`GetStatsStatus`].
#[derive(Debug, Clone, PartialEq)]
pub struct StatsStatus {
    /// The options the actor runs with.
    pub options: StatsOptions,
    /// Whether the CSV files on disk have been read into the summary.
    pub summary_seeded: bool,
    /// Whether `daily_stats.json` has been loaded.
    pub daily_loaded: bool,
    /// Events not logged because the writer fell too far behind.
    pub dropped_rows: u64,
}

/// Query: the transaction-log summary (`None` when the transaction log is off).
#[derive(Debug, Message)]
#[rtype(result = "Option<Summary>")]
pub struct GetSummary;

/// Query: one day's statistics.
#[derive(Debug, Message)]
#[rtype(result = "DayReply")]
pub struct GetDaily {
    /// The UTC day.
    pub date: NaiveDate,
}

/// The answer to [`GetDaily`].
#[derive(Debug, Clone, PartialEq)]
pub enum DayReply {
    /// Summary statistics are off.
    Disabled,
    /// Nothing was recorded that day.
    NoData,
    /// The day's numbers.
    Day(DayStats),
}

/// Query: every tracked day (`None` when summary statistics are off).
#[derive(Debug, Message)]
#[rtype(result = "Option<DailyStats>")]
pub struct GetAllDaily;

/// Query: all days summed (`None` when summary statistics are off).
#[derive(Debug, Message)]
#[rtype(result = "Option<Aggregate>")]
pub struct GetAggregate;

/// The answer to [`GetAggregate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    /// Every day's numbers added up.
    pub totals: DayStats,
    /// Days with data.
    pub days_tracked: usize,
}

/// Command: write out everything received so far and fsync it (shutdown, tests).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), FlushError>")]
pub struct Flush;

/// Why a [`Flush`] did not complete.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FlushError {
    /// The writer's queue is full; try again.
    #[error("statistics writer is busy")]
    Busy,
    /// The writer thread is gone.
    #[error("statistics writer stopped")]
    WriterGone,
    /// The writer did not answer within [`FLUSH_TIMEOUT`].
    #[error("statistics flush timed out")]
    Timeout,
    /// A write or fsync failed.
    #[error("statistics write failed: {0}")]
    Write(String),
}

/// The actor.
pub struct StatsActor {
    opts: StatsOptions,
    writer: Option<SyncSender<WriterCmd>>,
    batch: Vec<RequestCompleted>,
    dropped: u64,
    /// Summary of the CSV files found at start-up (once the writer has read them).
    summary_seed: Option<Summary>,
    summary_live: Summary,
    /// `daily_stats.json` as found at start-up (once the writer has read it).
    daily_base: Option<DailyStats>,
    daily_live: DailyStats,
    daily_dirty: bool,
    daily_sent: Instant,
    meter: crate::mailbox::MailboxMeter,
}

impl StatsActor {
    /// Counts this actor's messages in `meter` (mailbox metrics).
    pub fn with_meter(mut self, meter: crate::mailbox::MailboxMeter) -> Self {
        self.meter = meter;
        self
    }

    /// An actor for these options (nothing happens until it is started).
    pub fn new(opts: StatsOptions) -> Self {
        Self {
            opts,
            writer: None,
            batch: Vec::new(),
            dropped: 0,
            summary_seed: None,
            summary_live: Summary::default(),
            daily_base: None,
            daily_live: DailyStats::default(),
            daily_dirty: false,
            daily_sent: Instant::now(),
            meter: crate::mailbox::MailboxMeter::new(),
        }
    }

    /// The log directory.
    pub fn log_dir(&self) -> &Path {
        &self.opts.log_dir
    }

    fn start_writer(&mut self, ctx: &mut Context<Self>) {
        let (seeded, seeded_rx) = oneshot::channel();
        let (loaded, loaded_rx) = oneshot::channel();
        let setup = WriterSetup {
            csv: self
                .opts
                .transaction_logging
                .then(|| (self.opts.log_dir.clone(), self.opts.max_csv_bytes)),
            daily_path: self.opts.summary_stats.then(|| self.opts.stats_file()),
            seeded,
            loaded,
        };
        match writer::spawn(setup) {
            Ok(tx) => self.writer = Some(tx),
            Err(e) => {
                log::error!("cannot start the statistics writer thread: {e}");
                return;
            }
        }
        ctx.spawn(seeded_rx.into_actor(self).map(|r, act, _| {
            act.summary_seed = Some(r.unwrap_or_default());
        }));
        ctx.spawn(loaded_rx.into_actor(self).map(|r, act, _| {
            act.daily_base = Some(r.unwrap_or_default());
        }));
        ctx.run_interval(BATCH_INTERVAL, |act, _| act.tick());
    }

    /// Hands the batch (and, at most every 5 s, a daily snapshot) to the writer.
    fn tick(&mut self) {
        if let Err(e) = self.send_batch() {
            log::debug!("statistics batch kept for the next tick: {e}");
        }
        if self.daily_dirty && self.daily_sent.elapsed() >= DAILY_INTERVAL {
            let _ = self.send_daily();
        }
    }

    fn send(&self, cmd: WriterCmd) -> Result<(), (FlushError, WriterCmd)> {
        let Some(tx) = &self.writer else {
            return Err((FlushError::WriterGone, cmd));
        };
        tx.try_send(cmd).map_err(|e| match e {
            TrySendError::Full(c) => (FlushError::Busy, c),
            TrySendError::Disconnected(c) => (FlushError::WriterGone, c),
        })
    }

    fn send_batch(&mut self) -> Result<(), FlushError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.batch);
        match self.send(WriterCmd::Rows(rows)) {
            Ok(()) => Ok(()),
            Err((e, WriterCmd::Rows(rows))) => {
                self.batch = rows;
                Err(e)
            }
            Err((e, _)) => Err(e),
        }
    }

    /// Sends the days seen since start-up; the writer adds them to the loaded file.
    fn send_daily(&mut self) -> Result<(), FlushError> {
        if !self.daily_dirty {
            return Ok(());
        }
        self.send(WriterCmd::Daily(self.daily_live.clone()))
            .map_err(|(e, _)| e)?;
        self.daily_dirty = false;
        self.daily_sent = Instant::now();
        Ok(())
    }

    fn daily_view(&self) -> DailyStats {
        let mut d = self.daily_base.clone().unwrap_or_default();
        d.merge(&self.daily_live);
        d
    }
}

impl Actor for StatsActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        if self.opts.transaction_logging || self.opts.summary_stats {
            self.start_writer(ctx);
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        // Best effort: the writer thread syncs and exits once this sender is dropped.
        let _ = self.send_batch();
        let _ = self.send_daily();
    }
}

impl StatsActor {
    /// Counts one event in the summaries; true when its transaction row is to be kept.
    fn record(&mut self, ev: &RequestCompleted) -> bool {
        if self.opts.summary_stats {
            self.daily_live.record(ev);
            self.daily_dirty = true;
        }
        if !self.opts.transaction_logging {
            return false;
        }
        self.summary_live.record(ev);
        if self.batch.len() < MAX_BUFFERED_ROWS {
            return true;
        }
        self.dropped += 1;
        if self.dropped.is_power_of_two() {
            log::warn!(
                "{} transaction rows dropped: the writer is behind",
                self.dropped
            );
        }
        false
    }
}

impl Handler<CompletedBatch> for StatsActor {
    type Result = ();

    fn handle(&mut self, events: CompletedBatch, _: &mut Self::Context) {
        let _m = self.meter.handling();
        for ev in events.0.iter() {
            if self.record(ev) {
                self.batch.push(ev.clone());
            }
        }
    }
}

impl Handler<GetStatsStatus> for StatsActor {
    type Result = MessageResult<GetStatsStatus>;

    fn handle(&mut self, _: GetStatsStatus, _: &mut Self::Context) -> Self::Result {
        MessageResult(StatsStatus {
            options: self.opts.clone(),
            summary_seeded: self.summary_seed.is_some(),
            daily_loaded: self.daily_base.is_some(),
            dropped_rows: self.dropped,
        })
    }
}

impl Handler<GetSummary> for StatsActor {
    type Result = Option<Summary>;

    fn handle(&mut self, _: GetSummary, _: &mut Self::Context) -> Self::Result {
        if !self.opts.transaction_logging {
            return None;
        }
        let mut s = self.summary_seed.clone().unwrap_or_default();
        s.merge(&self.summary_live);
        Some(s)
    }
}

impl Handler<GetDaily> for StatsActor {
    type Result = MessageResult<GetDaily>;

    fn handle(&mut self, msg: GetDaily, _: &mut Self::Context) -> Self::Result {
        if !self.opts.summary_stats {
            return MessageResult(DayReply::Disabled);
        }
        let base = self.daily_base.as_ref().and_then(|d| d.days.get(&msg.date));
        let live = self.daily_live.days.get(&msg.date);
        MessageResult(match (base, live) {
            (None, None) => DayReply::NoData,
            (b, l) => {
                let mut day = b.cloned().unwrap_or_default();
                if let Some(l) = l {
                    day.merge(l);
                }
                DayReply::Day(day)
            }
        })
    }
}

impl Handler<GetAllDaily> for StatsActor {
    type Result = Option<DailyStats>;

    fn handle(&mut self, _: GetAllDaily, _: &mut Self::Context) -> Self::Result {
        self.opts.summary_stats.then(|| self.daily_view())
    }
}

impl Handler<GetAggregate> for StatsActor {
    type Result = Option<Aggregate>;

    fn handle(&mut self, _: GetAggregate, _: &mut Self::Context) -> Self::Result {
        self.opts.summary_stats.then(|| {
            let view = self.daily_view();
            Aggregate {
                totals: view.total(),
                days_tracked: view.days.len(),
            }
        })
    }
}

impl Handler<Flush> for StatsActor {
    type Result = ResponseFuture<Result<(), FlushError>>;

    fn handle(&mut self, _: Flush, _: &mut Self::Context) -> Self::Result {
        if self.writer.is_none() {
            return Box::pin(async { Ok(()) });
        }
        let (ack, ack_rx) = oneshot::channel();
        let sent = self
            .send_batch()
            .and_then(|()| self.send_daily())
            .and_then(|()| self.send(WriterCmd::Flush(ack)).map_err(|(e, _)| e));
        Box::pin(async move {
            sent?;
            match tokio::time::timeout(FLUSH_TIMEOUT, ack_rx).await {
                Ok(Ok(result)) => result.map_err(FlushError::Write),
                Ok(Err(_)) => Err(FlushError::WriterGone),
                Err(_) => Err(FlushError::Timeout),
            }
        })
    }
}

#[cfg(test)]
#[path = "actor_tests.rs"]
mod tests;
