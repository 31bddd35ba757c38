//! `DASHBOARD_ENABLED` and `LOG_DIR`: whether `/dashboard*` is served and where the
//! transaction CSV history it starts from lives.

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

    /// From the process environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// From a variable lookup: on only when `DASHBOARD_ENABLED` is `true` (any case);
    /// history from `LOG_DIR` (default `logs`).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let enabled =
            get("DASHBOARD_ENABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        let dir = get("LOG_DIR")
            .filter(|d| !d.trim().is_empty())
            .unwrap_or_else(|| "logs".into());
        Self {
            enabled,
            log_dir: Some(PathBuf::from(dir)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_from_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let on =
            DashboardOptions::from_lookup(env(&[("DASHBOARD_ENABLED", "True"), ("LOG_DIR", "/x")]));
        assert!(on.enabled);
        assert_eq!(on.log_dir, Some(PathBuf::from("/x")));
        assert!(!DashboardOptions::from_lookup(env(&[("DASHBOARD_ENABLED", "1")])).enabled);
        assert_eq!(
            DashboardOptions::from_lookup(env(&[])).log_dir,
            Some(PathBuf::from("logs"))
        );
    }
}
