//! The one thread that touches the statistics files.
//!
//! File I/O blocks, so it never runs on an actor or HTTP worker thread: the
//! [`StatsActor`](super::StatsActor) hands batches to this thread through a bounded
//! channel. Being the only writer is also what keeps CSV rows whole and in order. At start
//! it loads `daily_stats.json`, repairs and scans the CSV files, and reports both back
//! before taking any command, so nothing written by this process is counted twice.

use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::csv_log::CsvLog;
use super::daily::DailyStats;
use super::summary::{self, Summary};
use crate::events::RequestCompleted;

/// Batches (not events) the channel holds; the actor keeps rows that do not fit.
pub const CHANNEL_BOUND: usize = 1024;

/// How often the thread wakes up even without commands.
const TICK: Duration = Duration::from_secs(1);

/// What the actor asks of the writer.
#[derive(Debug)]
pub enum WriterCmd {
    /// Append these rows to the transaction log.
    Rows(Vec<RequestCompleted>),
    /// The days seen since start-up: `daily_stats.json` becomes the loaded file plus these.
    Daily(DailyStats),
    /// Make everything received so far durable, then answer.
    Flush(oneshot::Sender<Result<(), String>>),
}

/// What the writer thread is set up with.
#[derive(Debug)]
pub struct WriterSetup {
    /// `LOG_DIR`, when the transaction log is on, and its size limit.
    pub csv: Option<(PathBuf, Option<u64>)>,
    /// `daily_stats.json`, when summary statistics are on.
    pub daily_path: Option<PathBuf>,
    /// Receives the summary of the CSV files already on disk.
    pub seeded: oneshot::Sender<Summary>,
    /// Receives the daily statistics loaded from disk.
    pub loaded: oneshot::Sender<DailyStats>,
}

/// Starts the writer thread.
pub fn spawn(setup: WriterSetup) -> std::io::Result<SyncSender<WriterCmd>> {
    let (tx, rx) = sync_channel(CHANNEL_BOUND);
    std::thread::Builder::new()
        .name("bkvy-stats-writer".into())
        .spawn(move || run(setup, rx))?;
    Ok(tx)
}

struct Writer {
    csv: Option<CsvLog>,
    csv_dir: Option<(PathBuf, Option<u64>)>,
    daily_path: Option<PathBuf>,
    /// `daily_stats.json` as loaded at start-up.
    daily_base: DailyStats,
    /// The newest snapshot of the days seen since start-up, not yet written.
    daily_pending: Option<DailyStats>,
    errors: u64,
    /// `errors` at the last flush: a flush reports the failures since.
    errors_reported: u64,
}

fn run(setup: WriterSetup, rx: Receiver<WriterCmd>) {
    let daily = setup
        .daily_path
        .as_deref()
        .map(DailyStats::load)
        .unwrap_or_default();
    let _ = setup.loaded.send(daily.clone());
    let mut w = Writer {
        daily_base: daily,
        csv: None,
        csv_dir: setup.csv,
        daily_path: setup.daily_path,
        daily_pending: None,
        errors: 0,
        errors_reported: 0,
    };
    let mut seed = Summary::default();
    if let Some((dir, max)) = w.csv_dir.clone() {
        match CsvLog::open(&dir, max) {
            Ok(log) => {
                seed = summary::scan(&dir);
                w.csv = Some(log);
            }
            Err(e) => w.error(&format!(
                "{}: cannot open transaction log: {e}",
                dir.display()
            )),
        }
    }
    let _ = setup.seeded.send(seed);
    let mut last_daily = Instant::now();
    loop {
        match rx.recv_timeout(TICK) {
            Ok(WriterCmd::Rows(rows)) => w.rows(&rows),
            Ok(WriterCmd::Daily(d)) => w.daily_pending = Some(d),
            Ok(WriterCmd::Flush(ack)) => {
                let _ = ack.send(w.flush());
                last_daily = Instant::now();
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                if let Err(e) = w.flush() {
                    log::error!("final statistics flush failed: {e}");
                }
                return;
            }
        }
        // The actor already limits snapshots to one per 5 s; writing the newest pending
        // one per tick keeps a burst of snapshots from turning into a burst of writes.
        if w.daily_pending.is_some() && last_daily.elapsed() >= TICK {
            w.write_daily();
            last_daily = Instant::now();
        }
    }
}

impl Writer {
    fn error(&mut self, msg: &str) {
        self.errors += 1;
        if self.errors.is_power_of_two() {
            log::error!("{msg} ({} statistics write errors so far)", self.errors);
        }
    }

    fn rows(&mut self, rows: &[RequestCompleted]) {
        if self.csv.is_none() {
            // Opening failed before (e.g. the directory was not writable): try again.
            if let Some((dir, max)) = self.csv_dir.clone() {
                match CsvLog::open(&dir, max) {
                    Ok(log) => self.csv = Some(log),
                    Err(e) => {
                        self.error(&format!("{}: {} rows lost: {e}", dir.display(), rows.len()));
                        return;
                    }
                }
            }
        }
        let result = match self.csv.as_mut() {
            Some(log) => log.append(rows),
            None => Ok(()),
        };
        if let Err(e) = result {
            self.error(&format!("transaction log write failed: {e}"));
        }
    }

    fn write_daily(&mut self) -> Option<String> {
        let (Some(d), Some(path)) = (self.daily_pending.take(), self.daily_path.clone()) else {
            return None;
        };
        let mut merged = self.daily_base.clone();
        merged.merge(&d);
        match merged.save(&path) {
            Ok(()) => None,
            Err(e) => {
                let msg = format!("{}: cannot write daily statistics: {e}", path.display());
                self.error(&msg);
                // Keep it for the next tick rather than lose the day.
                self.daily_pending = Some(d);
                Some(msg)
            }
        }
    }

    fn flush(&mut self) -> Result<(), String> {
        let mut problems = Vec::new();
        if let Some(log) = self.csv.as_mut() {
            if let Err(e) = log.sync() {
                problems.push(format!("{}: fsync failed: {e}", log.path().display()));
            }
        }
        if let Some(msg) = self.write_daily() {
            problems.push(msg);
        }
        if self.errors > self.errors_reported {
            problems.push(format!(
                "{} write error(s) since the last flush (see the log)",
                self.errors - self.errors_reported
            ));
            self.errors_reported = self.errors;
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}
