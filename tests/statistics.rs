//! Usage statistics end to end: real HTTP against the fake providers, files in a temporary
//! `LOG_DIR`, checked by reading them back with the `csv` crate.

// Test helpers: a failed step should panic with the error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use bkvy::fake::FakeOptions;
use bkvy::server::StatsOptions;
use bkvy_actors::stats::csv_log::COLUMNS;
use bkvy_actors::stats::Flush;
use common::*;
use futures::future::join_all;
use serde_json::{json, Value};

/// Appears in every prompt (and so in every fake answer); must never reach a log file or a
/// statistics answer.
const MARKER: &str = "PRIVATE-MARKER-7f3a9c";

/// The standard providers with limits high enough for a thousand requests.
fn roomy_providers() -> String {
    PROVIDERS.replace("\"rpm\": 100,", "\"rpm\": 100000,")
}

fn ok_request(i: usize) -> Value {
    ask(
        ["low", "medium", "high"][i % 3],
        &format!("{MARKER} question {i}"),
    )
}

fn invalid_request(i: usize) -> Value {
    json!({"client_id": "t", "intelligence_level": "ultra",
           "messages": [{"role": "user", "content": format!("{MARKER} {i}")}]})
}

async fn flush(h: &Harness) {
    h.state.sinks.flush();
    h.state.stats.send(Flush).await.unwrap().unwrap();
}

fn read_csv(path: &Path) -> Vec<csv::StringRecord> {
    let mut r = csv::Reader::from_path(path).unwrap();
    assert_eq!(r.headers().unwrap().iter().collect::<Vec<_>>(), COLUMNS);
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            assert_eq!(rec.len(), 25, "{rec:?}");
            rec
        })
        .collect()
}

fn col(name: &str) -> usize {
    COLUMNS.iter().position(|c| *c == name).unwrap()
}

/// Every `/statistics/*` answer, for the privacy check.
async fn all_answers(h: &Harness, dates: &[String]) -> String {
    let mut out = String::new();
    for path in ["status", "summary", "aggregate", "daily"] {
        out.push_str(
            &get(&format!("{}/statistics/{path}", h.url))
                .await
                .1
                .to_string(),
        );
    }
    for d in dates {
        out.push_str(
            &get(&format!("{}/statistics/daily/{d}", h.url))
                .await
                .1
                .to_string(),
        );
    }
    out
}

fn assert_private(text: &str, what: &str) {
    assert!(!text.contains(MARKER), "prompt text in {what}");
    for (_, secret) in SECRETS {
        assert!(!text.contains(secret), "API key secret in {what}");
    }
}

