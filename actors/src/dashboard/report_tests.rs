use super::*;
use crate::dashboard::store::HOUR_MS;

const NOW: Millis = 1_767_323_045_000; // 2026-01-02T03:04:05Z

fn tx(at_ms: Millis, success: bool, key: &str, ms: i64) -> Tx {
    Tx {
        at_ms,
        request_id: format!("r{at_ms}"),
        client_id: "c".into(),
        routing_method: "intelligence".into(),
        intelligence_level: Some("low".into()),
        max_wait_seconds: Some(1.0),
        success,
        provider: Some("openai".into()),
        model: Some("m".into()),
        api_key: success.then(|| key.to_owned()),
        total_time_ms: ms,
        cost: Some(0.001),
        input_tokens: Some(1),
        output_tokens: Some(1),
        error_type: (!success).then(|| "timeout".into()),
        error_message: None,
    }
}

#[test]
fn steps_fit_the_range() {
    let r = |h: i64| TimeRange::last_hours(h, NOW);
    assert_eq!(series_step(&r(1), false), MINUTE_MS);
    assert_eq!(series_step(&r(24), false), 15 * MINUTE_MS);
    assert_eq!(series_step(&r(72), true), HOUR_MS);
    assert_eq!(series_step(&r(24 * 30), true), 12 * HOUR_MS);
    assert_eq!(series_step(&r(8760), true), 7 * 24 * HOUR_MS);
    assert_eq!(
        series_step(&r(1), true),
        HOUR_MS,
        "hour data needs hour steps"
    );
    for h in [1, 6, 24, 72, 168, 336, 720, 2160, 4320, 8760] {
        let step = series_step(&r(h), h > 48);
        assert!(ceil_div(h * HOUR_MS, step) <= MAX_POINTS, "{h}");
    }
}

#[test]
fn numbers_of_a_known_sequence() {
    let mut s = Store::default();
    s.record(tx(NOW - 30 * MINUTE_MS, true, "k1", 100), NOW);
    s.record(tx(NOW - 20 * MINUTE_MS, true, "k2", 3000), NOW);
    s.record(tx(NOW - 10 * MINUTE_MS, false, "", 200), NOW);
    s.record(tx(NOW - 5 * HOUR_MS, true, "k1", 100), NOW);
    let rep = s.query(&TimeRange::last_hours(1, NOW), NOW);
    let o = &rep.overview;
    assert_eq!(
        (o.total_requests, o.successful_requests, o.failed_requests),
        (3, 2, 1)
    );
    assert_eq!(o.success_rate, 66.67);
    assert_eq!(o.total_cost, 0.003);
    assert_eq!(o.avg_response_time_ms, Some(1100));
    assert_eq!(o.p99_response_time_ms, Some(3000));
    assert_eq!((o.wait_time_met, o.wait_time_exceeded), (2, 1));
    assert_eq!(o.wait_time_compliance_rate, Some(66.67));
    assert_eq!(rep.recent_transactions.len(), 3);
    assert_eq!(
        rep.recent_transactions[0].tx.at_ms,
        NOW - 10 * MINUTE_MS,
        "newest first"
    );
    assert_eq!(rep.errors.details.len(), 1);
    assert_eq!(rep.api_keys.len(), 2);
    assert_eq!(rep.time_series.len(), 61);
    assert_eq!(rep.time_series.iter().map(|p| p.total).sum::<u64>(), 3);
    assert_eq!(rep.wait_time_analysis[0].count, 3);
    assert!(rep.data_coverage.partial.eq(&false));
    let day = s.query(&TimeRange::last_hours(24, NOW), NOW);
    assert_eq!(day.overview.total_requests, 4);
    assert_eq!(day.api_keys[0].api_key, "k1");
    assert_eq!(day.api_keys[0].requests, 2);
    assert!(day.data_coverage.partial, "data starts 5 h ago");
    assert!(day.data_coverage.warning.unwrap().contains("Partial"));
}

#[test]
fn coverage_of_empty_and_disjoint_ranges() {
    let s = Store::default();
    let rep = s.query(&TimeRange::last_hours(24, NOW), NOW);
    assert!(!rep.data_coverage.has_data);
    assert!(!rep.data_coverage.partial);
    assert_eq!(rep.overview.avg_response_time_ms, None);
    let mut s = Store::default();
    s.record(tx(NOW - 100 * HOUR_MS, true, "k", 1), NOW);
    let rep = s.query(&TimeRange::last_hours(24, NOW), NOW);
    assert!(rep.data_coverage.partial);
    assert!(rep
        .data_coverage
        .warning
        .unwrap()
        .starts_with("No data in the selected range"));
    assert_eq!(rep.data_coverage.resolution, "minute");
    let old = s.query(&TimeRange::last_hours(200, NOW), NOW);
    assert_eq!(old.overview.total_requests, 1);
    assert_eq!(old.data_coverage.resolution, "hour");
}

#[test]
fn thirty_days_of_a_million_rows_answer_in_milliseconds() {
    let mut s = Store::default();
    let span = 30 * 24 * HOUR_MS;
    for i in 0..1_000_000i64 {
        s.record(
            tx(
                NOW - span + i * (span / 1_000_000),
                i % 10 != 0,
                "k",
                50 + i % 900,
            ),
            NOW,
        );
    }
    let t = std::time::Instant::now();
    let rep = s.query(&TimeRange::last_hours(24 * 30, NOW), NOW);
    let took = t.elapsed();
    assert_eq!(rep.overview.total_requests, 1_000_000);
    assert!(took < std::time::Duration::from_millis(500), "{took:?}");
}

#[test]
fn equal_arrival_times_list_the_last_finished_first() {
    let mut s = Store::default();
    let mut a = tx(NOW - MINUTE_MS, true, "k", 1);
    a.request_id = "first".into();
    let mut b = a.clone();
    b.request_id = "second".into();
    s.record(a, NOW);
    s.record(b, NOW);
    let rep = s.query(&TimeRange::last_hours(1, NOW), NOW);
    assert_eq!(rep.recent_transactions[0].tx.request_id, "second");
}
