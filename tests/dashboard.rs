//! The web dashboard end to end: real HTTP against the fake providers, numbers checked
//! against a known sequence of requests, ranges, history loaded from a CSV written before
//! start, the off switch, the IP allow-list (spoofing included), escaping and headers.

// Test helpers: a failed step should panic with the error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "dashboard/access.rs"]
mod access;
mod common;

use std::time::Duration;

use bkvy::fake::FakeOptions;
use bkvy::http::access::{AccessPolicy, IpList};
use bkvy_actors::stats::csv_log;
use bkvy_actors::{RequestCompleted, RoutingMethod};
use common::*;
use serde_json::{json, Value};

pub const XSS: [&str; 2] = [
    "<script>alert(1)</script>",
    "\"><img src=x onerror=alert(1)>",
];

fn slow() -> FakeOptions {
    FakeOptions {
        latency: Duration::from_millis(20),
        ..FakeOptions::default()
    }
}

pub fn direct(client: &str, provider: &str, model: &str, key: &str, wait: f64) -> Value {
    json!({
        "client_id": client, "provider": provider, "model": model, "api_key_id": key,
        "max_wait_seconds": wait, "messages": [{"role": "user", "content": "hello"}],
    })
}

/// POSTs and returns (status, x-bkvy-cost-usd).
pub async fn send(url: &str, body: &Value) -> (u16, f64) {
    let mut res = client().post(url).send_json(body).await.unwrap();
    let _ = res.body().await;
    let cost = res
        .headers()
        .get("x-bkvy-cost-usd")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    (res.status().as_u16(), cost)
}

pub fn policy(allowed: &str, trusted: &str) -> AccessPolicy {
    AccessPolicy {
        allowed: IpList::parse(allowed).unwrap(),
        trusted_proxies: IpList::parse(trusted).unwrap(),
        ..AccessPolicy::default()
    }
}

