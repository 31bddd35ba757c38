use std::fs;

use super::*;
use crate::stats::testing::{event, DAY0};

#[test]
fn floats_are_written_as_python_repr() {
    for (x, want) in [
        (1.6e-5, "1.6e-05"),
        (2.5e-7, "2.5e-07"),
        (0.5, "0.5"),
        (30.0, "30.0"),
        (0.0, "0.0"),
        (0.0001, "0.0001"),
        (1e16, "1e+16"),
        (123.456, "123.456"),
    ] {
        assert_eq!(python_float(x), want, "{x}");
    }
}

#[test]
fn timestamps_are_utc_iso_with_micros_and_offset() {
    assert_eq!(
        iso_timestamp(DAY0 + 678),
        "2024-03-01T12:00:00.678000+00:00"
    );
    assert_eq!(iso_timestamp(DAY0), "2024-03-01T12:00:00.000000+00:00");
}

proptest::proptest! {
    #[test]
    fn timestamps_match_the_format_string(ms in -62_135_596_800_000i64..253_402_300_799_999) {
        let t = DateTime::<Utc>::from_timestamp_millis(ms).unwrap();
        proptest::prop_assert_eq!(
            iso_timestamp(ms),
            t.format(TIMESTAMP_FORMAT).to_string()
        );
    }

    #[test]
    fn text_cells_match_the_line_and_formula_rules(s in "[=+@\\-\t\r\na-z' \u{0}\u{7}\u{1b}\u{7f}\u{85}]{0,12}") {
        let one_line: String = s
            .chars()
            .map(|c| match c {
                '\n' | '\r' => ' ',
                '\u{0}' | '\u{7}' | '\u{1b}' | '\u{7f}' | '\u{85}' => '\u{FFFD}',
                c => c,
            })
            .collect();
        let want = if one_line.starts_with(FORMULA_STARTS) { format!("'{one_line}") } else { one_line };
        proptest::prop_assert_eq!(text_cell(&s), want);
    }
}

#[test]
fn long_rows_encode_whole() {
    let long = "x".repeat(5_000);
    let line = encode(["a", long.as_str(), "b"]).unwrap();
    assert_eq!(line, format!("a,{long},b\n").into_bytes());
}

#[test]
fn text_cells_cannot_become_formulas_or_break_lines() {
    assert_eq!(text_cell("=SUM(A1)"), "'=SUM(A1)");
    assert_eq!(text_cell("+1"), "'+1");
    assert_eq!(text_cell("-1"), "'-1");
    assert_eq!(text_cell("@x"), "'@x");
    assert_eq!(text_cell("\tx"), "'\tx");
    assert_eq!(text_cell("\rx"), " x", "a CR becomes a space first");
    assert_eq!(text_cell("a\nb\r\nc"), "a b  c");
    assert_eq!(
        text_cell("a\u{1b}[31mb\u{7}\u{0}c\u{7f}"),
        "a\u{FFFD}[31mb\u{FFFD}\u{FFFD}c\u{FFFD}",
        "control characters are replaced"
    );
    assert_eq!(text_cell("a\tb"), "a\tb", "a tab inside a cell stays");
    assert_eq!(text_cell("plain"), "plain");
    for s in ["=SUM(A1)", "-1", "@x", "plain", "'quoted"] {
        assert_eq!(unescape_cell(&text_cell(s)), s);
    }
}

#[test]
fn a_row_has_the_25_columns_filled_from_the_event() {
    let ok = row(&event(0));
    assert_eq!(ok.len(), COLUMNS.len());
    assert_eq!(ok[1], "req-0");
    assert_eq!(ok[3], "intelligence");
    assert_eq!(ok[4], "low");
    assert_eq!(ok[5], "", "null → empty cell");
    assert_eq!(ok[9], "True");
    assert_eq!(ok[14], "0", "queue_wait_ms measured");
    assert_eq!(ok[18], "0.0", "cost 0 is written, not dropped");
    let mut failed = event(2);
    failed.error_message = Some("x".repeat(2_000));
    failed.max_wait_seconds = Some(30.0);
    let r = row(&failed);
    assert_eq!(r[9], "False");
    assert_eq!(r[8], "30");
    assert_eq!(r[22].chars().count(), MAX_ERROR_MESSAGE_CHARS);
    assert_eq!(r[10], "");
    assert_eq!(r[18], "");
}

