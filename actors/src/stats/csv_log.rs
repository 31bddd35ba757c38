//! `transactions.csv`: how one [`RequestCompleted`] becomes one row, the file that rows
//! are appended to, and reading the rows back.
//!
//! The columns and conventions are the original's (25 columns, `True`/`False`, empty cell
//! for null, Python float repr) so existing spreadsheets and scripts keep working. Rows are
//! made safe to open in a spreadsheet (formula injection), free of control characters and
//! kept on one line (line breaks become spaces), which is what lets start-up repair a torn last row by cutting the
//! file back to its last newline. Only the writer thread touches the file.
//!
//! The statistics summary and the dashboard both read the logs back at start-up; they do it
//! through [`read_rows`], so they agree on the header, on which rows count as malformed and
//! on when a read gives up.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::clock::Millis;
use crate::events::RequestCompleted;

/// The current log's file name inside `LOG_DIR`.
pub const FILE_NAME: &str = "transactions.csv";

/// The columns, in the original's order.
pub const COLUMNS: [&str; 25] = [
    "timestamp",
    "request_id",
    "client_id",
    "routing_method",
    "intelligence_level",
    "scenario",
    "requested_provider",
    "requested_model",
    "max_wait_seconds",
    "success",
    "provider_used",
    "model_used",
    "api_key_used",
    "total_time_ms",
    "queue_wait_ms",
    "rate_limit_wait_ms",
    "input_tokens",
    "output_tokens",
    "cost_estimate",
    "finish_reason",
    "decision_reason",
    "error_type",
    "error_message",
    "fallback_attempts",
    "alternatives_tried",
];

/// Longest `error_message` kept, in characters.
pub const MAX_ERROR_MESSAGE_CHARS: usize = 500;

/// Characters that make a spreadsheet treat a cell as a formula.
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// The timestamp column's layout, as a chrono format string.
pub const TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6f+00:00";

/// `started_at` as ISO-8601 UTC with microseconds and a `+00:00` offset.
pub fn iso_timestamp(ms: Millis) -> String {
    use chrono::{Datelike, Timelike};
    use std::fmt::Write as _;
    let t = DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    if !(0..=9999).contains(&t.year()) {
        return t.format(TIMESTAMP_FORMAT).to_string();
    }
    // Written field by field: the same text as `TIMESTAMP_FORMAT`, without parsing that
    // string again for every row.
    let mut s = String::with_capacity(32);
    let _ = write!(
        s,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}+00:00",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.timestamp_subsec_micros()
    );
    s
}

/// A float as Python's `repr` writes it (`0.5`, `30.0`, `1.6e-05`).
pub fn python_float(x: f64) -> String {
    if !x.is_finite() {
        return String::new();
    }
    let a = x.abs();
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        let s = format!("{x:e}");
        let Some((mantissa, exp)) = s.split_once('e') else {
            return s;
        };
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        let mantissa = mantissa.strip_suffix(".0").unwrap_or(mantissa);
        return format!("{mantissa}e{sign}{digits:0>2}");
    }
    let s = format!("{x}");
    if s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

/// A text cell: one line, no control characters, and never read as a formula. Line
/// breaks become spaces; any other control character but the tab (ESC, BEL, NUL, DEL,
/// the C1 range) becomes U+FFFD, so a terminal or spreadsheet showing the cell cannot be
/// driven by what a client or an upstream put into it.
pub fn text_cell(s: &str) -> String {
    let clean = |c: char| match c {
        '\n' | '\r' => ' ',
        '\t' => '\t',
        c if c.is_control() => '\u{FFFD}',
        c => c,
    };
    if !s.chars().any(|c| c != '\t' && c.is_control()) && !s.starts_with(FORMULA_STARTS) {
        return s.to_owned();
    }
    let one_line: String = s.chars().map(clean).collect();
    if one_line.starts_with(FORMULA_STARTS) {
        format!("'{one_line}")
    } else {
        one_line
    }
}

/// Undoes [`text_cell`]'s formula guard when reading a row back.
pub fn unescape_cell(s: &str) -> &str {
    match s.strip_prefix('\'') {
        Some(rest) if rest.starts_with(FORMULA_STARTS) => rest,
        _ => s,
    }
}

fn opt_text(v: Option<&str>) -> String {
    v.map(text_cell).unwrap_or_default()
}

fn opt_num<T: ToString>(v: Option<T>) -> String {
    v.map(|n| n.to_string()).unwrap_or_default()
}

fn python_bool(b: bool) -> String {
    if b { "True" } else { "False" }.to_owned()
}

/// A wait budget as the caller most likely wrote it: `30` for whole seconds, `2.5` else.
fn wait_seconds(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        python_float(v)
    }
}