#[actix_web::test]
async fn a_thousand_concurrent_requests_give_a_thousand_rows_that_agree_with_the_daily_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let h = start_with_stats_opts(
        &roomy_providers(),
        FakeOptions::default(),
        stats_on(dir.path()),
    );
    let client = client();
    let url = format!("{}/llm/intelligence", h.url);
    let calls = (0..1_000).map(|i| {
        let body = if i % 2 == 0 {
            ok_request(i)
        } else {
            invalid_request(i)
        };
        let req = client.post(&url).send_json(&body);
        async move { req.await.unwrap().status().as_u16() }
    });
    let statuses = join_all(calls).await;
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(ok, 500, "{statuses:?}");
    flush(&h).await;

    let rows = read_csv(&dir.path().join("transactions.csv"));
    assert_eq!(rows.len(), 1_000);
    let ids: HashSet<_> = rows
        .iter()
        .map(|r| r[col("request_id")].to_owned())
        .collect();
    assert_eq!(ids.len(), 1_000, "request ids are unique");

    // Measured fields are filled for successes; failures carry their error.
    for r in &rows {
        assert!(r[col("total_time_ms")].parse::<u64>().is_ok());
        if &r[col("success")] == "True" {
            for c in [
                "queue_wait_ms",
                "rate_limit_wait_ms",
                "cost_estimate",
                "input_tokens",
            ] {
                assert!(r[col(c)].parse::<f64>().is_ok(), "{c} empty in {r:?}");
            }
            assert!(!r[col("api_key_used")].is_empty());
        } else {
            assert_eq!(&r[col("success")], "False");
            assert_eq!(&r[col("error_type")], "invalid_request");
        }
    }

    // Aggregate the CSV independently and compare with the daily endpoint.
    #[derive(Default)]
    struct Day {
        total: u64,
        ok: u64,
        time: u64,
        cost: f64,
        providers: BTreeMap<String, u64>,
        errors: BTreeMap<String, u64>,
    }
    let mut days: BTreeMap<String, Day> = BTreeMap::new();
    for r in &rows {
        let d = days
            .entry(r[col("timestamp")][..10].to_owned())
            .or_default();
        d.total += 1;
        d.ok += u64::from(&r[col("success")] == "True");
        d.time += r[col("total_time_ms")].parse::<u64>().unwrap();
        d.cost += r[col("cost_estimate")].parse::<f64>().unwrap_or(0.0);
        for (c, map) in [
            ("provider_used", &mut d.providers),
            ("error_type", &mut d.errors),
        ] {
            if !r[col(c)].is_empty() {
                *map.entry(r[col(c)].to_owned()).or_default() += 1;
            }
        }
    }
    for (date, d) in &days {
        let (status, body) = get(&format!("{}/statistics/daily/{date}", h.url)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["date"], json!(date));
        assert_eq!(body["total_requests"], d.total);
        assert_eq!(body["successful"], d.ok);
        assert_eq!(body["total_time_ms"], d.time);
        assert_eq!(body["avg_response_time_ms"], d.time / d.total);
        assert!((body["total_cost"].as_f64().unwrap() - d.cost).abs() < 1e-6);
        assert_eq!(body["by_provider"], json!(d.providers));
        assert_eq!(body["errors"], json!(d.errors));
    }
    let (_, summary) = get(&format!("{}/statistics/summary", h.url)).await;
    assert_eq!(summary["total_requests"], 1_000);
    assert_eq!(summary["successful_requests"], 500);
    assert_eq!(summary["success_rate"], 0.5);

    // Privacy: no prompt text and no key secret in any file or answer.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        assert_private(
            &std::fs::read_to_string(&path).unwrap(),
            &path.display().to_string(),
        );
    }
    let dates: Vec<_> = days.keys().cloned().collect();
    assert_private(&all_answers(&h, &dates).await, "/statistics/*");
}

#[actix_web::test]
async fn daily_totals_and_average_continue_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let today = chrono::Utc::now().date_naive().to_string();
    let day_url = |h: &Harness| format!("{}/statistics/daily/{today}", h.url);

    let h = start_with_stats(dir.path());
    for i in 0..5 {
        let body = if i < 3 {
            ok_request(i)
        } else {
            invalid_request(i)
        };
        post(&format!("{}/llm/intelligence", h.url), &body).await;
    }
    flush(&h).await;
    let (_, before) = get(&day_url(&h)).await;
    assert_eq!(before["total_requests"], 5, "{before}");
    assert_eq!(before["response_count"], 5);
    h.server.stop(true).await;
    drop(h);

    let h = start_with_stats(dir.path());
    wait_until_loaded(&h).await;
    for i in 0..4 {
        post(&format!("{}/llm/intelligence", h.url), &ok_request(i)).await;
    }
    flush(&h).await;
    let (_, after) = get(&day_url(&h)).await;
    assert_eq!(after["total_requests"], 9, "{after}");
    assert_eq!(after["successful"], 7);
    assert_eq!(after["response_count"], 9);
    let total = after["total_time_ms"].as_u64().unwrap();
    assert!(total >= before["total_time_ms"].as_u64().unwrap());
    assert_eq!(after["avg_response_time_ms"], total / 9);
    let on_disk: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("daily_stats.json")).unwrap())
            .unwrap();
    assert_eq!(on_disk[&today]["total_requests"], 9);
    assert_eq!(on_disk[&today]["response_count"], 9);
    let (_, summary) = get(&format!("{}/statistics/summary", h.url)).await;
    assert_eq!(
        summary["total_requests"], 9,
        "CSV of the first run seeded the summary"
    );
    assert_eq!(read_csv(&dir.path().join("transactions.csv")).len(), 9);
}

