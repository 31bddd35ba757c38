//! Client keys over real HTTP: who may spend the provider keys. Unknown, missing and
//! foreign keys, allow lists, a client's own rpm, budgets checked before a costly call and
//! settled after it, spend surviving a restart, a reload changing keys, the access rule of
//! the status endpoints, and no client key in any output.

// Test helpers panic on unexpected results by design.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::TcpListener;

use bkvy::config::with_clients_str;
use bkvy::fake::{FakeOptions, FakeUpstream};
use bkvy::http::access::{AccessPolicy, IpList};
use common::*;
use serde_json::{json, Value};

const KEY_SEARCH: &str = "bkvy-test-client-key-search-0001";
const KEY_BATCH: &str = "bkvy-test-client-key-batch-00002";
const KEY_RICH: &str = "bkvy-test-client-key-rich-000003";
const KEY_TIGHT: &str = "bkvy-test-client-key-tight-00005";
const KEY_METERED: &str = "bkvy-test-client-key-metered-006";
const ADMIN_TOKEN: &str = "bkvy-test-admin-token-000000004";

/// SHA-256 of [`KEY_BATCH`], so that the file need not hold it.
fn batch_sha256() -> String {
    bkvy::config::clients::sha256(KEY_BATCH)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A pricey model beside the standard test config: $10 per 1,000 tokens in and out, so
/// that a budget of a few dollars is spent in a few calls.
const PRICEY: &str = r#"{
  "pricey": {
    "type": "openai",
    "keys": {"p1": {"api_key": "sk-pricey-provider-secret-0123", "rate_limits": {"pricey-model": {"rpm": 1000, "rpd": 100000}}}},
    "models": {"pricey-model": {"endpoint": "{FAKE}/v1/chat/completions", "cost_per_1k_input_tokens": 10.0, "cost_per_1k_output_tokens": 10.0, "cost_per_1k_tokens": 10.0, "intelligence_tier": "high", "avg_response_time_ms": 50}}
  },
"#;

fn providers() -> String {
    PROVIDERS.replacen('{', PRICEY, 1)
}

fn clients_json() -> String {
    json!({"clients": {
        "team-search": {"api_key": KEY_SEARCH,
                        "allow": ["low", "scenario:support", "openai/gpt-4o-mini"],
                        "rpm": 100},
        "tight": {"api_key": KEY_TIGHT, "rpm": 3},
        "batch-jobs": {"api_key_sha256": batch_sha256(), "allow": ["pricey/pricey-model"],
                       "daily_budget_usd": 2.0},
        "metered": {"api_key": KEY_METERED, "allow": ["pricey/pricey-model"],
                    "daily_budget_usd": 1000.0},
        "rich": {"api_key": KEY_RICH}
    }})
    .to_string()
}

fn config(fake: &FakeUpstream, clients: &str) -> bkvy::config::Config {
    let base = config_for(fake, &providers(), ROUTING);
    with_clients_str(Ok(base), clients, &env_lookup).unwrap()
}

fn start_keys(opts: GatewayOpts) -> Harness {
    let fake = FakeUpstream::start(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        FakeOptions::default(),
    )
    .unwrap();
    let config = config(&fake, &clients_json());
    start_gateway_full(fake, config, opts)
}

/// Sends `body` to `path` with `headers`; returns status, headers and the JSON body.
async fn call(
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> (u16, awc::http::header::HeaderMap, Value) {
    let c = client();
    let mut req = match body {
        Some(_) => c.post(url),
        None => c.get(url),
    };
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    let mut res = match body {
        Some(b) => req.send_json(b).await.unwrap(),
        None => req.send().await.unwrap(),
    };
    let status = res.status().as_u16();
    let bytes = res.body().limit(10 << 20).await.unwrap();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, res.headers().clone(), json)
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 20})
}

fn ask_plain(level: &str) -> Value {
    json!({"intelligence_level": level, "messages": [{"role": "user", "content": "hello"}]})
}

