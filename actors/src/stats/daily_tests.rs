use proptest::prelude::*;

use super::*;
use crate::stats::testing::{event, DAY0};

#[test]
fn a_day_counts_every_request_zeros_included() {
    let mut d = DailyStats::default();
    for i in 0..3 {
        d.record(&event(i * 5)); // all on DAY0's day
    }
    let day = &d.days[&utc_day(DAY0)];
    assert_eq!(day.total_requests, 3);
    assert_eq!(day.successful, 2, "event 5 fails");
    assert_eq!(day.by_routing_method["intelligence"], 1);
    assert_eq!(day.by_routing_method["scenario"], 1);
    assert_eq!(day.errors["invalid_request"], 1);
    // times 0, 50, 30: the zero counts towards the average
    assert_eq!(day.response_count, 3);
    assert_eq!(day.total_time_ms, 80);
    assert_eq!(day.avg_response_time_ms, 26);
    assert!((day.success_rate() - 2.0 / 3.0).abs() < 1e-12);
}

#[test]
fn the_file_has_the_original_keys_plus_the_sums_and_cost_in_6_dp() {
    let mut d = DailyStats::default();
    let mut ev = event(1);
    ev.started_at = DAY0;
    ev.cost_usd = Some(0.123_456_789);
    d.record(&ev);
    let v: serde_json::Value = serde_json::to_value(&d).unwrap();
    let day = &v["2024-03-01"];
    let keys: Vec<_> = day.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        [
            "total_requests",
            "successful",
            "by_routing_method",
            "by_intelligence",
            "by_provider",
            "errors",
            "total_cost",
            "avg_response_time_ms",
            "total_time_ms",
            "response_count"
        ]
    );
    assert_eq!(day["total_cost"], 0.123457);
}

#[test]
fn an_original_file_without_sums_continues_its_average() {
    let text = r#"{"2024-03-01": {"total_requests": 4, "successful": 4, "by_routing_method": {"intelligence": 4},
        "by_intelligence": {}, "by_provider": {}, "errors": {}, "total_cost": 0.5, "avg_response_time_ms": 100}}"#;
    let mut d = DailyStats::parse(text).unwrap();
    let day = d.days.values().next().unwrap().clone();
    assert_eq!((day.total_time_ms, day.response_count), (400, 4));
    let mut ev = event(0);
    ev.started_at = DAY0;
    ev.total_time_ms = 600;
    d.record(&ev);
    assert_eq!(d.days[&utc_day(DAY0)].avg_response_time_ms, 200);
}

#[test]
fn save_and_load_round_trip_and_a_corrupt_file_is_kept_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    assert_eq!(DailyStats::load(&path), DailyStats::default());
    let mut d = DailyStats::default();
    for i in 0..20 {
        d.record(&event(i));
    }
    d.save(&path).unwrap();
    let back = DailyStats::load(&path);
    assert_eq!(back.days.len(), d.days.len());
    assert_eq!(back.total().total_requests, 20);
    assert_eq!(back.total().total_time_ms, d.total().total_time_ms);
    fs::write(&path, "{not json").unwrap();
    assert_eq!(DailyStats::load(&path), DailyStats::default());
    assert!(!path.exists());
    let kept: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("daily_stats.json.corrupt-"))
        .collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(
        fs::read_to_string(dir.path().join(&kept[0])).unwrap(),
        "{not json"
    );
}

proptest! {
    /// Recording events in any order, or in two parts merged afterwards (file + live),
    /// gives the same totals.
    #[test]
    fn order_and_split_do_not_change_totals(
        ids in proptest::collection::vec(0u64..500, 0..80),
        split in 0usize..80,
    ) {
        let mut whole = DailyStats::default();
        for &i in &ids {
            whole.record(&event(i));
        }
        let mut reversed = DailyStats::default();
        for &i in ids.iter().rev() {
            reversed.record(&event(i));
        }
        let split = split.min(ids.len());
        let (mut a, mut b) = (DailyStats::default(), DailyStats::default());
        for &i in &ids[..split] {
            a.record(&event(i));
        }
        for &i in &ids[split..] {
            b.record(&event(i));
        }
        b.merge(&a);
        for other in [&reversed, &b] {
            prop_assert_eq!(whole.days.len(), other.days.len());
            for (day, w) in &whole.days {
                let o = &other.days[day];
                let mut o2 = o.clone();
                o2.total_cost = w.total_cost;
                prop_assert!((w.total_cost - o.total_cost).abs() < 1e-12);
                prop_assert_eq!(w, &o2);
            }
        }
    }
}
