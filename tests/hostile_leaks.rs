//! Nothing a provider quotes back leaks out: an upstream error message that quotes the
//! API key reaches no answer, status endpoint, dashboard or CSV row with the key in it,
//! and one that quotes the prompt is stored nowhere with the prompt in it (the caller may
//! get its own message back). A request body of the wrong shape is refused without
//! quoting the caller's text back.

// Test helpers panic on unexpected results by design.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use bkvy::fake::{FakeOptions, FakeUpstream, Fault};
use bkvy_actors::stats::Flush;
use common::*;
use serde_json::{json, Value};

/// Two keys long enough to be redacted.
const KEY_1: &str = "sk-leak-0123456789abcdef";
const KEY_2: &str = "sk-leak-fedcba9876543210";
/// A prompt a provider quotes back in its error message.
const PROMPT: &str = "my private prompt about the merger";

const LEAKY_PROVIDERS: &str = r#"{
  "openai": {
    "keys": {
      "k1": {"api_key": "sk-leak-0123456789abcdef", "rate_limits": {"gpt-4o-mini": {"rpm": 1000, "rpd": 100000}}},
      "k2": {"api_key": "sk-leak-fedcba9876543210", "rate_limits": {"gpt-4o-mini": {"rpm": 1000, "rpd": 100000}}}
    },
    "models": {
      "gpt-4o-mini": {"endpoint": "{FAKE}/v1/chat/completions", "cost_per_1k_tokens": 0.00015, "intelligence_tier": "low", "avg_response_time_ms": 200}
    }
  }
}"#;

/// One attempt per key, and circuits that stay closed, so every request reaches upstream.
const LEAKY_ROUTING: &str = r#"{
  "request_timeout_seconds": 20,
  "max_attempts_per_candidate": 1,
  "circuit_breaker": {"consecutive_failures": 1000, "window_failures": 1000},
  "scenarios": {}
}"#;

fn assert_no_key(what: &str, text: &str) {
    for key in [KEY_1, KEY_2] {
        assert!(!text.contains(key), "{what} carries the key {key}: {text}");
        // Nor the start of one, cut off by a length limit.
        assert!(
            !text.contains(&key[..12]),
            "{what} carries part of {key}: {text}"
        );
    }
}

fn assert_no_prompt(what: &str, text: &str) {
    assert!(
        !text.contains("private prompt"),
        "{what} carries the prompt: {text}"
    );
}

fn ask_low(debug: bool) -> Value {
    json!({
        "client_id": "leaks",
        "intelligence_level": "low",
        "max_wait_seconds": 30,
        "messages": [{"role": "user", "content": PROMPT}],
        "debug": debug,
    })
}

async fn text_of(url: &str) -> String {
    let (status, _, body) = get_text(url, &[]).await;
    assert_eq!(status, 200, "{url}: {body}");
    body
}