#[actix_web::test]
async fn a_missing_or_unknown_key_is_401_in_each_doors_shape_and_reaches_no_upstream() {
    let h = start_keys(GatewayOpts::default());
    let llm = format!("{}/llm/intelligence", h.url);
    let v1 = format!("{}/v1/chat/completions", h.url);

    let (s, hd, b) = call(&llm, &[], Some(&ask_plain("low"))).await;
    assert_eq!(s, 401, "{b}");
    assert_eq!(b["error_code"], "invalid_api_key", "{b}");
    assert_eq!(b["success"], false);
    assert_eq!(hd.get("www-authenticate").unwrap(), "Bearer");
    let wrong = bearer("bkvy-test-client-key-search-0002");
    let (s, _, b) = call(&llm, &[("authorization", &wrong)], Some(&ask_plain("low"))).await;
    assert_eq!(
        (s, b["error_code"].as_str()),
        (401, Some("invalid_api_key"))
    );
    // A scheme other than Bearer is no key.
    let basic = format!("Basic {KEY_SEARCH}");
    let (s, _, _) = call(&llm, &[("authorization", &basic)], Some(&ask_plain("low"))).await;
    assert_eq!(s, 401);

    let (s, _, b) = call(&v1, &[], Some(&chat("low"))).await;
    assert_eq!(s, 401, "{b}");
    assert_eq!(b["error"]["code"], "invalid_api_key", "{b}");
    assert_eq!(b["error"]["type"], "invalid_request_error", "{b}");
    let (s, _, b) = call(&format!("{}/v1/models", h.url), &[], None).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (401, Some("invalid_api_key"))
    );
    assert!(
        h.fake.requests().is_empty(),
        "a refused request reached a provider"
    );

    // The same key as Bearer and as x-api-key.
    let ok = bearer(KEY_SEARCH);
    let (s, _, b) = call(&llm, &[("authorization", &ok)], Some(&ask_plain("low"))).await;
    assert_eq!(s, 200, "{b}");
    let (s, _, b) = call(&v1, &[("x-api-key", KEY_SEARCH)], Some(&chat("low"))).await;
    assert_eq!(s, 200, "{b}");
    // A key given only by its SHA-256 works too.
    let (s, _, b) = call(
        &v1,
        &[("authorization", &bearer(KEY_BATCH))],
        Some(&chat("pricey/pricey-model")),
    )
    .await;
    assert_eq!(s, 200, "{b}");
}

#[actix_web::test]
async fn the_allow_list_and_the_body_client_id_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let h = start_keys(GatewayOpts {
        stats: stats_on(dir.path()),
        ..GatewayOpts::default()
    });
    let auth = bearer(KEY_SEARCH);
    let hdr = [("authorization", auth.as_str())];
    let llm = |p: &str| format!("{}/llm/{p}", h.url);
    let v1 = format!("{}/v1/chat/completions", h.url);

    let (s, _, b) = call(&llm("intelligence"), &hdr, Some(&ask_plain("low"))).await;
    assert_eq!(s, 200, "{b}");
    let (s, _, b) = call(&llm("intelligence"), &hdr, Some(&ask_plain("high"))).await;
    assert_eq!(
        (s, b["error_code"].as_str()),
        (403, Some("not_allowed")),
        "{b}"
    );
    assert!(b["error"].as_str().unwrap().contains("\"high\""), "{b}");
    let scenario = json!({"scenario": "support", "messages": [{"role": "user", "content": "x"}]});
    let (s, _, b) = call(&llm("scenario"), &hdr, Some(&scenario)).await;
    assert_eq!(s, 200, "{b}");
    let direct = |model: &str| json!({"provider": "openai", "model": model, "messages": [{"role": "user", "content": "x"}]});
    let (s, _, b) = call(&llm("direct"), &hdr, Some(&direct("gpt-4o-mini"))).await;
    assert_eq!(s, 200, "{b}");
    let before = h.fake.requests().len();
    let (s, _, b) = call(&llm("direct"), &hdr, Some(&direct("gpt-4o"))).await;
    assert_eq!(s, 403, "{b}");
    let (s, _, b) = call(&v1, &hdr, Some(&chat("high"))).await;
    assert_eq!(s, 403, "{b}");
    assert_eq!(b["error"]["type"], "permission_error", "{b}");
    assert_eq!(b["error"]["code"], "not_allowed", "{b}");
    assert_eq!(
        h.fake.requests().len(),
        before,
        "a refused target reached a provider"
    );

    // A body client_id naming another client is refused; its own name passes.
    let mut foreign = ask_plain("low");
    foreign["client_id"] = json!("rich");
    let (s, _, b) = call(&llm("intelligence"), &hdr, Some(&foreign)).await;
    assert_eq!(
        (s, b["error_code"].as_str()),
        (403, Some("not_allowed")),
        "{b}"
    );
    assert!(b["error"].as_str().unwrap().contains("client_id"), "{b}");
    foreign["client_id"] = json!("team-search");
    let (s, _, _) = call(&llm("intelligence"), &hdr, Some(&foreign)).await;
    assert_eq!(s, 200);

    // /v1/models lists what the key may ask for.
    let (s, _, b) = call(&format!("{}/v1/models", h.url), &hdr, None).await;
    assert_eq!(s, 200);
    let ids: Vec<&str> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["low", "scenario:support", "openai/gpt-4o-mini"]);

    // The statistics name the client, never its key.
    let _ = h.stop().await;
    let csv = std::fs::read_to_string(dir.path().join("transactions.csv")).unwrap();
    let mut rows = csv::Reader::from_reader(csv.as_bytes());
    let header = rows.headers().unwrap().clone();
    let col = header.iter().position(|c| c == "client_id").unwrap();
    let ids: Vec<String> = rows.records().map(|r| r.unwrap()[col].to_owned()).collect();
    assert!(ids.len() >= 8, "{csv}");
    assert!(ids.iter().all(|c| c == "team-search"), "{ids:?}");
    assert!(!csv.contains(KEY_SEARCH));
}

