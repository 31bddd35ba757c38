//! The transaction-log summary behind `/statistics/summary`, kept in memory.
//!
//! The original re-read the whole CSV on every call (blocking, and slower with every row).
//! Here the actor counts each event as it is logged, on top of one scan of the files that
//! were already on disk at start-up ([`scan`], run on the writer thread). All numbers are
//! sums, so the scan and the live counts merge in any order.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde::Serialize;

use super::csv_log::{self, unescape_cell};
use crate::events::RequestCompleted;

/// Totals over every logged request.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Rows.
    pub total_requests: u64,
    /// Rows with `success` = `True`.
    pub successful_requests: u64,
    /// Count per routing method.
    pub routing_methods: BTreeMap<String, u64>,
    /// Count per provider that answered.
    pub providers_used: BTreeMap<String, u64>,
    /// Count per requested intelligence level.
    pub intelligence_levels: BTreeMap<String, u64>,
    /// Count per error code.
    pub errors: BTreeMap<String, u64>,
    /// Sum of `cost_estimate`.
    pub total_cost: f64,
    /// Rows of the files on disk that could not be read and were left out.
    pub malformed_rows_skipped: u64,
}

/// The columns a summary needs, already parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow<'a> {
    /// `success`.
    pub success: bool,
    /// `routing_method`.
    pub routing_method: &'a str,
    /// `intelligence_level`.
    pub intelligence_level: Option<&'a str>,
    /// `provider_used`.
    pub provider_used: Option<&'a str>,
    /// `error_type`.
    pub error_type: Option<&'a str>,
    /// `cost_estimate`.
    pub cost: f64,
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str, n: u64) {
    match map.get_mut(key) {
        Some(c) => *c += n,
        None => {
            map.insert(key.to_owned(), n);
        }
    }
}

impl Summary {
    /// Counts one row.
    pub fn record_row(&mut self, r: &SummaryRow<'_>) {
        self.total_requests += 1;
        if r.success {
            self.successful_requests += 1;
        }
        bump(&mut self.routing_methods, r.routing_method, 1);
        if let Some(l) = r.intelligence_level {
            bump(&mut self.intelligence_levels, l, 1);
        }
        if let Some(p) = r.provider_used {
            bump(&mut self.providers_used, p, 1);
        }
        if let Some(e) = r.error_type {
            bump(&mut self.errors, e, 1);
        }
        if r.cost.is_finite() {
            self.total_cost += r.cost;
        }
    }

    /// Counts one event (the row it becomes).
    pub fn record(&mut self, ev: &RequestCompleted) {
        self.record_row(&SummaryRow {
            success: ev.success,
            routing_method: ev.routing_method.as_str(),
            intelligence_level: ev.intelligence_level.map(|t| t.as_str()),
            provider_used: ev.provider_used.as_deref(),
            error_type: ev.error_type.as_deref(),
            cost: ev.cost_usd.unwrap_or(0.0),
        });
    }

    /// Adds another summary's numbers.
    pub fn merge(&mut self, other: &Summary) {
        self.total_requests += other.total_requests;
        self.successful_requests += other.successful_requests;
        for (mine, theirs) in [
            (&mut self.routing_methods, &other.routing_methods),
            (&mut self.providers_used, &other.providers_used),
            (&mut self.intelligence_levels, &other.intelligence_levels),
            (&mut self.errors, &other.errors),
        ] {
            for (k, n) in theirs {
                bump(mine, k, *n);
            }
        }
        self.total_cost += other.total_cost;
        self.malformed_rows_skipped += other.malformed_rows_skipped;
    }

    /// Successful share, 0–1.
    pub fn success_rate(&self) -> f64 {
        if self.total_requests == 0 {
            0.0
        } else {
            self.successful_requests as f64 / self.total_requests as f64
        }
    }
}

fn non_empty(s: &str) -> Option<&str> {
    let s = unescape_cell(s);
    (!s.is_empty()).then_some(s)
}

/// Reads the summary columns of one CSV record; `None` when it is not a valid row.
pub fn parse_row(rec: &csv::StringRecord) -> Option<SummaryRow<'_>> {
    if rec.len() != csv_log::COLUMNS.len() {
        return None;
    }
    let success = match rec.get(9)? {
        "True" => true,
        "False" => false,
        _ => return None,
    };
    let routing_method = non_empty(rec.get(3)?)?;
    let cost = match rec.get(18)? {
        "" => 0.0,
        c => c.parse::<f64>().ok()?,
    };
    Some(SummaryRow {
        success,
        routing_method,
        intelligence_level: non_empty(rec.get(4)?),
        provider_used: non_empty(rec.get(10)?),
        error_type: non_empty(rec.get(21)?),
        cost,
    })
}

/// Adds every row of one CSV source; unreadable rows are counted as skipped.
pub fn scan_reader<R: io::Read>(summary: &mut Summary, source: R) {
    let read = csv_log::read_rows(source, |rec| {
        parse_row(rec).map(|row| summary.record_row(&row))
    });
    summary.malformed_rows_skipped += read.malformed;
    if let Some(e) = read.stopped {
        log::error!("transaction log read stopped: {e}");
    }
}

/// Summary of every transaction log in `dir` (blocking: writer thread only).
pub fn scan(dir: &Path) -> Summary {
    let mut summary = Summary::default();
    csv_log::read_each_log(dir, |f| scan_reader(&mut summary, io::BufReader::new(f)));
    summary
}

#[cfg(test)]
#[path = "summary_tests.rs"]
mod tests;
