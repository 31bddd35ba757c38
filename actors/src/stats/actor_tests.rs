use std::fs;
use std::path::Path;

use super::*;
use crate::stats::daily::utc_day;
use crate::stats::testing::{event, DAY0};

fn opts(dir: &Path) -> StatsOptions {
    StatsOptions {
        transaction_logging: true,
        summary_stats: true,
        log_dir: dir.to_owned(),
        max_csv_bytes: None,
    }
}

#[actix_rt::test]
async fn events_reach_both_files_and_a_restart_continues_them() {
    let dir = tempfile::tempdir().unwrap();
    let a = StatsActor::new(opts(dir.path())).start();
    a.send(CompletedBatch::from((0..30).map(event).collect::<Vec<_>>()))
        .await
        .unwrap();
    a.send(Flush).await.unwrap().unwrap();
    let csv = fs::read_to_string(dir.path().join("transactions.csv")).unwrap();
    assert_eq!(csv.lines().count(), 31);
    let day = utc_day(DAY0);
    let DayReply::Day(d) = a.send(GetDaily { date: day }).await.unwrap() else {
        panic!("no data")
    };
    assert_eq!(d.total_requests, 6);

    // A second actor on the same directory starts from what the first left.
    let b = StatsActor::new(opts(dir.path())).start();
    b.send(CompletedBatch::from(vec![event(100)]))
        .await
        .unwrap();
    b.send(Flush).await.unwrap().unwrap();
    let s = b.send(GetSummary).await.unwrap().unwrap();
    assert_eq!(s.total_requests, 31);
    let agg = b.send(GetAggregate).await.unwrap().unwrap();
    assert_eq!(agg.totals.total_requests, 31);
    assert_eq!(agg.days_tracked, 5);
    let on_disk = DailyStats::load(&dir.path().join("daily_stats.json"));
    assert_eq!(on_disk.total().total_requests, 31);
}

#[actix_rt::test]
async fn disabled_logs_answer_disabled_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let o = StatsOptions {
        log_dir: dir.path().join("logs"),
        ..StatsOptions::disabled()
    };
    let a = StatsActor::new(o).start();
    a.send(CompletedBatch::from(vec![event(1)])).await.unwrap();
    a.send(Flush).await.unwrap().unwrap();
    assert_eq!(a.send(GetSummary).await.unwrap(), None);
    assert_eq!(
        a.send(GetDaily {
            date: utc_day(DAY0)
        })
        .await
        .unwrap(),
        DayReply::Disabled
    );
    assert!(!dir.path().join("logs").exists());
}