#[actix_web::test]
async fn a_clients_own_rpm_is_answered_429_with_retry_after() {
    let h = start_keys(GatewayOpts::default());
    let auth = bearer(KEY_TIGHT);
    let hdr = [("authorization", auth.as_str())];
    let llm = format!("{}/llm/intelligence", h.url);
    for _ in 0..3 {
        let (s, _, b) = call(&llm, &hdr, Some(&ask_plain("low"))).await;
        assert_eq!(s, 200, "{b}");
    }
    let before = h.fake.requests().len();
    let (s, hd, b) = call(&llm, &hdr, Some(&ask_plain("low"))).await;
    assert_eq!(
        (s, b["error_code"].as_str()),
        (429, Some("rate_limit_exceeded")),
        "{b}"
    );
    let retry: u64 = hd
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=61).contains(&retry), "{retry}");
    let (s, hd, b) = call(
        &format!("{}/v1/chat/completions", h.url),
        &hdr,
        Some(&chat("low")),
    )
    .await;
    assert_eq!(s, 429, "{b}");
    assert_eq!(b["error"]["code"], "rate_limit_exceeded", "{b}");
    assert!(hd.get("retry-after").is_some());
    assert_eq!(h.fake.requests().len(), before);
    // Another client is not limited by this one's rpm.
    let rich = bearer(KEY_RICH);
    let (s, _, _) = call(&llm, &[("authorization", &rich)], Some(&ask_plain("low"))).await;
    assert_eq!(s, 200);
}

async fn clients_status(h: &Harness) -> Value {
    let (s, _, b) = call(&format!("{}/clients/status", h.url), &[], None).await;
    assert_eq!(s, 200, "{b}");
    b
}

fn spent_today(status: &Value, client: &str) -> f64 {
    status["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client"] == client)
        .unwrap()["spent_today_usd"]
        .as_f64()
        .unwrap()
}

/// Calls the pricey model for batch-jobs until its budget refuses; returns the costs of
/// the answered calls and the refusal.
async fn spend_until_refused(h: &Harness, door_v1: bool) -> (Vec<f64>, Value) {
    let auth = bearer(KEY_BATCH);
    let mut costs = Vec::new();
    for _ in 0..50 {
        let (s, hd, b) = if door_v1 {
            call(
                &format!("{}/v1/chat/completions", h.url),
                &[("authorization", &auth)],
                Some(&chat("pricey/pricey-model")),
            )
            .await
        } else {
            let body = json!({"provider": "pricey", "model": "pricey-model",
                              "options": {"max_tokens": 20},
                              "messages": [{"role": "user", "content": "hello"}]});
            call(
                &format!("{}/llm/direct", h.url),
                &[("authorization", &auth)],
                Some(&body),
            )
            .await
        };
        if s != 200 {
            assert_eq!(s, 429, "{b}");
            return (costs, b);
        }
        let cost: f64 = hd
            .get("x-bkvy-cost-usd")
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(cost > 0.0);
        costs.push(cost);
    }
    panic!("the budget never refused: {costs:?}");
}

