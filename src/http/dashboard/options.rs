//! Whether `/dashboard*` is served and where the transaction CSV history it starts from
//! lives. Plain data: the binary fills it from `--dashboard-enabled` and `--log-dir` (or
//! the environment variables `DASHBOARD_ENABLED` and `LOG_DIR`); nothing here reads the
//! environment.

use std::path::PathBuf;

/// Whether the dashboard is on and where its history is (`DASHBOARD_ENABLED`, `LOG_DIR`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardOptions {
    /// Serve `/dashboard*` (off: 404).
    pub enabled: bool,
    /// Directory of the transaction CSV files to load history from.
    pub log_dir: Option<PathBuf>,
}

impl DashboardOptions {
    /// Off.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            log_dir: None,
        }
    }
}
