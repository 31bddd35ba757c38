use proptest::prelude::*;

use super::*;
use crate::stats::csv_log::CsvLog;
use crate::stats::testing::event;

#[test]
fn scanning_the_written_csv_gives_the_live_summary() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = CsvLog::open(dir.path(), Some(4_000)).unwrap();
    let events: Vec<_> = (0..100).map(event).collect();
    let mut live = Summary::default();
    for chunk in events.chunks(9) {
        log.append(chunk).unwrap();
        chunk.iter().for_each(|e| live.record(e));
    }
    let scanned = scan(dir.path());
    assert!((scanned.total_cost - live.total_cost).abs() < 1e-12);
    assert_eq!(
        Summary {
            total_cost: 0.0,
            ..scanned.clone()
        },
        Summary {
            total_cost: 0.0,
            ..live.clone()
        }
    );
    assert_eq!(live.total_requests, 100);
    assert_eq!(live.successful_requests, 67);
    assert_eq!(live.errors["invalid_request"], 33);
}

#[test]
fn malformed_rows_are_skipped_and_counted() {
    let header = crate::stats::csv_log::COLUMNS.join(",");
    let good = String::from_utf8(
        crate::stats::csv_log::encode(crate::stats::csv_log::row(&event(0))).unwrap(),
    )
    .unwrap();
    let bad_success = good.replace(",True,", ",Maybe,");
    let text = format!("{header}\n{good}too,few,fields\n{bad_success}{good}");
    let mut s = Summary::default();
    scan_reader(&mut s, text.as_bytes());
    assert_eq!(s.total_requests, 2);
    assert_eq!(s.malformed_rows_skipped, 2);
    // Invalid UTF-8 is skipped too, and reading goes on.
    let mut bytes = format!("{header}\n").into_bytes();
    bytes.extend_from_slice(b"\xff\xfe,x\n");
    bytes.extend_from_slice(good.as_bytes());
    let mut s = Summary::default();
    scan_reader(&mut s, bytes.as_slice());
    assert_eq!((s.total_requests, s.malformed_rows_skipped), (1, 1));
}

#[test]
fn a_missing_directory_is_an_empty_summary() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(scan(&dir.path().join("none")), Summary::default());
}

proptest! {
    /// Merging partial summaries in any order gives the totals of counting all at once.
    #[test]
    fn merge_is_order_independent(ids in proptest::collection::vec(0u64..300, 0..60), split in 0usize..60) {
        let mut whole = Summary::default();
        ids.iter().for_each(|&i| whole.record(&event(i)));
        let split = split.min(ids.len());
        let (mut a, mut b) = (Summary::default(), Summary::default());
        ids[..split].iter().for_each(|&i| a.record(&event(i)));
        ids[split..].iter().for_each(|&i| b.record(&event(i)));
        let mut ab = a.clone();
        ab.merge(&b);
        b.merge(&a);
        for m in [ab, b] {
            prop_assert!((m.total_cost - whole.total_cost).abs() < 1e-12);
            prop_assert_eq!(Summary { total_cost: 0.0, ..m }, Summary { total_cost: 0.0, ..whole.clone() });
        }
    }
}
