//! Circuit breaking and access control end to end.

// Test helpers panic on unexpected input by design.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bkvy::fake::{FakeOptions, FakeUpstream, Fault};
use bkvy::http::access::{AccessPolicy, IpList};
use common::*;
use serde_json::json;

const FAST_CIRCUIT_ROUTING: &str = r#"{
  "request_timeout_seconds": 20,
  "max_attempts_per_candidate": 1,
  "circuit_breaker": {"consecutive_failures": 2, "base_backoff_seconds": 1, "max_backoff_seconds": 4},
  "scenarios": {"support": [{"provider": "anthropic", "model": "claude-haiku", "priority": 1}]}
}"#;

fn start_fast() -> Harness {
    start_with(PROVIDERS, FAST_CIRCUIT_ROUTING, FakeOptions::default())
}

fn server_error() -> Fault {
    Fault::Status {
        status: 500,
        retry_after: None,
        headers: Vec::new(),
    }
}

#[actix_web::test]
async fn a_failing_pair_is_skipped_while_open_and_returns_after_a_successful_trial() {
    let h = start_fast();
    h.fake
        .script("gemini-2.5-flash", [server_error(), server_error()]);
    let url = format!("{}/llm/intelligence", h.url);
    for _ in 0..2 {
        let (s, b) = post(&url, &ask("low", "x")).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["model_used"], "gpt-4o-mini", "failed over");
    }
    // Open now: skipped without a call, with the reason and the time it may return.
    let (_, b) = post(&url, &ask("low", "x")).await;
    assert_eq!(b["model_used"], "gpt-4o-mini");
    let flash = b["metadata"]["alternatives_considered"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["model"] == "gemini-2.5-flash")
        .cloned()
        .unwrap();
    assert!(
        flash["reason_not_chosen"]
            .as_str()
            .unwrap()
            .contains("circuit open"),
        "{flash}"
    );
    assert!(flash["available_in_ms"].as_i64().unwrap() > 0);
    assert_eq!(flash["fallback_rank"], json!(null));
    assert_eq!(received(&h, "gemini-2.5-flash").len(), 2);
    let (_, circuits) = get(&format!("{}/circuits/status", h.url)).await;
    let c = &circuits["circuits"]["gemini_gemini-2.5-flash_ge1"];
    assert_eq!(c["state"], "open", "{c}");
    assert_eq!(c["last_failure_type"], "server_error");
    assert_eq!(circuits["open_circuits"], 1);
    // After the backoff (1 s + jitter) one trial goes through, succeeds and closes it.
    actix_web::rt::time::sleep(Duration::from_millis(1_400)).await;
    let (_, b) = post(&url, &ask("low", "x")).await;
    assert_eq!(b["model_used"], "gemini-2.5-flash");
    let (_, circuits) = get(&format!("{}/circuits/status", h.url)).await;
    assert_eq!(
        circuits["circuits"]["gemini_gemini-2.5-flash_ge1"]["state"],
        "closed"
    );
}

#[actix_web::test]
async fn when_every_candidate_is_open_the_answer_is_an_immediate_503_with_retry_after() {
    let h = start_fast();
    h.fake
        .script("claude-haiku", [server_error(), server_error()]);
    let url = format!("{}/llm/scenario", h.url);
    let body = json!({"scenario": "support", "messages": [{"role": "user", "content": "x"}]});
    for _ in 0..2 {
        let (s, b) = post(&url, &body).await;
        assert_eq!(s, 502, "{b}");
    }
    let started = std::time::Instant::now();
    let mut res = client().post(&url).send_json(&body).await.unwrap();
    assert_eq!(res.status().as_u16(), 503);
    let retry_after: u64 = res
        .headers()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let b: serde_json::Value = res.json().await.unwrap();
    assert_eq!(b["error_code"], "all_candidates_unavailable");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "no waiting on a dead upstream"
    );
    assert_eq!(received(&h, "claude-haiku").len(), 2);

    // A manual reset puts it back at once.
    let (s, _) = post(
        &format!("{}/circuits/reset/anthropic/claude-haiku/an1", h.url),
        &json!({}),
    )
    .await;
    assert_eq!(s, 200);
    actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    let (s, b) = post(&url, &body).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = post(
        &format!("{}/circuits/reset/anthropic/claude-haiku/nope", h.url),
        &json!({}),
    )
    .await;
    assert_eq!(s, 404, "{b}");
    assert_eq!(b["error_code"], "circuit_not_found");
}