async fn wait_until_loaded(h: &Harness) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, st) = get(&format!("{}/statistics/status", h.url)).await;
        let tx_ready = !st["transaction_logging"]["enabled"].as_bool().unwrap()
            || st["transaction_logging"]["summary_ready"] == true;
        let daily_ready = !st["summary_stats"]["enabled"].as_bool().unwrap()
            || st["summary_stats"]["loaded"] == true;
        if tx_ready && daily_ready {
            return;
        }
        assert!(Instant::now() < deadline, "statistics never loaded: {st}");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn the_summary_is_seeded_from_a_large_existing_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("transactions.csv");
    let mut w = csv::WriterBuilder::new()
        .flexible(true)
        .from_path(&path)
        .unwrap();
    w.write_record(COLUMNS).unwrap();
    for i in 0..50_000u64 {
        let ok = i % 4 != 0;
        let mut row = vec![String::new(); 25];
        row[col("timestamp")] = "2024-03-01T12:00:00.000000+00:00".into();
        row[col("request_id")] = format!("seed-{i}");
        row[col("client_id")] = "seed".into();
        row[col("routing_method")] = ["intelligence", "scenario"][(i % 2) as usize].into();
        row[col("success")] = if ok { "True" } else { "False" }.into();
        if ok {
            row[col("provider_used")] = "openai".into();
            row[col("cost_estimate")] = "1e-05".into();
        } else {
            row[col("error_type")] = "all_alternatives_failed".into();
        }
        w.write_record(&row).unwrap();
    }
    w.write_record(["too", "short"]).unwrap();
    w.flush().unwrap();
    drop(w);
    // A torn last line, as a crash mid-write leaves it.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut f, b"2024-03-01T12:00:00.000000+00:00,torn-row").unwrap();
    drop(f);

    let opts = StatsOptions {
        summary_stats: false,
        ..stats_on(dir.path())
    };
    let h = start_with_stats_opts(PROVIDERS, FakeOptions::default(), opts);
    wait_until_loaded(&h).await;
    let t = Instant::now();
    let (status, s) = get(&format!("{}/statistics/summary", h.url)).await;
    assert!(t.elapsed() < Duration::from_secs(1), "answered from memory");
    assert_eq!(status, 200);
    assert_eq!(s["total_requests"], 50_000, "{s}");
    assert_eq!(s["successful_requests"], 37_500);
    assert_eq!(s["routing_methods"]["intelligence"], 25_000);
    assert_eq!(s["providers_used"]["openai"], 37_500);
    assert_eq!(s["errors"]["all_alternatives_failed"], 12_500);
    assert_eq!(s["total_cost_estimate"], 0.375);
    assert_eq!(
        s["malformed_rows_skipped"], 1,
        "the short row; the torn line was cut"
    );

    post(&format!("{}/llm/intelligence", h.url), &ok_request(0)).await;
    flush(&h).await;
    let (_, s) = get(&format!("{}/statistics/summary", h.url)).await;
    assert_eq!(s["total_requests"], 50_001);
    let (_, daily) = get(&format!("{}/statistics/daily", h.url)).await;
    assert_eq!(
        daily,
        json!({"enabled": false}),
        "summary stats are independent"
    );
    assert!(!dir.path().join("daily_stats.json").exists());
    // 50,000 + the new row; the short row stays but the torn line is gone.
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("torn-row"));
    assert_eq!(text.lines().count(), 1 + 50_000 + 1 + 1);
}