#[actix_web::test]
async fn an_upstream_error_quoting_the_key_or_the_prompt_leaks_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeUpstream::start(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        FakeOptions::default(),
    )
    .unwrap();
    let config = config_for(&fake, LEAKY_PROVIDERS, LEAKY_ROUTING);
    let h = start_gateway_full(
        fake,
        config,
        GatewayOpts {
            stats: stats_on(dir.path()),
            dashboard: dashboard_on(None),
            probes: bkvy::probes::ProbeOptions {
                enabled: true,
                interval: Duration::from_millis(100),
            },
            ..GatewayOpts::default()
        },
    );
    let model = "gpt-4o-mini";

    // A 5xx quoting the key, on /llm (plain and debug) and /v1: both keys are tried.
    for debug in [false, true] {
        h.fake
            .script(model, [Fault::Quoting(500), Fault::Quoting(500)]);
        let (status, body) = post(&format!("{}/llm/intelligence", h.url), &ask_low(debug)).await;
        assert_eq!(status, 502, "{body}");
        let text = body.to_string();
        assert_no_key("the /llm answer", &text);
        assert!(text.contains("[redacted]"), "{text}");
    }
    h.fake
        .script(model, [Fault::Quoting(500), Fault::Quoting(500)]);
    let (status, body) = post(
        &format!("{}/v1/chat/completions", h.url),
        &json!({"model": "low", "messages": [{"role": "user", "content": PROMPT}]}),
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert_no_key("the /v1 answer", &body.to_string());
    assert!(body.to_string().contains("[redacted]"), "{body}");

    // A 401 quoting the key takes both keys out of rotation with that message.
    h.fake
        .script(model, [Fault::Quoting(401), Fault::Quoting(401)]);
    let (_, body) = post(&format!("{}/llm/intelligence", h.url), &ask_low(true)).await;
    assert_no_key("the /llm answer to a 401", &body.to_string());
    // The next request finds both keys out of rotation.
    let (_, body) = post(&format!("{}/llm/intelligence", h.url), &ask_low(true)).await;
    let text = body.to_string();
    assert_no_key("the answer naming disabled keys", &text);
    assert_no_prompt("the answer naming disabled keys", &text);

    // The health probe's model-list call answered 401 quoting the key.
    h.fake.script("", (0..4).map(|_| Fault::Quoting(401)));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = text_of(&format!("{}/circuits/status", h.url)).await;
        assert_no_key("/circuits/status", &text);
        if text.contains("Incorrect API key") {
            break;
        }
        assert!(Instant::now() < deadline, "no probe error in {text}");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }

    for path in [
        "/providers",
        "/rates/status",
        "/intelligence/low",
        "/circuits/status",
        "/queue/status",
        "/dashboard/data?hours=1",
    ] {
        let text = text_of(&format!("{}{path}", h.url)).await;
        assert_no_key(path, &text);
        assert_no_prompt(path, &text);
    }
    let providers = text_of(&format!("{}/providers", h.url)).await;
    assert!(providers.contains("Incorrect API key"), "{providers}");
    let dashboard = dashboard_data_with(&h.url, 5).await.to_string();
    assert!(dashboard.contains("Incorrect API key"), "{dashboard}");

    h.state.sinks.flush();
    h.state.stats.send(Flush).await.unwrap().unwrap();
    let csv = std::fs::read_to_string(dir.path().join("transactions.csv")).unwrap();
    assert!(csv.contains("Incorrect API key"), "{csv}");
    assert_no_key("transactions.csv", &csv);
    assert_no_prompt("transactions.csv", &csv);
}

#[actix_web::test]
async fn the_caller_gets_its_own_quoted_message_back_but_no_key() {
    let fake = FakeUpstream::start(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        FakeOptions::default(),
    )
    .unwrap();
    let config = config_for(&fake, LEAKY_PROVIDERS, LEAKY_ROUTING);
    let h = start_gateway(fake, config);
    h.fake
        .script("gpt-4o-mini", [Fault::Quoting(500), Fault::Quoting(500)]);
    let (status, body) = post(&format!("{}/llm/intelligence", h.url), &ask_low(true)).await;
    assert_eq!(status, 502, "{body}");
    let text = body.to_string();
    assert!(text.contains("private prompt"), "{text}");
    assert_no_key("the answer", &text);
}

#[actix_web::test]
async fn a_body_of_the_wrong_shape_is_refused_without_quoting_the_callers_text() {
    let dir = tempfile::tempdir().unwrap();
    let h = start_with_stats(dir.path());
    let mut llm = ask("low", "hello");
    llm["max_wait_seconds"] = json!(PROMPT);
    let (status, body) = post(&format!("{}/llm/intelligence", h.url), &llm).await;
    assert_eq!(status, 422, "{body}");
    let text = body.to_string();
    assert_no_prompt("the /llm answer", &text);
    assert!(
        text.contains("max_wait_seconds: invalid type: string, expected"),
        "{text}"
    );

    let v1 = json!({"model": "low", "temperature": PROMPT,
                    "messages": [{"role": "user", "content": "hello"}]});
    let (status, body) = post(&format!("{}/v1/chat/completions", h.url), &v1).await;
    assert!(status == 400 || status == 422, "{status} {body}");
    let text = body.to_string();
    assert_no_prompt("the /v1 answer", &text);
    assert!(text.contains("temperature: invalid type: string"), "{text}");

    h.state.sinks.flush();
    h.state.stats.send(Flush).await.unwrap().unwrap();
    let csv = std::fs::read_to_string(dir.path().join("transactions.csv")).unwrap();
    assert!(csv.contains("max_wait_seconds"), "{csv}");
    assert_no_prompt("transactions.csv", &csv);
}