#[actix_web::test]
async fn admin_endpoints_refuse_addresses_that_are_not_allowed() {
    let fake = FakeUpstream::start(
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        FakeOptions::default(),
    )
    .unwrap();
    let config = config_for(&fake, PROVIDERS, ROUTING);
    let policy = AccessPolicy {
        allowed: IpList::parse("10.1.2.3").unwrap(),
        trusted_proxies: IpList::default(),
        ..AccessPolicy::default()
    };
    let h = start_gateway_with(fake, config, policy);
    let reset = format!("{}/circuits/reset/openai/gpt-4o/oa1", h.url);
    let (s, b) = post(&reset, &json!({})).await;
    assert_eq!(s, 403, "{b}");
    assert_eq!(b["error_code"], "access_denied");
    // A spoofed X-Forwarded-For from an untrusted peer changes nothing.
    let mut res = client()
        .post(&reset)
        .insert_header(("x-forwarded-for", "10.1.2.3"))
        .send_json(&json!({}))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 403);
    let _ = res.body().await;
    // The status endpoints follow the same rule (STATUS_ACCESS=protected); /health is open.
    let (s, _) = get(&format!("{}/circuits/status", h.url)).await;
    assert_eq!(s, 403);
    let (s, _) = get(&format!("{}/health", h.url)).await;
    assert_eq!(s, 200);
}

#[actix_web::test]
async fn rate_limit_usage_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!("bkvy-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let providers = PROVIDERS.replace(
        r#""gpt-4o": {"rpm": 100, "rpd": 10000}}"#,
        r#""gpt-4o": {"rpm": 3, "rpd": 10000}}"#,
    );
    let fake = FakeUpstream::start(
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        FakeOptions::default(),
    )
    .unwrap();
    let config = config_for(&fake, &providers, ROUTING);
    let h = start_gateway_full(
        fake,
        config.clone(),
        GatewayOpts {
            state_dir: Some(dir.clone()),
            ..GatewayOpts::default()
        },
    );
    let body = json!({"provider": "openai", "model": "gpt-4o", "api_key_id": "oa1",
                      "timeout_seconds": 2, "messages": [{"role": "user", "content": "x"}]});
    let url = format!("{}/llm/direct", h.url);
    for _ in 0..2 {
        let (s, b) = post(&url, &body).await;
        assert_eq!(s, 200, "{b}");
    }
    let fake = h.stop().await;
    assert!(
        std::fs::read_dir(&dir).unwrap().count() > 0,
        "state files written"
    );

    // A new process on the same state: only one call is left in this minute.
    let h = start_gateway_full(
        fake,
        config,
        GatewayOpts {
            state_dir: Some(dir.clone()),
            ..GatewayOpts::default()
        },
    );
    let url = format!("{}/llm/direct", h.url);
    let (s, b) = post(&url, &body).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = post(&url, &body).await;
    assert_eq!(s, 503, "the restored window is full: {b}");
    let (_, rates) = get(&format!("{}/rates/status", h.url)).await;
    assert_eq!(
        rates["rate_limit_states"]["openai_oa1_gpt-4o"]["requests_this_minute"],
        3
    );
    assert_eq!(
        rates["rate_limit_states"]["openai_oa1_gpt-4o"]["requests_today"],
        3
    );
    assert_eq!(
        received(&h, "gpt-4o").len(),
        3,
        "never more than rpm upstream"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_web::test]
