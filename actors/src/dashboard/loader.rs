//! Loading history from the transaction CSV files in `LOG_DIR` (the current file and the
//! rotated ones), once at start-up, on a thread of its own: reading a million rows takes a
//! second or two, which must never hold up the actor or an HTTP worker.
//!
//! Only rows from before the actor started are counted; anything later was (or will be)
//! seen live, so nothing is counted twice however the writer and the loader interleave.

use std::io::{self, BufReader};
use std::path::Path;

use super::store::Store;
use super::tx::Tx;
use crate::clock::Millis;
use crate::stats::csv_log;

/// What loading found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Loaded {
    /// The history, bucketed.
    pub store: Store,
    /// Rows that could not be read.
    pub malformed: u64,
    /// Files read.
    pub files: usize,
}

/// Adds the rows of one CSV source with a timestamp before `before`; unreadable rows are
/// counted as malformed.
pub fn load_reader<R: io::Read>(out: &mut Loaded, source: R, before: Millis, now: Millis) {
    let read = csv_log::read_rows(source, |rec| {
        let tx = Tx::from_record(rec)?;
        if tx.at_ms < before {
            out.store.record(tx, now);
        }
        Some(())
    });
    out.malformed += read.malformed;
    if let Some(e) = read.stopped {
        log::error!("dashboard: transaction log read stopped: {e}");
    }
}

/// Every transaction log in `dir`, oldest file first (blocking: loader thread only).
pub fn load_dir(dir: &Path, before: Millis, now: Millis) -> Loaded {
    let mut out = Loaded::default();
    let files = csv_log::read_each_log(dir, |f| {
        load_reader(&mut out, BufReader::with_capacity(1 << 16, f), before, now);
    });
    out.files = files;
    out.store.prune(now);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::RequestCompleted;
    use crate::ids::RoutingMethod;

    fn csv_of(times: &[Millis]) -> Vec<u8> {
        let mut out = csv_log::encode(csv_log::COLUMNS).unwrap();
        for (i, t) in times.iter().enumerate() {
            let ev = RequestCompleted::new(*t, format!("r{i}"), "c".into(), RoutingMethod::Direct);
            out.extend(csv_log::encode(csv_log::row(&ev)).unwrap());
        }
        out.extend_from_slice(b"garbage,row\n");
        out
    }

    #[test]
    fn rows_from_before_the_start_are_loaded_and_bad_ones_counted() {
        let now = 1_767_323_045_000;
        let bytes = csv_of(&[now - 3_600_000, now - 60_000, now + 5]);
        let mut out = Loaded::default();
        load_reader(&mut out, bytes.as_slice(), now, now);
        assert_eq!(out.store.rows, 2);
        assert_eq!(out.malformed, 1);
    }

    #[test]
    fn a_missing_directory_is_no_history() {
        let out = load_dir(Path::new("/nonexistent/bkvy-dashboard"), 0, 0);
        assert_eq!(out, Loaded::default());
    }
}