#[actix_web::test]
async fn a_budget_is_checked_before_a_costly_call_and_settled_with_its_real_cost() {
    let h = start_keys(GatewayOpts::default());
    let (costs, refusal) = spend_until_refused(&h, false).await;
    assert_eq!(refusal["error_code"], "insufficient_quota", "{refusal}");
    assert!(
        refusal["error"].as_str().unwrap().contains("daily budget"),
        "{refusal}"
    );
    let spent: f64 = costs.iter().sum();
    // Settled with the real costs: what the answers said they cost, to the cent's
    // fraction the header carries.
    let status = clients_status(&h).await;
    assert!(
        (spent_today(&status, "batch-jobs") - spent).abs() < 1e-6,
        "{status} vs {spent}"
    );
    assert!(spent <= 2.0, "spent {spent} over the 2.0 budget");
    // The refusal came before the budget was spent: the estimate (up to 20 output tokens
    // and the body's bytes as input tokens at $10 per 1,000) did not fit what was left.
    assert!(!costs.is_empty());
    let before = h.fake.requests().len();
    // On /v1 the refusal is OpenAI's insufficient_quota.
    // (Its smaller body makes a smaller estimate, which may still fit a call or two.)
    let (more, b) = spend_until_refused(&h, true).await;
    assert_eq!(b["error"]["code"], "insufficient_quota", "{b}");
    assert_eq!(b["error"]["type"], "insufficient_quota", "{b}");
    assert_eq!(
        h.fake.requests().len(),
        before + more.len(),
        "a refused call reached the provider"
    );
    let spent = spent + more.iter().sum::<f64>();
    let status = clients_status(&h).await;
    let batch = status["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client"] == "batch-jobs")
        .unwrap();
    assert_eq!(batch["reserved_usd"], 0.0, "{batch}");
    assert_eq!(batch["key_fingerprint"], json!(&batch_sha256()[..8]));
    // The metrics show spend and what is left of the budget.
    let (_, _, text) = get_text(&format!("{}/metrics", h.url), &[]).await;
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    let m_spent = line("bkvy_client_spend_usd{client=\"batch-jobs\",period=\"day\"}");
    assert!((m_spent - spent).abs() < 1e-6);
    let left = line("bkvy_client_budget_remaining_usd{client=\"batch-jobs\",period=\"day\"}");
    assert!((left - (2.0 - spent)).abs() < 1e-6);
}

#[actix_web::test]
async fn spend_survives_a_restart() {
    let state = tempfile::tempdir().unwrap();
    let opts = || GatewayOpts {
        state_dir: Some(state.path().to_path_buf()),
        ..GatewayOpts::default()
    };
    let h = start_keys(opts());
    let (costs, _) = spend_until_refused(&h, false).await;
    let spent: f64 = costs.iter().sum();
    let _ = h.stop().await;

    let h = start_keys(opts());
    let status = clients_status(&h).await;
    assert!(
        (spent_today(&status, "batch-jobs") - spent).abs() < 1e-6,
        "{status}"
    );
    // And the restarted gateway still refuses the next costly call.
    let (more, refusal) = spend_until_refused(&h, false).await;
    assert!(more.is_empty(), "{more:?}");
    assert_eq!(refusal["error_code"], "insufficient_quota");
    let saved = std::fs::read_to_string(state.path().join("clients/ledger.json")).unwrap();
    assert!(!saved.contains(KEY_BATCH) && !saved.contains(&batch_sha256()));
}

