//! `daily_stats.json`: per-UTC-day aggregates of the completion events.
//!
//! The day is the UTC date of the event's `started_at`, the same instant the CSV's
//! `timestamp` shows, so the two logs always agree. Unlike the original, the sum and count
//! behind the average response time are stored, and zero times and costs count, so the
//! average carries on across restarts (original-behaviour §11 item 15). All numbers are
//! sums, so days merge in any order (live events on top of the file loaded at start-up).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::events::RequestCompleted;

/// The file name inside `LOG_DIR`.
pub const FILE_NAME: &str = "daily_stats.json";

/// One day's numbers, as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DayStats {
    /// Requests that started this day.
    pub total_requests: u64,
    /// Of which answered successfully.
    pub successful: u64,
    /// Count per routing method.
    pub by_routing_method: BTreeMap<String, u64>,
    /// Count per requested intelligence level.
    pub by_intelligence: BTreeMap<String, u64>,
    /// Count per provider that answered.
    pub by_provider: BTreeMap<String, u64>,
    /// Count per error code.
    pub errors: BTreeMap<String, u64>,
    /// Sum of `cost_usd` (6 decimal places on disk).
    #[serde(serialize_with = "six_dp")]
    pub total_cost: f64,
    /// `total_time_ms / response_count`, whole milliseconds.
    pub avg_response_time_ms: u64,
    /// Sum of `total_time_ms` of every request (zeros included).
    pub total_time_ms: u64,
    /// How many requests `total_time_ms` sums over.
    pub response_count: u64,
}

fn six_dp<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(round6(*v))
}

/// Rounds to 6 decimal places.
pub fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str, n: u64) {
    match map.get_mut(key) {
        Some(c) => *c += n,
        None => {
            map.insert(key.to_owned(), n);
        }
    }
}

impl DayStats {
    /// Counts one event.
    pub fn record(&mut self, ev: &RequestCompleted) {
        self.total_requests += 1;
        if ev.success {
            self.successful += 1;
        }
        bump(&mut self.by_routing_method, ev.routing_method.as_str(), 1);
        if let Some(t) = ev.intelligence_level {
            bump(&mut self.by_intelligence, t.as_str(), 1);
        }
        if let Some(p) = &ev.provider_used {
            bump(&mut self.by_provider, p, 1);
        }
        if let Some(e) = &ev.error_type {
            bump(&mut self.errors, e, 1);
        }
        self.total_cost += ev.cost_usd.filter(|c| c.is_finite()).unwrap_or(0.0);
        self.total_time_ms += ev.total_time_ms.max(0) as u64;
        self.response_count += 1;
        self.refresh_average();
    }

    /// Adds another day's numbers to this one.
    pub fn merge(&mut self, other: &DayStats) {
        self.total_requests += other.total_requests;
        self.successful += other.successful;
        for (mine, theirs) in [
            (&mut self.by_routing_method, &other.by_routing_method),
            (&mut self.by_intelligence, &other.by_intelligence),
            (&mut self.by_provider, &other.by_provider),
            (&mut self.errors, &other.errors),
        ] {
            for (k, n) in theirs {
                bump(mine, k, *n);
            }
        }
        self.total_cost += other.total_cost;
        self.total_time_ms += other.total_time_ms;
        self.response_count += other.response_count;
        self.refresh_average();
    }

    fn refresh_average(&mut self) {
        self.avg_response_time_ms = self
            .total_time_ms
            .checked_div(self.response_count)
            .unwrap_or(0);
    }

    /// A day read from the original's file has an average but no sum and count: rebuild
    /// them from the average over all its requests so later events weigh in correctly.
    fn backfill_sums(&mut self) {
        if self.response_count == 0 && self.avg_response_time_ms > 0 {
            self.response_count = self.total_requests;
            self.total_time_ms = self.avg_response_time_ms * self.total_requests;
        }
    }

    /// Successful share, 0–1.
    pub fn success_rate(&self) -> f64 {
        if self.total_requests == 0 {
            0.0
        } else {
            self.successful as f64 / self.total_requests as f64
        }
    }
}

/// The UTC day of a Unix-ms instant.
pub fn utc_day(ms: Millis) -> NaiveDate {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .date_naive()
}

/// Every tracked day.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DailyStats {
    /// Day → numbers, oldest first.
    pub days: BTreeMap<NaiveDate, DayStats>,
}

impl DailyStats {
    /// Counts one event on its start day.
    pub fn record(&mut self, ev: &RequestCompleted) {
        self.days
            .entry(utc_day(ev.started_at))
            .or_default()
            .record(ev);
    }

    /// Adds every day of `other`.
    pub fn merge(&mut self, other: &DailyStats) {
        for (day, stats) in &other.days {
            self.days.entry(*day).or_default().merge(stats);
        }
    }

    /// All days summed.
    pub fn total(&self) -> DayStats {
        let mut t = DayStats::default();
        for d in self.days.values() {
            t.merge(d);
        }
        t
    }

    /// Parses the file's text.
    pub fn parse(text: &str) -> serde_json::Result<Self> {
        let mut d: DailyStats = serde_json::from_str(text)?;
        for day in d.days.values_mut() {
            day.backfill_sums();
        }
        Ok(d)
    }

    /// Loads the file; a missing file is empty; a corrupt one is moved aside to
    /// `daily_stats.json.corrupt-<ts>` (and reported) so it is never silently overwritten.
    pub fn load(path: &Path) -> Self {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Self::default(),
            Err(e) => {
                log::error!("{}: cannot read daily statistics: {e}", path.display());
                set_aside(path);
                return Self::default();
            }
        };
        match Self::parse(&text) {
            Ok(d) => d,
            Err(e) => {
                log::error!("{}: corrupt daily statistics: {e}", path.display());
                set_aside(path);
                Self::default()
            }
        }
    }

    /// Writes the file atomically: temp file in the same directory, fsync, rename.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir)?;
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        // The rename itself is durable once the directory is synced (best effort).
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

fn set_aside(path: &Path) {
    let stamp = Utc::now().format("%Y%m%dT%H%M%S");
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".corrupt-{stamp}"));
    let target = PathBuf::from(name);
    match fs::rename(path, &target) {
        Ok(()) => log::error!("kept the unreadable file as {}", target.display()),
        Err(e) => log::error!("could not move {} aside: {e}", path.display()),
    }
}

#[cfg(test)]
#[path = "daily_tests.rs"]
mod tests;