#[actix_web::test]
async fn a_reload_echoes_no_key_pasted_after_env_and_redacts_the_new_keys() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeUpstream::start(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        FakeOptions::default(),
    )
    .unwrap();
    let on_disk = LEAKY_PROVIDERS.replace("{FAKE}", &fake.url());
    std::fs::write(dir.path().join("providers.json"), &on_disk).unwrap();
    std::fs::write(dir.path().join("routing.json"), LEAKY_ROUTING).unwrap();
    let config = bkvy::config::load(dir.path()).unwrap();
    let h = start_gateway_full(
        fake,
        config,
        GatewayOpts {
            config_dir: Some(dir.path().to_path_buf()),
            ..GatewayOpts::default()
        },
    );
    let reload = || async { post(&format!("{}/admin/reload", h.url), &json!({})).await };

    // A key pasted after `env:` is refused without being shown.
    let pasted = "sk-pasted-after-env-0123456789";
    let bad = on_disk.replace(KEY_1, &format!("env:{pasted}"));
    std::fs::write(dir.path().join("providers.json"), bad).unwrap();
    let (status, body) = reload().await;
    assert_eq!(status, 422, "{body}");
    assert!(!body.to_string().contains(pasted), "{body}");
    assert!(!body.to_string().contains("sk-pasted"), "{body}");
    assert!(body.to_string().contains("api_key"), "{body}");

    // A new key from a reload is redacted as well.
    let new_key = "sk-leak-new-key-after-reload";
    let fresh = on_disk
        .replace(KEY_1, new_key)
        .replace(KEY_2, "sk-leak-second-new-key-0000");
    std::fs::write(dir.path().join("providers.json"), fresh).unwrap();
    let (status, body) = reload().await;
    assert_eq!(status, 200, "{body}");
    h.fake
        .script("gpt-4o-mini", [Fault::Quoting(500), Fault::Quoting(500)]);
    let (status, body) = post(&format!("{}/llm/intelligence", h.url), &ask_low(true)).await;
    assert_eq!(status, 502, "{body}");
    let text = body.to_string();
    assert!(text.contains("[redacted]"), "{text}");
    assert!(!text.contains("sk-leak-"), "{text}");
}