#[actix_web::test]
async fn numbers_match_a_known_sequence_of_requests() {
    let h = start_dashboard(AccessPolicy::default(), None, slow());
    let direct_url = format!("{}/llm/direct", h.url);
    let mut cost = 0.0;
    for _ in 0..3 {
        let (s, c) = send(
            &direct_url,
            &direct("alpha", "openai", "gpt-4o-mini", "oa1", 30.0),
        )
        .await;
        assert_eq!(s, 200);
        cost += c;
    }
    for _ in 0..2 {
        let (s, c) = send(
            &direct_url,
            &direct("beta", "anthropic", "claude-haiku", "an1", 0.0),
        )
        .await;
        assert_eq!(s, 200);
        cost += c;
    }
    let invalid = json!({"client_id": "gamma", "intelligence_level": "ultra",
                         "messages": [{"role": "user", "content": "x"}]});
    assert_eq!(
        send(&format!("{}/llm/intelligence", h.url), &invalid)
            .await
            .0,
        422
    );
    let (s, _) = send(
        &direct_url,
        &direct("gamma", "deadai", "dead-model", "d1", 30.0),
    )
    .await;
    assert!(s >= 500, "{s}");
    assert!(cost > 0.0);

    let d = dashboard_data_with(&h.url, 7).await;
    let o = &d["overview"];
    assert_eq!(o["total_requests"], 7, "{d}");
    assert_eq!(o["successful_requests"], 5);
    assert_eq!(o["failed_requests"], 2);
    assert_eq!(o["success_rate"], 71.43);
    assert!(
        (o["total_cost"].as_f64().unwrap() - cost).abs() < 2e-6,
        "{o} vs {cost}"
    );
    assert_eq!(o["wait_time_met"], 4, "{o}");
    assert_eq!(
        o["wait_time_exceeded"], 2,
        "max_wait_seconds 0 is always exceeded"
    );
    assert_eq!(o["wait_time_compliance_rate"], 66.67);
    assert!(o["p95_response_time_ms"].as_i64().unwrap() >= 20);
    assert_eq!(o["time_window_hours"], 1.0);

    let dist = &d["distributions"];
    assert_eq!(dist["providers"], json!({"anthropic": 2, "openai": 3}));
    assert_eq!(dist["models"], json!({"claude-haiku": 2, "gpt-4o-mini": 3}));
    assert_eq!(dist["routing_methods"]["direct"], 6);
    assert_eq!(dist["routing_methods"]["intelligence"], 1);
    assert_eq!(dist["clients"]["alpha"], 3);
    assert_eq!(dist["clients"]["beta"], 2);

    let keys = d["api_keys"].as_array().unwrap();
    assert_eq!(keys[0]["api_key"], "oa1");
    assert_eq!(keys[0]["requests"], 3);
    assert_eq!(keys[0]["successful"], 3);
    assert_eq!(keys[0]["success_rate"], 100.0);
    assert_eq!(keys[0]["models_used"], json!({"gpt-4o-mini": 3}));
    assert!(keys[0]["total_tokens"].as_u64().unwrap() > 0);
    assert_eq!(keys[1]["api_key"], "an1");

    let recent = d["recent_transactions"].as_array().unwrap();
    assert_eq!(recent.len(), 7);
    let times: Vec<&str> = recent
        .iter()
        .map(|t| t["timestamp"].as_str().unwrap())
        .collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "newest first");
    assert_eq!(recent[0]["model"], "dead-model");
    assert_eq!(recent[0]["success"], false);

    let errors = &d["errors"];
    assert_eq!(
        errors["types"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>(),
        2
    );
    assert_eq!(errors["details"][0]["model"], "dead-model");
    let waits = d["wait_time_analysis"].as_array().unwrap();
    assert_eq!(waits[0]["bucket"], "0-10s");
    assert_eq!(waits[0]["count"], 2);
    assert_eq!(waits[1]["bucket"], "10-30s");
    assert_eq!(waits[1]["count"], 4);
    assert_eq!(waits[1]["failed"], 1);
    let series: u64 = d["time_series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["total"].as_u64().unwrap())
        .sum();
    assert_eq!(series, 7);
    assert!(d["live"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["api_key_id"] == "oa1" && l["circuit_state"] == "closed"));
    assert!(d["last_updated"].as_str().unwrap().ends_with('Z'));
    h.stop().await;
}

#[actix_web::test]
async fn ranges_coverage_and_invalid_parameters() {
    let h = start_dashboard(AccessPolicy::default(), None, FakeOptions::default());
    let (s, _) = send(
        &format!("{}/llm/direct", h.url),
        &direct("a", "openai", "gpt-4o", "oa1", 30.0),
    )
    .await;
    assert_eq!(s, 200);
    let d = dashboard_data_with(&h.url, 1).await;
    assert_eq!(d["data_coverage"]["partial"], true, "data only starts now");

    let (_, day) = get(&format!("{}/dashboard/data?hours=24", h.url)).await;
    assert_eq!(day["overview"]["total_requests"], 1);
    assert_eq!(
        day["data_coverage"]["partial"], true,
        "data only starts now"
    );
    assert!(day["data_coverage"]["warning"]
        .as_str()
        .unwrap()
        .contains("Partial"));
    assert!(day["data_coverage"]["earliest_available"].is_string());
    assert_eq!(day["overview"]["time_window_hours"], 24.0);

    let (_, year) = get(&format!("{}/dashboard/data?hours=8760", h.url)).await;
    assert_eq!(year["overview"]["total_requests"], 1);
    assert_eq!(year["data_coverage"]["resolution"], "hour");

    let past = format!(
        "{}/dashboard/data?start_date=2020-01-01T00:00:00Z&end_date=2020-01-02T00:00:00",
        h.url
    );
    let (s, old) = get(&past).await;
    assert_eq!(s, 200);
    assert_eq!(old["overview"]["total_requests"], 0);
    assert!(old["data_coverage"]["warning"]
        .as_str()
        .unwrap()
        .starts_with("No data in the selected range"));
    assert_eq!(old["time_series"].as_array().unwrap().len(), 24);

    let now = chrono::Utc::now();
    let start = (now - chrono::Duration::minutes(30))
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string();
    let q = format!(
        "{}/dashboard/data?start_date={}",
        h.url,
        start.replace('+', "%2B")
    );
    let (s, custom) = get(&q).await;
    assert_eq!(s, 200, "{custom}");
    assert_eq!(custom["overview"]["total_requests"], 1);
    assert_eq!(custom["data_coverage"]["partial"], true);
    // A range starting within 5 minutes of the first data counts as covered.
    let start = (now - chrono::Duration::minutes(2))
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    let (_, covered) = get(&format!("{}/dashboard/data?start_date={start}", h.url)).await;
    assert_eq!(covered["overview"]["total_requests"], 1);
    assert_eq!(covered["data_coverage"]["partial"], false, "{covered}");

    for (query, word) in [
        ("hours=0", "hours"),
        ("hours=8761", "hours"),
        ("hours=abc", "hours"),
        ("start_date=yesterday", "start_date"),
        ("start_date=2026-01-02&end_date=2026-01-01", "end_date"),
        ("end_date=2026-01-01", "start_date"),
        ("hours=1&hours=2", "hours"),
    ] {
        for path in ["data", "fragment", ""] {
            let url = format!(
                "{}/dashboard{}?{query}",
                h.url,
                if path.is_empty() {
                    String::new()
                } else {
                    format!("/{path}")
                }
            );
            let (s, body) = get(&url).await;
            assert_eq!(s, 400, "{url}: {body}");
            assert_eq!(body["success"], false);
            assert_eq!(body["error_code"], "invalid_parameter");
            assert!(
                body["error"].as_str().unwrap().contains(word),
                "{query}: {body}"
            );
        }
    }
    h.stop().await;
}

fn csv_with(events: &[RequestCompleted]) -> Vec<u8> {
    let mut out = csv_log::encode(csv_log::COLUMNS).unwrap();
    for ev in events {
        out.extend(csv_log::encode(csv_log::row(ev)).unwrap());
    }
    out
}

#[actix_web::test]
async fn history_is_loaded_from_the_csv_written_before_start() {
    let dir = tempfile::tempdir().unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let day = 24 * 3_600_000;
    let mut events = Vec::new();
    for (i, age) in [3 * day, 10 * day, 10 * day + 60_000, 100 * day]
        .iter()
        .enumerate()
    {
        let mut ev = RequestCompleted::new(
            now - age,
            format!("old-{i}"),
            "historic".into(),
            RoutingMethod::Direct,
        );
        ev.success = i != 1;
        ev.provider_used = ev.success.then(|| "openai".to_owned());
        ev.model_used = ev.success.then(|| "gpt-4o".to_owned());
        ev.api_key_used = ev.success.then(|| "oa1".to_owned());
        ev.error_type = (!ev.success).then(|| "timeout".to_owned());
        ev.cost_usd = Some(0.5);
        ev.total_time_ms = 100;
        events.push(ev);
    }
    std::fs::write(dir.path().join("transactions.csv"), csv_with(&events)).unwrap();
    let h = start_dashboard(
        AccessPolicy::default(),
        Some(dir.path()),
        FakeOptions::default(),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, health) = get(&format!("{}/dashboard/health", h.url)).await;
        if health["history_loaded"] == true {
            assert_eq!(health["actor"]["history_rows"], 4, "{health}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "history never loaded");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    let data = |q: String| {
        let url = format!("{}/dashboard/data?{q}", h.url);
        async move { get(&url).await.1 }
    };
    assert_eq!(
        data("hours=1".into()).await["overview"]["total_requests"],
        0
    );
    let month = data("hours=720".into()).await;
    assert_eq!(month["overview"]["total_requests"], 3);
    assert_eq!(month["overview"]["failed_requests"], 1);
    assert_eq!(month["overview"]["total_cost"], 1.5);
    assert_eq!(
        month["recent_transactions"][0]["request_id"], "old-0",
        "newest first"
    );
    assert_eq!(month["errors"]["details"][0]["request_id"], "old-1");
    let year = data("hours=8760".into()).await;
    assert_eq!(year["overview"]["total_requests"], 4);
    assert_eq!(year["data_coverage"]["partial"], true);
    let from = chrono::DateTime::from_timestamp_millis(now - 11 * day)
        .unwrap()
        .to_rfc3339();
    let to = chrono::DateTime::from_timestamp_millis(now - 9 * day)
        .unwrap()
        .to_rfc3339();
    let custom = data(format!(
        "start_date={}&end_date={}",
        from.replace('+', "%2B"),
        to.replace('+', "%2B")
    ))
    .await;
    assert_eq!(custom["overview"]["total_requests"], 2, "{custom}");
    h.stop().await;
}