#[actix_web::test]
async fn a_reload_changes_the_keys_and_keeps_the_spend() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeUpstream::start(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        FakeOptions::default(),
    )
    .unwrap();
    let on_disk = providers_on_disk(&providers(), &fake);
    std::fs::write(dir.path().join("providers.json"), &on_disk).unwrap();
    std::fs::write(dir.path().join("routing.json"), ROUTING).unwrap();
    std::fs::write(dir.path().join("clients.json"), clients_json()).unwrap();
    let config = bkvy::config::load(dir.path()).unwrap();
    assert!(config.clients.is_some());
    let h = start_gateway_full(
        fake,
        config,
        GatewayOpts {
            config_dir: Some(dir.path().to_path_buf()),
            ..GatewayOpts::default()
        },
    );
    let llm = format!("{}/llm/intelligence", h.url);
    let old = bearer(KEY_RICH);
    let (s, _, _) = call(&llm, &[("authorization", &old)], Some(&ask_plain("low"))).await;
    assert_eq!(s, 200);
    let spent = spent_today(&clients_status(&h).await, "rich");
    assert!(spent > 0.0);

    // The rich client's key is replaced.
    let new_key = "bkvy-test-client-key-rich-rotated";
    let rotated = clients_json().replace(KEY_RICH, new_key);
    std::fs::write(dir.path().join("clients.json"), rotated).unwrap();
    let (s, b) = post(&format!("{}/admin/reload", h.url), &json!({})).await;
    assert_eq!(s, 200, "{b}");
    let (s, _, _) = call(&llm, &[("authorization", &old)], Some(&ask_plain("low"))).await;
    assert_eq!(s, 401, "the old key still works after the reload");
    let (s, _, _) = call(
        &llm,
        &[("authorization", &bearer(new_key))],
        Some(&ask_plain("low")),
    )
    .await;
    assert_eq!(s, 200);
    assert!(spent_today(&clients_status(&h).await, "rich") > spent);

    // An invalid clients.json is refused with its path, and the running keys stay.
    std::fs::write(
        dir.path().join("clients.json"),
        r#"{"clients": {"x": {"api_key": "short"}}}"#,
    )
    .unwrap();
    let (s, b) = post(&format!("{}/admin/reload", h.url), &json!({})).await;
    assert_eq!(s, 422, "{b}");
    assert!(b.to_string().contains("clients.clients.x.api_key"), "{b}");
    assert!(
        !b.to_string().contains("short"),
        "a key value was echoed: {b}"
    );
    let (s, _, _) = call(
        &llm,
        &[("authorization", &bearer(new_key))],
        Some(&ask_plain("low")),
    )
    .await;
    assert_eq!(s, 200);
}

#[actix_web::test]
async fn status_endpoints_follow_the_dashboard_rule_and_admin_needs_the_token() {
    // Loopback is not on this allow-list: only the admin token opens the status endpoints.
    let access = AccessPolicy {
        allowed: IpList::parse("10.9.9.9").unwrap(),
        admin_token: Some(bkvy::config::Secret::new(ADMIN_TOKEN)),
        ..AccessPolicy::default()
    };
    let h = start_keys(GatewayOpts {
        access: access.clone(),
        ..GatewayOpts::default()
    });
    let token = bearer(ADMIN_TOKEN);
    for path in [
        "/providers",
        "/rates/status",
        "/circuits/status",
        "/debug/config",
        "/statistics/summary",
        "/metrics",
        "/queue/status",
        "/clients/status",
    ] {
        let url = format!("{}{path}", h.url);
        let (s, _, _) = call(&url, &[], None).await;
        assert_eq!(s, 403, "{path} without the token");
        let (s, _, _) = call(
            &url,
            &[("authorization", "Bearer wrong-token-wrong-token")],
            None,
        )
        .await;
        assert_eq!(s, 403, "{path} with a wrong token");
        let (s, _, _) = call(&url, &[("authorization", &token)], None).await;
        assert_eq!(s, 200, "{path} with the token");
    }
    let (s, _, _) = call(&format!("{}/health", h.url), &[], None).await;
    assert_eq!(s, 200, "/health stays open");
    // A client key opens no status endpoint.
    let (s, _, _) = call(
        &format!("{}/providers", h.url),
        &[("authorization", &bearer(KEY_RICH))],
        None,
    )
    .await;
    assert_eq!(s, 403);
    // Admin endpoints need an allowed address besides the token.
    let (s, _, _) = call(
        &format!("{}/admin/reload", h.url),
        &[("authorization", &token)],
        Some(&json!({})),
    )
    .await;
    assert_eq!(s, 403);
    drop(h);

    // From an allowed address, the admin endpoints still need the token.
    let h = start_keys(GatewayOpts {
        access: AccessPolicy {
            admin_token: Some(bkvy::config::Secret::new(ADMIN_TOKEN)),
            ..AccessPolicy::default()
        },
        ..GatewayOpts::default()
    });
    let reset = format!("{}/circuits/reset/openai/gpt-4o/oa1", h.url);
    let (s, _, b) = call(&reset, &[], Some(&json!({}))).await;
    assert_eq!(s, 401, "{b}");
    let (s, _, b) = call(&reset, &[("authorization", &token)], Some(&json!({}))).await;
    assert_eq!(s, 200, "{b}");
    drop(h);

    // STATUS_ACCESS=open: everyone reads the status endpoints.
    let h = start_keys(GatewayOpts {
        access: AccessPolicy {
            status_open: true,
            ..access
        },
        ..GatewayOpts::default()
    });
    let (s, _, _) = call(&format!("{}/providers", h.url), &[], None).await;
    assert_eq!(s, 200);
}