async fn a_corrupt_state_file_is_ignored_for_its_pair_only() {
    let dir = std::env::temp_dir().join(format!("bkvy-corrupt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("openai__oa1__gpt-4o.json"), b"{\"id\": garbage").unwrap();
    let fake = FakeUpstream::start(
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        FakeOptions::default(),
    )
    .unwrap();
    let config = config_for(&fake, PROVIDERS, ROUTING);
    let h = start_gateway_full(
        fake,
        config,
        GatewayOpts {
            state_dir: Some(dir.clone()),
            ..GatewayOpts::default()
        },
    );
    let (s, _) = post(&format!("{}/llm/intelligence", h.url), &ask("low", "x")).await;
    assert_eq!(s, 200, "the process starts and serves");
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_web::test]
async fn shutdown_lets_in_flight_requests_finish_answers_queued_ones_and_keeps_every_row() {
    let dir = std::env::temp_dir().join(format!("bkvy-shutdown-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let providers = PROVIDERS.replacen(
        r#""gpt-4o": {"rpm": 100, "rpd": 10000}}"#,
        r#""gpt-4o": {"rpm": 100, "rpd": 10000, "max_concurrent": 1}}"#,
        1,
    );
    let h = start_with_stats_opts(&providers, FakeOptions::default(), stats_on(&dir));
    h.fake
        .script("gpt-4o", [Fault::Delay(Duration::from_millis(1_500))]);
    let url = format!("{}/llm/direct", h.url);
    let body = json!({"provider": "openai", "model": "gpt-4o", "api_key_id": "oa1",
                      "messages": [{"role": "user", "content": "x"}]});
    let in_flight = actix_web::rt::spawn({
        let (url, body) = (url.clone(), body.clone());
        async move { post(&url, &body).await }
    });
    actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    let queued = actix_web::rt::spawn({
        let (url, body) = (url.clone(), body.clone());
        async move {
            let started = std::time::Instant::now();
            (post(&url, &body).await, started.elapsed())
        }
    });
    actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    let (_, q) = get(&format!("{}/queue/status", h.url)).await;
    assert_eq!(
        q["queue_states"]["openai_oa1_gpt-4o"]["current_queue_length"],
        1
    );

    // SIGTERM, as the binary handles it.
    let mut h = h;
    let stopping = h.begin_stop();

    let ((status, b), waited) = queued.await.unwrap();
    assert_eq!(status, 503, "queued request answered at once: {b}");
    assert!(waited < Duration::from_millis(1_200), "{waited:?}");
    let (status, b) = in_flight.await.unwrap();
    assert_eq!(status, 200, "in-flight request completed: {b}");
    let stopped = stopping.await.unwrap().unwrap();
    assert!(stopped.stats_flushed);
    let csv = std::fs::read_to_string(dir.join("transactions.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "header + both requests:\n{csv}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A gateway whose config lives in `dir` (written from the standard test config, with
/// literal keys so that a reload, which reads the process environment, needs no
/// variables), in front of a fake with `fake_opts`. Returns the providers.json written.
fn reloadable(dir: &std::path::Path, fake_opts: FakeOptions) -> (Harness, String) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let fake = FakeUpstream::start(
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        fake_opts,
    )
    .unwrap();
    let on_disk = providers_on_disk(PROVIDERS, &fake);
    std::fs::write(dir.join("providers.json"), &on_disk).unwrap();
    std::fs::write(dir.join("routing.json"), ROUTING).unwrap();
    let config = bkvy::config::load(dir).unwrap();
    let h = start_gateway_full(
        fake,
        config,
        GatewayOpts {
            config_dir: Some(dir.to_path_buf()),
            ..GatewayOpts::default()
        },
    );
    (h, on_disk)
}

#[actix_web::test]
async fn a_reload_applies_a_valid_config_keeps_state_and_rejects_an_invalid_one() {
    let dir = std::env::temp_dir().join(format!("bkvy-reload-{}", std::process::id()));
    let (h, on_disk) = reloadable(&dir, FakeOptions::default());
    let (s, _) = post(&format!("{}/llm/intelligence", h.url), &ask("low", "x")).await;
    assert_eq!(s, 200);

    // A valid change: a new scenario and a lower rpm for the pair just used.
    std::fs::write(
        dir.join("providers.json"),
        on_disk.replacen(
            r#""gemini-2.5-flash": {"rpm": 100"#,
            r#""gemini-2.5-flash": {"rpm": 7"#,
            1,
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("routing.json"),
        ROUTING.replace(
            r#""scenarios": {"#,
            r#""scenarios": {"fresh": [{"provider": "openai", "model": "gpt-4o", "priority": 1}],"#,
        ),
    )
    .unwrap();
    let (s, b) = post(&format!("{}/admin/reload", h.url), &json!({})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["removed"], 0);
    let (_, scen) = get(&format!("{}/scenarios", h.url)).await;
    assert!(scen["scenarios"]["fresh"].is_array());
    let (s, b) = post(
        &format!("{}/llm/scenario", h.url),
        &json!({"scenario": "fresh", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (_, rates) = get(&format!("{}/rates/status", h.url)).await;
    let flash = &rates["rate_limit_states"]["gemini_ge1_gemini-2.5-flash"];
    assert_eq!(flash["rpm_limit"], 7, "new limit applied");
    assert_eq!(
        flash["requests_this_minute"], 1,
        "count kept across the reload"
    );

    // An invalid change is rejected with every problem; the running config stays.
    std::fs::write(
        dir.join("routing.json"),
        r#"{"scenarios": {"bad": []}, "nope": 1}"#,
    )
    .unwrap();
    let (s, b) = post(&format!("{}/admin/reload", h.url), &json!({})).await;
    assert_eq!(s, 422, "{b}");
    assert_eq!(b["error_code"], "invalid_config");
    assert_eq!(b["problems"].as_array().unwrap().len(), 2, "{b}");
    let (s, _) = post(
        &format!("{}/llm/scenario", h.url),
        &json!({"scenario": "fresh", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(s, 200, "old config still serving");
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_web::test]
async fn a_full_queue_answers_503_with_retry_after() {
    let providers = PROVIDERS.replacen(
        r#""gpt-4o": {"rpm": 100, "rpd": 10000}}"#,
        r#""gpt-4o": {"rpm": 100, "rpd": 10000, "max_concurrent": 1}}"#,
        1,
    );
    let routing = ROUTING.replace(
        r#""max_attempts_per_candidate": 2,"#,
        r#""max_attempts_per_candidate": 2, "max_queue": 1,"#,
    );
    let h = start_with(&providers, &routing, FakeOptions::default());
    h.fake
        .script("gpt-4o", [Fault::Delay(Duration::from_millis(1_500))]);
    let url = format!("{}/llm/direct", h.url);
    let body = json!({"provider": "openai", "model": "gpt-4o", "api_key_id": "oa1",
                      "messages": [{"role": "user", "content": "x"}]});
    let first = actix_web::rt::spawn({
        let (url, body) = (url.clone(), body.clone());
        async move { post(&url, &body).await }
    });
    actix_web::rt::time::sleep(Duration::from_millis(150)).await;
    let second = actix_web::rt::spawn({
        let (url, body) = (url.clone(), body.clone());
        async move { post(&url, &body).await }
    });
    actix_web::rt::time::sleep(Duration::from_millis(150)).await;
    let mut res = client().post(&url).send_json(&body).await.unwrap();
    assert_eq!(res.status().as_u16(), 503, "the queue of one is taken");
    assert!(res.headers().get("retry-after").is_some());
    let b: serde_json::Value = res.json().await.unwrap();
    assert_eq!(b["error_code"], "all_candidates_unavailable", "{b}");
    assert_eq!(first.await.unwrap().0, 200);
    assert_eq!(second.await.unwrap().0, 200);
}

#[actix_web::test]
async fn health_probes_use_the_free_model_list_and_are_shown_per_key_model() {
    let fake = FakeUpstream::start(
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        FakeOptions::default(),
    )
    .unwrap();
    let config = config_for(&fake, PROVIDERS, ROUTING);
    let h = start_gateway_full(
        fake,
        config,
        GatewayOpts {
            probes: bkvy::probes::ProbeOptions {
                enabled: true,
                interval: Duration::from_millis(200),
            },
            ..GatewayOpts::default()
        },
    );
    actix_web::rt::time::sleep(Duration::from_millis(600)).await;
    let (_, circuits) = get(&format!("{}/circuits/status", h.url)).await;
    let all = circuits["circuits"].as_object().unwrap();
    for (name, c) in all {
        let probe = &c["health_probe"];
        if name.starts_with("deadai") {
            assert_eq!(probe["ok"], false, "{name}: {probe}");
            assert!(
                probe["error"].as_str().unwrap().contains("connection"),
                "{probe}"
            );
        } else {
            assert_eq!(probe["ok"], true, "{name}: {probe}");
        }
    }
    let sent = h.fake.requests();
    assert!(!sent.is_empty());
    assert!(
        sent.iter().all(|r| r.api == bkvy::fake::FakeApi::ModelList),
        "probes never make a paid call"
    );
    let gemini = sent
        .iter()
        .find(|r| r.path.starts_with("/v1beta/models"))
        .unwrap();
    assert_eq!(
        gemini.credential.as_deref(),
        Some(secret("TEST_GEMINI_KEY_1"))
    );
    assert!(!gemini.query.contains("key="));
}

/// A request works on the config snapshot it started with: a reload that removes the
/// model it would fail over to, while its first candidate is still being tried, does not
/// make it skip that model.
#[actix_web::test]
async fn a_request_keeps_its_snapshot_across_a_reload() {
    let dir = std::env::temp_dir().join(format!("bkvy-snapshot-{}", std::process::id()));
    // The cheapest low model fails slowly, twice: the request is still on it when the
    // reload lands.
    let slow_failure = FakeOptions {
        per_model: vec![bkvy::fake::FakeModelOptions {
            model: "gemini-2.5-flash".into(),
            latency: Duration::from_millis(700),
            latency_jitter: Duration::ZERO,
            fail_rate: 1.0,
            fail_status: 500,
        }],
        ..FakeOptions::default()
    };
    let (h, on_disk) = reloadable(&dir, slow_failure);
    // The same config without gpt-4o-mini (the next cheapest low model).
    let mut without: serde_json::Value = serde_json::from_str(&on_disk).unwrap();
    for key in ["oa1", "oa2"] {
        without["openai"]["keys"][key]["rate_limits"]
            .as_object_mut()
            .unwrap()
            .remove("gpt-4o-mini");
    }
    without["openai"]["models"]
        .as_object_mut()
        .unwrap()
        .remove("gpt-4o-mini");
    let url = h.url.clone();
    let request = actix_web::rt::spawn(async move {
        post(&format!("{url}/llm/intelligence"), &ask("low", "snapshot")).await
    });
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(dir.join("providers.json"), without.to_string()).unwrap();
    let (s, b) = post(&format!("{}/admin/reload", h.url), &json!({})).await;
    assert_eq!(s, 200, "{b}");
    let (s, body) = request.await.unwrap();
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        body["model_used"], "gpt-4o-mini",
        "the request planned on the old config fails over as planned: {body}"
    );
    // A request that starts now no longer sees the removed model.
    let (_, later) = post(&format!("{}/llm/intelligence", h.url), &ask("low", "after")).await;
    assert_eq!(later["model_used"], "claude-haiku", "{later}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A key out of rotation after a 401 stays out through a reload that keeps its value (the
/// same value would fail again), and comes back when the reload gives it a new one.
#[actix_web::test]
async fn a_reload_re_enables_a_key_that_failed_authentication_only_when_its_value_changed() {
    let dir = std::env::temp_dir().join(format!("bkvy-reenable-{}", std::process::id()));
    let (h, on_disk) = reloadable(&dir, FakeOptions::default());
    h.fake.script("claude-haiku", [Fault::status(401)]);
    let direct = json!({"provider": "anthropic", "model": "claude-haiku", "max_wait_seconds": 5,
                        "messages": [{"role": "user", "content": "x"}]});
    let url = format!("{}/llm/direct", h.url);
    let (s, b) = post(&url, &direct).await;
    assert_ne!(s, 200, "{b}");
    let disabled = || async {
        let (_, rates) = get(&format!("{}/rates/status", h.url)).await;
        rates["rate_limit_states"]["anthropic_an1_claude-haiku"]["disabled"].is_string()
    };
    actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    assert!(disabled().await);

    // The same config again: the key stays out.
    let (s, b) = post(&format!("{}/admin/reload", h.url), &json!({})).await;
    assert_eq!(s, 200, "{b}");
    actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    assert!(
        disabled().await,
        "a reload with the same key value re-enabled it"
    );
    let (s, _) = post(&url, &direct).await;
    assert_ne!(s, 200);

    // A new value: back in rotation.
    std::fs::write(
        dir.join("providers.json"),
        on_disk.replace("sk-ant-test-secret-1", "sk-ant-test-secret-rotated"),
    )
    .unwrap();
    let (s, b) = post(&format!("{}/admin/reload", h.url), &json!({})).await;
    assert_eq!(s, 200, "{b}");
    actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    assert!(!disabled().await);
    let (s, b) = post(&url, &direct).await;
    assert_eq!(s, 200, "{b}");
    let _ = std::fs::remove_dir_all(&dir);
}