#[test]
fn repair_cuts_a_torn_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.csv");
    fs::write(&p, "h1,h2\na,b\nc,\"d").unwrap();
    assert_eq!(repair_tail(&p).unwrap(), 4);
    assert_eq!(fs::read_to_string(&p).unwrap(), "h1,h2\na,b\n");
    assert_eq!(repair_tail(&p).unwrap(), 0);
    fs::write(&p, "no newline at all").unwrap();
    repair_tail(&p).unwrap();
    assert_eq!(fs::read_to_string(&p).unwrap(), "");
}

fn rows_of_file(p: &Path) -> Vec<csv::StringRecord> {
    let mut r = csv::Reader::from_path(p).unwrap();
    assert_eq!(r.headers().unwrap().iter().collect::<Vec<_>>(), COLUMNS);
    r.records().map(|x| x.unwrap()).collect()
}

#[test]
fn header_once_then_again_when_the_file_disappears() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("nested/logs");
    let mut log = CsvLog::open(&logs, None).unwrap();
    let events: Vec<_> = (0..10).map(event).collect();
    log.append(&events[..5]).unwrap();
    log.append(&events[5..]).unwrap();
    let rows = rows_of_file(log.path());
    assert_eq!(rows.len(), 10);
    assert!(rows.iter().all(|r| r.len() == 25));
    fs::remove_file(log.path()).unwrap();
    log.append(&events[..2]).unwrap();
    assert_eq!(rows_of_file(log.path()).len(), 2);
    // Re-opening a torn file keeps every complete row.
    let mut f = OpenOptions::new().append(true).open(log.path()).unwrap();
    f.write_all(b"2024-03-01T12:00:00.000000+00:00,torn")
        .unwrap();
    drop(log);
    let log = CsvLog::open(&logs, None).unwrap();
    assert_eq!(rows_of_file(log.path()).len(), 2);
}

#[test]
fn rotation_keeps_every_row_in_readable_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = CsvLog::open(dir.path(), Some(2_000)).unwrap();
    let events: Vec<_> = (0..60).map(event).collect();
    for chunk in events.chunks(7) {
        log.append(chunk).unwrap();
    }
    let files = log_files(dir.path()).unwrap();
    assert!(files.len() > 2, "{files:?}");
    assert_eq!(files.last().unwrap(), log.path());
    let mut ids = Vec::new();
    for f in &files {
        assert!(fs::metadata(f).unwrap().len() <= 2_000, "{f:?}");
        ids.extend(rows_of_file(f).into_iter().map(|r| r[1].to_owned()));
    }
    let want: Vec<_> = (0..60).map(|i| format!("req-{i}")).collect();
    assert_eq!(ids, want, "all rows, in order, across the files");
}

/// The first cell of every row [`read_rows`] hands on; rows whose first cell is `bad` are
/// refused.
fn first_cells(source: impl Read) -> (Vec<String>, RowsRead) {
    let mut seen = Vec::new();
    let read = read_rows(source, |rec| {
        let first = rec.get(0)?;
        (first != "bad").then(|| seen.push(first.to_owned()))
    });
    (seen, read)
}

#[test]
fn read_rows_counts_and_skips_malformed_rows() {
    let (seen, read) = first_cells(&b"h1,h2\na,1\nbad,2\n\xff\xfe,3\nb\nc,4,extra\n"[..]);
    assert_eq!(seen, ["a", "b", "c"], "any number of cells is handed on");
    assert_eq!(
        read.malformed, 2,
        "the refused row and the one that is not UTF-8"
    );
    assert!(read.stopped.is_none());
}

#[test]
fn read_rows_skips_the_header_whatever_it_holds() {
    let (seen, read) = first_cells(&b"a,1\nb,2\n"[..]);
    assert_eq!(
        seen,
        ["b"],
        "the first line is the header even when it looks like a row"
    );
    assert_eq!(read.malformed, 0);
    for source in [&b""[..], b"h1,h2\n", b"h1,h2"] {
        let (seen, read) = first_cells(source);
        assert!(seen.is_empty(), "{source:?}");
        assert_eq!(read.malformed, 0, "{source:?}");
        assert!(read.stopped.is_none(), "{source:?}");
    }
}

/// A source whose disk has gone away.
struct Broken;

impl Read for Broken {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::other("disk gone"))
    }
}

#[test]
fn read_rows_stops_at_an_io_error() {
    let (seen, read) = first_cells(b"h\na\nb\n".chain(Broken));
    assert_eq!(seen, ["a", "b"], "the rows before the error are handed on");
    assert_eq!(read.malformed, 0);
    let stopped = read.stopped.expect("the read stops");
    assert!(stopped.is_io_error(), "{stopped}");
}