/// The 25 cells of one event, in [`COLUMNS`] order.
pub fn row(ev: &RequestCompleted) -> [String; 25] {
    let error_message = ev
        .error_message
        .as_deref()
        .map(|m| m.chars().take(MAX_ERROR_MESSAGE_CHARS).collect::<String>());
    [
        iso_timestamp(ev.started_at),
        text_cell(&ev.request_id),
        text_cell(&ev.client_id),
        ev.routing_method.as_str().to_owned(),
        opt_text(ev.intelligence_level.map(|t| t.as_str())),
        opt_text(ev.scenario.as_deref()),
        opt_text(ev.requested_provider.as_deref()),
        opt_text(ev.requested_model.as_deref()),
        ev.max_wait_seconds.map(wait_seconds).unwrap_or_default(),
        python_bool(ev.success),
        opt_text(ev.provider_used.as_deref()),
        opt_text(ev.model_used.as_deref()),
        opt_text(ev.api_key_used.as_deref()),
        ev.total_time_ms.to_string(),
        opt_num(ev.queue_wait_ms),
        opt_num(ev.rate_limit_wait_ms),
        opt_num(ev.input_tokens),
        opt_num(ev.output_tokens),
        ev.cost_usd.map(python_float).unwrap_or_default(),
        opt_text(ev.finish_reason.as_deref()),
        opt_text(ev.decision_reason.as_deref()),
        opt_text(ev.error_type.as_deref()),
        opt_text(error_message.as_deref()),
        ev.fallback_attempts.to_string(),
        ev.alternatives_tried.to_string(),
    ]
}

/// CSV-encodes one record, newline-terminated.
pub fn encode<I, S>(cells: I) -> io::Result<Vec<u8>>
where
    I: IntoIterator<Item = S>,
    S: AsRef<[u8]>,
{
    // A row is a few hundred bytes: the writer's default 8 KiB buffer, zeroed for every
    // row, cost more than encoding the row. A longer row still encodes whole (the buffer
    // is flushed into the Vec as it fills).
    let mut w = csv::WriterBuilder::new()
        .buffer_capacity(512)
        .from_writer(Vec::with_capacity(512));
    w.write_record(cells).map_err(io::Error::other)?;
    w.into_inner().map_err(|e| io::Error::other(e.to_string()))
}

/// Cuts a torn last line (a crash mid-write) back to the last newline. Returns the bytes
/// removed.
pub fn repair_tail(path: &Path) -> io::Result<u64> {
    let mut f = OpenOptions::new().read(true).write(true).open(path)?;
    let len = f.metadata()?.len();
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            let keep = start + i as u64 + 1;
            if keep < len {
                f.set_len(keep)?;
                f.sync_all()?;
            }
            return Ok(len - keep);
        }
        end = start;
    }
    if len > 0 {
        f.set_len(0)?;
        f.sync_all()?;
    }
    Ok(len)
}

/// The open transaction log: appends batches, starts a new file (with a header) when the
/// current one is missing or would grow past the size limit.
#[derive(Debug)]
pub struct CsvLog {
    dir: PathBuf,
    path: PathBuf,
    max_bytes: Option<u64>,
    file: Option<File>,
    size: u64,
    /// Data rows written by this process (tests, status).
    pub rows_written: u64,
}

impl CsvLog {
    /// Opens (creating the directory and file as needed) and repairs a torn last line.
    pub fn open(dir: &Path, max_bytes: Option<u64>) -> io::Result<Self> {
        let mut log = Self {
            dir: dir.to_owned(),
            path: dir.join(FILE_NAME),
            max_bytes,
            file: None,
            size: 0,
            rows_written: 0,
        };
        fs::create_dir_all(dir)?;
        if log.path.exists() {
            let cut = repair_tail(&log.path)?;
            if cut > 0 {
                log::warn!(
                    "{}: removed a torn last line ({cut} bytes) left by an interrupted write",
                    log.path.display()
                );
            }
        }
        log.open_current()?;
        Ok(log)
    }