#[actix_web::test]
async fn endpoint_shapes_errors_and_disabled_logs() {
    let off = start();
    for p in ["summary", "aggregate", "daily", "daily/2024-01-01"] {
        let (status, body) = get(&format!("{}/statistics/{p}", off.url)).await;
        assert_eq!((status, body), (200, json!({"enabled": false})), "{p}");
    }
    let (_, st) = get(&format!("{}/statistics/status", off.url)).await;
    assert_eq!(st["transaction_logging"]["enabled"], false);
    assert_eq!(st["summary_stats"]["enabled"], false);
    assert_eq!(
        st["transaction_logging"]["log_file"],
        "logs/transactions.csv"
    );

    let dir = tempfile::tempdir().unwrap();
    let h = start_with_stats(dir.path());
    post(&format!("{}/llm/intelligence", h.url), &ok_request(0)).await;
    post(&format!("{}/llm/intelligence", h.url), &invalid_request(1)).await;
    flush(&h).await;
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();

    let (_, st) = get(&format!("{}/statistics/status", h.url)).await;
    let log_dir = dir.path().display().to_string();
    assert_eq!(st["transaction_logging"]["enabled"], true);
    assert_eq!(st["transaction_logging"]["log_directory"], json!(log_dir));
    assert_eq!(
        st["summary_stats"]["stats_file"],
        json!(dir.path().join("daily_stats.json").display().to_string())
    );

    let (_, s) = get(&format!("{}/statistics/summary", h.url)).await;
    assert_eq!(
        keys(&s),
        [
            "enabled",
            "total_requests",
            "successful_requests",
            "success_rate",
            "routing_methods",
            "providers_used",
            "intelligence_levels",
            "errors",
            "total_cost_estimate",
            "log_file",
            "malformed_rows_skipped"
        ]
    );
    assert_eq!(s["success_rate"], 0.5);
    assert_eq!(s["intelligence_levels"], json!({"low": 1}));

    let (_, a) = get(&format!("{}/statistics/aggregate", h.url)).await;
    assert_eq!(
        keys(&a),
        [
            "enabled",
            "total_requests",
            "successful_requests",
            "success_rate",
            "routing_methods",
            "providers_used",
            "intelligence_levels",
            "errors",
            "total_cost_estimate",
            "avg_response_time_ms",
            "days_tracked",
            "stats_file"
        ]
    );
    assert_eq!(
        (a["total_requests"].as_u64(), a["days_tracked"].as_u64()),
        (Some(2), Some(1))
    );

    let (_, all) = get(&format!("{}/statistics/daily", h.url)).await;
    let today = chrono::Utc::now().date_naive().to_string();
    assert_eq!(keys(&all), vec![today.clone()]);
    let (status, day) = get(&format!("{}/statistics/daily/{today}", h.url)).await;
    assert_eq!(status, 200);
    assert_eq!(day["date"], json!(today));
    assert_eq!(day["success_rate"], 0.5);
    assert_eq!(day["by_routing_method"], json!({"intelligence": 2}));

    let (status, body) = get(&format!("{}/statistics/daily/x", h.url)).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"success": false, "error": "invalid date \"x\": expected YYYY-MM-DD",
               "error_code": "invalid_date"})
    );
    let (status, _) = get(&format!("{}/statistics/daily/2024-02-30", h.url)).await;
    assert_eq!(status, 400);
    let (status, body) = get(&format!("{}/statistics/daily/2001-01-01", h.url)).await;
    assert_eq!(status, 404);
    assert_eq!(body["error_code"], "no_data_for_date");
}

/// Control characters a client puts into a field that reaches the log (here a model name
/// no provider has) never reach a CSV cell: a terminal or spreadsheet showing the file
/// cannot be driven by them.
#[actix_web::test]
async fn control_characters_from_a_request_never_reach_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let h = start_with_stats(dir.path());
    let (status, _) = post(
        &format!("{}/llm/direct", h.url),
        &json!({"client_id": "t", "provider": "openai", "model": "gpt\u{1b}[31m\u{7}\u{0}x",
                "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert!((400..500).contains(&status), "{status}");
    flush(&h).await;
    let rows = read_csv(&dir.path().join("transactions.csv"));
    assert_eq!(rows.len(), 1);
    let model = &rows[0][col("requested_model")];
    assert_eq!(model, "gpt\u{FFFD}[31m\u{FFFD}\u{FFFD}x");
    for cell in rows[0].iter() {
        assert!(
            !cell.chars().any(|c| c != '\t' && c.is_control()),
            "{cell:?}"
        );
    }
}
