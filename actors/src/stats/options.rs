//! Which statistics logs are on and where they go. Plain data: the binary fills it from
//! its command line (`--transaction-logging`, `--summary-stats`, `--log-dir`,
//! `--transaction-log-max-mb`, or the environment variables the original read,
//! `TRANSACTION_LOGGING`, `SUMMARY_STATS` and `LOG_DIR`, plus `TRANSACTION_LOG_MAX_MB` for
//! rotation); nothing here reads the environment.

use std::path::PathBuf;

use super::{csv_log, daily};

/// Which logs are on and where they go (`TRANSACTION_LOGGING`, `SUMMARY_STATS`,
/// `LOG_DIR`, `TRANSACTION_LOG_MAX_MB`).
#[derive(Debug, Clone, PartialEq)]
pub struct StatsOptions {
    /// Write `transactions.csv`.
    pub transaction_logging: bool,
    /// Write `daily_stats.json`.
    pub summary_stats: bool,
    /// Directory of both files (created if missing).
    pub log_dir: PathBuf,
    /// Rotate `transactions.csv` before it grows past this many bytes.
    pub max_csv_bytes: Option<u64>,
}

impl StatsOptions {
    /// `LOG_DIR` default.
    pub const DEFAULT_LOG_DIR: &'static str = "logs";

    /// Both logs off.
    pub fn disabled() -> Self {
        Self {
            transaction_logging: false,
            summary_stats: false,
            log_dir: PathBuf::from(Self::DEFAULT_LOG_DIR),
            max_csv_bytes: None,
        }
    }

    /// `{LOG_DIR}/transactions.csv`.
    pub fn log_file(&self) -> PathBuf {
        self.log_dir.join(csv_log::FILE_NAME)
    }

    /// `{LOG_DIR}/daily_stats.json`.
    pub fn stats_file(&self) -> PathBuf {
        self.log_dir.join(daily::FILE_NAME)
    }
}