#[actix_web::test]
async fn no_client_key_appears_in_any_output() {
    let dir = tempfile::tempdir().unwrap();
    let h = start_keys(GatewayOpts {
        stats: stats_on(dir.path()),
        dashboard: dashboard_on(Some(dir.path())),
        ..GatewayOpts::default()
    });
    let llm = format!("{}/llm/intelligence", h.url);
    for key in [KEY_SEARCH, KEY_RICH, "bkvy-test-unknown-key-000000000"] {
        let _ = call(
            &llm,
            &[("authorization", &bearer(key))],
            Some(&ask_plain("low")),
        )
        .await;
        let _ = call(&llm, &[("x-api-key", key)], Some(&ask_plain("high"))).await;
    }
    let mut seen = String::new();
    for path in [
        "/providers",
        "/rates/status",
        "/circuits/status",
        "/debug/config",
        "/statistics/summary",
        "/queue/status",
        "/clients/status",
        "/dashboard/data?hours=1",
        "/dashboard",
    ] {
        let (s, _, body) = get_text(&format!("{}{path}", h.url), &[]).await;
        assert_eq!(s, 200, "{path}");
        seen.push_str(&body);
    }
    let (_, _, metrics) = get_text(&format!("{}/metrics", h.url), &[]).await;
    seen.push_str(&metrics);
    assert!(seen.contains("team-search"), "the client names are shown");
    assert!(
        seen.contains("Client spend and budgets"),
        "the dashboard shows spend"
    );
    let _ = h.stop().await;
    for f in std::fs::read_dir(dir.path()).unwrap() {
        seen.push_str(&std::fs::read_to_string(f.unwrap().path()).unwrap_or_default());
    }
    for key in [
        KEY_SEARCH,
        KEY_RICH,
        KEY_BATCH,
        KEY_TIGHT,
        "bkvy-test-unknown-key",
    ] {
        assert!(!seen.contains(key), "{key} appears in an output");
    }
    assert!(
        !seen.contains(&batch_sha256()),
        "a full key hash appears in an output"
    );
}

/// What a call on the pricey model may cost at most: the body's bytes as input tokens
/// (one each) and `max_tokens` output tokens, at $10 per 1,000 each.
fn pricey_ceiling(body_bytes: usize, max_tokens: u32) -> f64 {
    ((body_bytes + 1) as f64 * 10.0 + f64::from(max_tokens) * 10.0) / 1000.0
}

/// Waits until `client`'s spend today is above zero (at most 5 s) and returns it.
async fn settled_spend(h: &Harness, client: &str) -> f64 {
    for _ in 0..100 {
        let spent = spent_today(&clients_status(h).await, client);
        if spent > 0.0 {
            return spent;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{client} was never charged");
}

/// Opens a raw connection to bkvy and sends `body` to `path` as `client`'s request.
async fn send_raw(
    h: &Harness,
    path: &str,
    key: &str,
    body: &[u8],
    reset_on_close: bool,
) -> actix_web::rt::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let addr: std::net::SocketAddr = h.url.trim_start_matches("http://").parse().unwrap();
    let std = std::net::TcpStream::connect(addr).unwrap();
    if reset_on_close {
        // Closing sends a reset, as a client that crashed or gave up does.
        socket2::SockRef::from(&std)
            .set_linger(Some(std::time::Duration::ZERO))
            .unwrap();
    }
    std.set_nonblocking(true).unwrap();
    let mut s = actix_web::rt::net::TcpStream::from_std(std).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    s
}

/// A streamed answer the client leaves after its first piece was generated and billed by
/// the provider: its usage never arrives, so the client is charged the answering model's
/// ceiling, never nothing.
#[actix_web::test]
async fn a_stream_left_mid_way_is_charged_the_answering_models_ceiling() {
    use tokio::io::AsyncReadExt;
    let h = start_keys(GatewayOpts::default());
    h.fake.script(
        "pricey-model",
        [bkvy::fake::Fault::Endless(
            std::time::Duration::from_millis(100),
        )],
    );
    let body = serde_json::to_vec(&json!({
        "provider": "pricey", "model": "pricey-model", "stream": true,
        "options": {"max_tokens": 20}, "messages": [{"role": "user", "content": "hello"}]}))
    .unwrap();
    let mut s = send_raw(&h, "/llm/direct", KEY_METERED, &body, true).await;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("data:") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before any content");
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"));
    drop(s);
    let spent = settled_spend(&h, "metered").await;
    let want = pricey_ceiling(body.len(), 20);
    assert!(
        (spent - want).abs() < 1e-9,
        "charged {spent}, ceiling {want}"
    );
    let batch = clients_status(&h).await["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client"] == "metered")
        .unwrap()
        .clone();
    assert_eq!(batch["reserved_usd"], 0.0, "{batch}");
}