#[actix_web::test]
async fn a_request_an_upstream_refuses_itself_is_answered_400_without_trying_every_alternative() {
    let fake = FakeUpstream::start(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        FakeOptions::default(),
    )
    .unwrap();
    let config = config_for(&fake, LEAKY_PROVIDERS, LEAKY_ROUTING);
    let h = start_gateway(fake, config);
    let model = "gpt-4o-mini";

    for status in [400, 413, 422] {
        h.fake.clear();
        // One refusal: before, the other key was asked and answered.
        h.fake.script(model, [Fault::Quoting(status)]);
        let (got, body) = post(&format!("{}/llm/intelligence", h.url), &ask_low(true)).await;
        assert_eq!(got, 400, "{status}: {body}");
        assert_eq!(body["error_code"], "request_refused_upstream", "{body}");
        let text = body.to_string();
        assert!(text.contains(&format!("({status})")), "{text}");
        assert!(text.contains("[redacted]"), "{text}");
        assert_no_key("the answer", &text);
        assert_eq!(received(&h, model).len(), 1, "only one alternative asked");
    }

    // The OpenAI door answers in OpenAI's shape.
    h.fake.clear();
    h.fake.script(model, [Fault::Quoting(400)]);
    let (got, body) = post(
        &format!("{}/v1/chat/completions", h.url),
        &json!({"model": "low", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(got, 400, "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    assert_eq!(body["error"]["code"], "request_refused_upstream", "{body}");
    assert_eq!(received(&h, model).len(), 1, "only one alternative asked");
}

#[actix_web::test]
async fn a_request_refused_by_open_circuits_is_told_the_failure_that_opened_them() {
    let fake = FakeUpstream::start(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        FakeOptions::default(),
    )
    .unwrap();
    let routing = r#"{
      "request_timeout_seconds": 20,
      "max_attempts_per_candidate": 1,
      "circuit_breaker": {"consecutive_failures": 1, "base_backoff_seconds": 60},
      "scenarios": {}
    }"#;
    let config = config_for(&fake, LEAKY_PROVIDERS, routing);
    let h = start_gateway(fake, config);
    h.fake
        .script("gpt-4o-mini", [Fault::Quoting(500), Fault::Quoting(500)]);
    let (status, body) = post(&format!("{}/llm/intelligence", h.url), &ask_low(true)).await;
    assert_eq!(status, 502, "{body}");

    // Both circuits are open now: nothing is called, and the answer says why they opened.
    let (status, body) = post(&format!("{}/llm/intelligence", h.url), &ask_low(true)).await;
    assert_eq!(status, 503, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    let real = "upstream server error (500): Incorrect API key provided: [redacted]";
    assert!(message.contains(real), "{body}");
    for c in body["evaluated_combinations"].as_array().unwrap() {
        let reason = c["reason_not_chosen"].as_str().unwrap_or_default();
        assert!(
            reason.contains("circuit open") && reason.contains(real),
            "{body}"
        );
    }
    // The OpenAI door says the same.
    let (status, body) = post(
        &format!("{}/v1/chat/completions", h.url),
        &json!({"model": "low", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains(real),
        "{body}"
    );
    assert_no_key("the answer", &body.to_string());
    // The failure was another request's: what the upstream quoted of it is not shown.
    assert_no_prompt("the answer", &body.to_string());
    assert_eq!(
        received(&h, "gpt-4o-mini").len(),
        2,
        "nothing called the second time"
    );
}

/// The log is an output too: the `bkvy` binary itself, at `debug` level with the access
/// log on, is sent upstream errors quoting the key and the prompt (5xx, 401, on a plain
/// and a streamed request), and nothing it writes to its log holds either.
#[actix_web::test]
async fn nothing_a_provider_quotes_reaches_the_log() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeUpstream::start(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        FakeOptions::default(),
    )
    .unwrap();
    let config_dir = dir.path().join("config");
    std::fs::create_dir(&config_dir).unwrap();
    std::fs::write(
        config_dir.join("providers.json"),
        providers_on_disk(LEAKY_PROVIDERS, &fake),
    )
    .unwrap();
    std::fs::write(config_dir.join("routing.json"), LEAKY_ROUTING).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_bkvy"))
        .arg("serve")
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .env("LOG_LEVEL", "debug")
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("STATE_DIR", dir.path().join("state"))
        .env("LOG_DIR", dir.path().join("logs"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while client().get(format!("{url}/health")).send().await.is_err() {
        assert!(Instant::now() < deadline, "bkvy did not start");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    let model = "gpt-4o-mini";
    fake.script(model, [Fault::Quoting(500), Fault::Quoting(500)]);
    let (status, _) = post(&format!("{url}/llm/intelligence"), &ask_low(true)).await;
    assert_eq!(status, 502);
    fake.script(model, [Fault::Quoting(500), Fault::Quoting(500)]);
    let mut stream = ask_low(false);
    stream["stream"] = json!(true);
    let (status, _, _) = post_raw(
        &format!("{url}/llm/intelligence"),
        serde_json::to_vec(&stream).unwrap(),
    )
    .await;
    assert_eq!(status, 502);
    fake.script(model, [Fault::Quoting(401), Fault::Quoting(401)]);
    let _ = post(&format!("{url}/llm/intelligence"), &ask_low(true)).await;
    let _ = post(&format!("{url}/llm/intelligence"), &ask_low(true)).await;
    assert!(
        fake.requests().len() >= 6,
        "the quoting errors were sent: {}",
        fake.requests().len()
    );
    // Stop it the way an operator does, so that everything it had to say is written.
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(log.contains("upstream"), "a log at debug level: {log}");
    assert!(
        log.contains("[redacted]"),
        "the quoted key was redacted: {log}"
    );
    assert_no_key("the log", &log);
    assert_no_prompt("the log", &log);
}