    /// The current file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open_current(&mut self) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let mut size = file.metadata()?.len();
        if size == 0 {
            let header = encode(COLUMNS)?;
            file.write_all(&header)?;
            size = header.len() as u64;
        }
        self.file = Some(file);
        self.size = size;
        Ok(())
    }

    /// Appends the rows of these events, one `write` per file used.
    pub fn append(&mut self, events: &[RequestCompleted]) -> io::Result<()> {
        if self.file.is_none() || !self.path.exists() {
            // Never opened, or deleted or moved away while running: start a new file.
            self.open_current()?;
        }
        let mut pending = Vec::with_capacity(events.len() * 256);
        for ev in events {
            let line = encode(row(ev))?;
            if self.would_overflow(pending.len() as u64, line.len() as u64) {
                self.write(&pending)?;
                pending.clear();
                self.rotate()?;
            }
            pending.extend_from_slice(&line);
            self.rows_written += 1;
        }
        self.write(&pending)
    }

    /// Whether adding `line` after `pending` would pass the limit in a file that already
    /// holds data rows (a row larger than the limit still gets a file of its own).
    fn would_overflow(&self, pending: u64, line: u64) -> bool {
        let header = COLUMNS.iter().map(|c| c.len() as u64 + 1).sum::<u64>();
        match self.max_bytes {
            Some(max) => self.size + pending + line > max && self.size + pending > header,
            None => false,
        }
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let file = match self.file.as_mut() {
            Some(f) => f,
            None => return Err(io::Error::other("transaction log not open")),
        };
        file.write_all(bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// Renames the current file to `transactions.<UTC yyyymmddThhmmss>.csv` and starts a
    /// new one.
    fn rotate(&mut self) -> io::Result<()> {
        if let Some(f) = self.file.take() {
            f.sync_all()?;
        }
        let stamp = Utc::now().format("%Y%m%dT%H%M%S").to_string();
        let mut target = self.dir.join(format!("transactions.{stamp}.csv"));
        let mut n = 1;
        while target.exists() {
            target = self.dir.join(format!("transactions.{stamp}-{n}.csv"));
            n += 1;
        }
        fs::rename(&self.path, &target)?;
        log::info!("transaction log rotated to {}", target.display());
        self.open_current()
    }

    /// Data on disk (fsync).
    pub fn sync(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.sync_all(),
            None => Ok(()),
        }
    }
}

/// Every transaction log in `dir`, rotated ones first (oldest first), the current last.
pub fn log_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut rotated = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("transactions.") && name.ends_with(".csv") && name != FILE_NAME {
            rotated.push(dir.join(name.as_ref()));
        }
    }
    rotated.sort_by_key(|p| rotation_order(p));
    let current = dir.join(FILE_NAME);
    if current.exists() {
        rotated.push(current);
    }
    Ok(rotated)
}

/// Opens every transaction log in `dir` in order ([`log_files`]) and hands each to `read`;
/// a missing directory is no logs, other errors are logged and skip the file (blocking:
/// a dedicated thread only). Returns how many files were read.
pub fn read_each_log(dir: &Path, mut read: impl FnMut(fs::File)) -> usize {
    let files = match log_files(dir) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return 0,
        Err(e) => {
            log::error!("{}: cannot list transaction logs: {e}", dir.display());
            return 0;
        }
    };
    let mut read_files = 0;
    for path in files {
        match fs::File::open(&path) {
            Ok(f) => {
                read(f);
                read_files += 1;
            }
            Err(e) => log::error!("{}: cannot read: {e}", path.display()),
        }
    }
    read_files
}

/// What [`read_rows`] met besides the rows it handed on.
#[derive(Debug, Default)]
pub struct RowsRead {
    /// Rows left out: not readable as CSV (e.g. not UTF-8), or refused by the caller.
    pub malformed: u64,
    /// The I/O error that ended the read before the end of the source, if one did.
    pub stopped: Option<csv::Error>,
}

/// Hands each data row of one transaction log to `row`, in order. The first line is the
/// header and is skipped whatever it holds; rows may have any number of cells (`row`
/// judges them). A row that is not valid CSV, or that `row` answers `None` for, is counted
/// as malformed and reading goes on; an I/O error ends the read.
pub fn read_rows<R: Read>(
    source: R,
    mut row: impl FnMut(&csv::StringRecord) -> Option<()>,
) -> RowsRead {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(source);
    let mut rec = csv::StringRecord::new();
    let mut read = RowsRead::default();
    loop {
        match reader.read_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {
                if row(&rec).is_none() {
                    read.malformed += 1;
                }
            }
            Err(e) if e.is_io_error() => {
                read.stopped = Some(e);
                break;
            }
            Err(_) => read.malformed += 1,
        }
    }
    read
}

/// `transactions.<stamp>[-n].csv` → (stamp, n), so files rotated within one second keep
/// their order (a plain name sort puts `-1` before the bare stamp).
fn rotation_order(p: &Path) -> (String, u64) {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let middle = name
        .trim_start_matches("transactions.")
        .trim_end_matches(".csv")
        .to_owned();
    match middle.rsplit_once('-') {
        Some((stamp, n)) => match n.parse() {
            Ok(n) => (stamp.to_owned(), n),
            Err(_) => (middle, 0),
        },
        None => (middle, 0),
    }
}

#[cfg(test)]
#[path = "csv_log_tests.rs"]
mod tests;