/// A plain call whose client resets the connection while the provider works on it: the
/// request is still recorded (as a client disconnect) and charged its whole estimate,
/// since which attempts reached a provider is not known.
#[actix_web::test]
async fn a_call_whose_client_resets_the_connection_is_recorded_and_charged() {
    let h = start_keys(GatewayOpts::default());
    h.fake.script(
        "pricey-model",
        [bkvy::fake::Fault::Delay(std::time::Duration::from_secs(3))],
    );
    let body = serde_json::to_vec(&json!({
        "provider": "pricey", "model": "pricey-model",
        "options": {"max_tokens": 20}, "messages": [{"role": "user", "content": "hello"}]}))
    .unwrap();
    let s = send_raw(&h, "/llm/direct", KEY_METERED, &body, true).await;
    for _ in 0..100 {
        if !h.fake.requests().is_empty() {
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(h.fake.requests().len(), 1, "the call reached the provider");
    drop(s);
    let spent = settled_spend(&h, "metered").await;
    let want = pricey_ceiling(body.len(), 20);
    assert!(
        (spent - want).abs() < 1e-9,
        "charged {spent}, estimate {want}"
    );
    let mut disconnects = 0.0;
    for _ in 0..40 {
        let (_, _, text) = get_text(&format!("{}/metrics", h.url), &[]).await;
        disconnects = text
            .lines()
            .filter(|l| l.starts_with("bkvy_requests_total{"))
            .filter(|l| l.contains("outcome=\"client_disconnected\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
        if disconnects > 0.0 {
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        disconnects, 1.0,
        "the dropped request emitted its event once"
    );
}

/// With a budget, the estimate's output tokens go upstream as the call's `max_tokens`, so
/// the estimate is a ceiling; a client without a budget sends what it asked for.
#[actix_web::test]
async fn a_budget_caps_the_output_tokens_sent_upstream() {
    let h = start_keys(GatewayOpts::default());
    let v1 = format!("{}/v1/chat/completions", h.url);
    let ask = json!({"model": "pricey/pricey-model",
                     "messages": [{"role": "user", "content": "hello"}]});
    let max_tokens = |h: &Harness| {
        let r = h.fake.requests().pop().unwrap();
        r.body
            .get("max_tokens")
            .or_else(|| r.body.get("max_completion_tokens"))
            .cloned()
    };
    let (s, _, b) = call(&v1, &[("authorization", &bearer(KEY_METERED))], Some(&ask)).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(max_tokens(&h), Some(json!(4096)));
    let (s, _, b) = call(&v1, &[("authorization", &bearer(KEY_RICH))], Some(&ask)).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(max_tokens(&h), None, "no budget, no cap");
}

/// A request whose estimate alone is over the whole budget gets no `Retry-After`: no
/// retry of it ever passes; the message says what to change.
#[actix_web::test]
async fn an_estimate_over_the_whole_budget_gets_no_retry_after() {
    let h = start_keys(GatewayOpts::default());
    let body = json!({"provider": "pricey", "model": "pricey-model",
                      "options": {"max_tokens": 1_000_000},
                      "messages": [{"role": "user", "content": "hello"}]});
    let (s, hd, b) = call(
        &format!("{}/llm/direct", h.url),
        &[("authorization", &bearer(KEY_BATCH))],
        Some(&body),
    )
    .await;
    assert_eq!(s, 429, "{b}");
    assert_eq!(b["error_code"], "insufficient_quota", "{b}");
    assert!(hd.get("retry-after").is_none(), "{hd:?}");
    assert!(
        b["error"].as_str().unwrap().contains("lower max_tokens"),
        "{b}"
    );
    assert!(h.fake.requests().is_empty());
}
