//! Which statistics logs are on and where they go, from the environment variables the
//! original read (`TRANSACTION_LOGGING`, `SUMMARY_STATS`, `LOG_DIR`), plus
//! `TRANSACTION_LOG_MAX_MB` for rotation.

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
    /// Both logs off.
    pub fn disabled() -> Self {
        Self {
            transaction_logging: false,
            summary_stats: false,
            log_dir: PathBuf::from("logs"),
            max_csv_bytes: None,
        }
    }

    /// From the process environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// From a variable lookup: a flag is on only when its lower-cased value is `true`,
    /// as in the original.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let flag = |k: &str| get(k).is_some_and(|v| v.trim().to_lowercase() == "true");
        let max_csv_bytes =
            get("TRANSACTION_LOG_MAX_MB").and_then(|v| match v.trim().parse::<f64>() {
                Ok(mb) if mb.is_finite() && mb > 0.0 => Some((mb * 1024.0 * 1024.0) as u64),
                _ => {
                    log::warn!(
                        "TRANSACTION_LOG_MAX_MB={v:?} is not a positive number; no rotation"
                    );
                    None
                }
            });
        Self {
            transaction_logging: flag("TRANSACTION_LOGGING"),
            summary_stats: flag("SUMMARY_STATS"),
            log_dir: get("LOG_DIR")
                .filter(|d| !d.trim().is_empty())
                .map_or_else(|| PathBuf::from("logs"), PathBuf::from),
            max_csv_bytes,
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
