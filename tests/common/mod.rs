//! Test harness: a fake upstream and a bkvy gateway, each on an ephemeral loopback port,
//! talking real HTTP.

#![allow(dead_code)]
// A test harness: a failed set-up step should panic with the error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use bkvy::config::load_from_strs;
use bkvy::fake::{FakeOptions, FakeUpstream, RecordedRequest};
use bkvy::http::HttpLimits;
use bkvy::server::{self, DashboardOptions, ServerOptions, StatsOptions};
use bkvy_actors::SystemClock;
use serde_json::Value;

/// Secrets used by the test config; no response may ever contain one.
pub const SECRETS: &[(&str, &str)] = &[
    ("TEST_OPENAI_KEY_1", "sk-test-openai-secret-1"),
    ("TEST_OPENAI_KEY_2", "sk-test-openai-secret-2"),
    ("TEST_ANTHROPIC_KEY_1", "sk-ant-test-secret-1"),
    ("TEST_GEMINI_KEY_1", "gemini-test-secret-1"),
];

pub fn secret(name: &str) -> &'static str {
    SECRETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .unwrap_or_default()
}

/// The standard test providers.json; `{FAKE}` becomes the fake's URL and `{DEAD}` a port
/// nothing listens on.
pub const PROVIDERS: &str = r#"{
  "openai": {
    "keys": {
      "oa1": {"api_key": "env:TEST_OPENAI_KEY_1", "rate_limits": {"gpt-4o-mini": {"rpm": 100, "rpd": 10000}, "gpt-4o": {"rpm": 100, "rpd": 10000}}},
      "oa2": {"api_key": "env:TEST_OPENAI_KEY_2", "rate_limits": {"gpt-4o-mini": {"rpm": 100, "rpd": 10000}, "gpt-4o": {"rpm": 100, "rpd": 10000}}}
    },
    "models": {
      "gpt-4o-mini": {"endpoint": "{FAKE}/v1/chat/completions", "cost_per_1k_input_tokens": 0.00015, "cost_per_1k_output_tokens": 0.0006, "cost_per_1k_tokens": 0.00015, "intelligence_tier": "low", "avg_response_time_ms": 200},
      "gpt-4o": {"endpoint": "{FAKE}/v1/chat/completions", "cost_per_1k_tokens": 0.0025, "intelligence_tier": "high", "avg_response_time_ms": 400}
    }
  },
  "anthropic": {
    "keys": {
      "an1": {"api_key": "env:TEST_ANTHROPIC_KEY_1", "rate_limits": {"claude-haiku": {"rpm": 100, "rpd": 10000}, "claude-sonnet": {"rpm": 100, "rpd": 10000}}}
    },
    "models": {
      "claude-haiku": {"endpoint": "{FAKE}/v1/messages", "cost_per_1k_tokens": 0.00025, "intelligence_tier": "low", "avg_response_time_ms": 200, "version": "2023-06-01"},
      "claude-sonnet": {"endpoint": "{FAKE}/v1/messages", "cost_per_1k_tokens": 0.003, "intelligence_tier": "medium", "supports_thinking": true, "avg_response_time_ms": 300}
    }
  },
  "gemini": {
    "timeout_seconds": 1,
    "keys": {
      "ge1": {"api_key": "env:TEST_GEMINI_KEY_1", "rate_limits": {"gemini-2.5-flash": {"rpm": 100, "rpd": 10000}, "gemini-2.5-pro": {"rpm": 100, "rpd": 10000}}}
    },
    "models": {
      "gemini-2.5-flash": {"endpoint": "{FAKE}/v1beta/models/gemini-2.5-flash:generateContent", "cost_per_1k_tokens": 0.0001, "intelligence_tier": "low", "supports_thinking": true, "avg_response_time_ms": 200},
      "gemini-2.5-pro": {"endpoint": "{FAKE}/v1beta/models/gemini-2.5-pro:generateContent", "cost_per_1k_tokens": 0.00125, "intelligence_tier": "high", "supports_thinking": true, "avg_response_time_ms": 500}
    }
  },
  "ollama": {
    "keys": {"local": {"api_key": "none_required", "rate_limits": {"llama3.2:3b": {"rpm": 100, "rpd": 10000}}}},
    "models": {"llama3.2:3b": {"endpoint": "{FAKE}/api/chat", "cost_per_1k_tokens": 0.0, "intelligence_tier": "medium", "supports_thinking": true, "avg_response_time_ms": 300}}
  },
  "vllm": {
    "type": "openai_compatible",
    "keys": {"local": {"rate_limits": {"qwen3": {"rpm": 100, "rpd": 10000}}}},
    "models": {"qwen3": {"endpoint": "{FAKE}/keyless/v1/chat/completions", "cost_per_1k_tokens": 0.00001, "intelligence_tier": "medium", "supports_thinking": true, "avg_response_time_ms": 300}}
  },
  "deadai": {
    "type": "openai",
    "keys": {"d1": {"api_key": "sk-dead-literal", "rate_limits": {"dead-model": {"rpm": 100, "rpd": 10000}}}},
    "models": {"dead-model": {"endpoint": "{DEAD}/v1/chat/completions", "cost_per_1k_tokens": 0.0, "intelligence_tier": "high", "avg_response_time_ms": 100}}
  }
}"#;

pub const ROUTING: &str = r#"{
  "request_timeout_seconds": 20,
  "max_attempts_per_candidate": 2,
  "scenarios": {
    "support": [
      {"provider": "gemini", "model": "gemini-2.5-flash", "priority": 2},
      {"provider": "anthropic", "model": "claude-haiku", "priority": 1}
    ],
    "dead_first": [
      {"provider": "deadai", "model": "dead-model", "priority": 1},
      {"provider": "openai", "model": "gpt-4o", "priority": 2}
    ]
  }
}"#;

pub struct Harness {
    pub fake: FakeUpstream,
    pub url: String,
    /// The state every worker shares (live config and table, sinks, actors).
    pub state: actix_web::web::Data<bkvy::state::AppState>,
    pub dashboard: Option<actix::Addr<bkvy_actors::DashboardActor>>,
    /// The HTTP server's handle.
    pub server: actix_web::dev::ServerHandle,
    /// Fires the shutdown future the server runs under.
    shutdown: Option<futures::channel::oneshot::Sender<()>>,
    /// The server, running until `shutdown` fires, then shutting down.
    running: Option<actix_web::rt::task::JoinHandle<std::io::Result<server::Stopped>>>,
}

impl Harness {
    /// Starts the shutdown sequence the binary runs on SIGTERM (`server::Running::run`)
    /// and returns the task that finishes it.
    pub fn begin_stop(
        &mut self,
    ) -> actix_web::rt::task::JoinHandle<std::io::Result<server::Stopped>> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.running.take().expect("stopped twice")
    }

    /// Stops the gateway gracefully and saves its state, as the binary does on SIGTERM.
    /// Returns the fake upstream for reuse.
    pub async fn stop(mut self) -> FakeUpstream {
        let stopped = self.begin_stop().await.unwrap().unwrap();
        assert_ne!(stopped.state_saved, Some(false), "state saved at shutdown");
        self.fake
    }
}

fn dead_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

pub fn env_lookup(name: &str) -> Option<String> {
    SECRETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| (*v).to_owned())
}

/// Starts a fake upstream and a gateway configured from the given files.
pub fn start_with(providers: &str, routing: &str, fake_opts: FakeOptions) -> Harness {
    let fake = FakeUpstream::start(TcpListener::bind("127.0.0.1:0").unwrap(), fake_opts).unwrap();
    let providers = providers
        .replace("{FAKE}", &fake.url())
        .replace("{DEAD}", &dead_url());
    let config = load_from_strs(&providers, routing, &env_lookup)
        .unwrap_or_else(|p| panic!("test config invalid: {p:?}"));
    start_gateway(fake, config)
}

/// Starts a gateway for an already-loaded config in front of `fake`.
pub fn start_gateway(fake: FakeUpstream, config: bkvy::config::Config) -> Harness {
    start_gateway_with(fake, config, bkvy::http::access::AccessPolicy::default())
}

/// Starts a gateway with these statistics options.
pub fn start_gateway_with_stats(
    fake: FakeUpstream,
    config: bkvy::config::Config,
    stats: StatsOptions,
) -> Harness {
    start_gateway_full(
        fake,
        config,
        GatewayOpts {
            stats,
            ..GatewayOpts::default()
        },
    )
}

/// Loads the test config with `{FAKE}` replaced.
pub fn config_for(fake: &FakeUpstream, providers: &str, routing: &str) -> bkvy::config::Config {
    let providers = providers
        .replace("{FAKE}", &fake.url())
        .replace("{DEAD}", &dead_url());
    load_from_strs(&providers, routing, &env_lookup)
        .unwrap_or_else(|p| panic!("test config invalid: {p:?}"))
}

/// Starts a gateway with a given access policy.
pub fn start_gateway_with(
    fake: FakeUpstream,
    config: bkvy::config::Config,
    access: bkvy::http::access::AccessPolicy,
) -> Harness {
    start_gateway_full(
        fake,
        config,
        GatewayOpts {
            access,
            ..GatewayOpts::default()
        },
    )
}

/// Everything a test may choose about the gateway.
pub struct GatewayOpts {
    pub access: bkvy::http::access::AccessPolicy,
    pub state_dir: Option<std::path::PathBuf>,
    pub stats: StatsOptions,
    pub config_dir: Option<std::path::PathBuf>,
    pub dashboard: DashboardOptions,
    pub limits: HttpLimits,
    pub probes: bkvy::probes::ProbeOptions,
    /// Keep-alive, listen backlog and client timeouts (bkvy's defaults).
    pub connections: server::ConnectionOptions,
}

impl Default for GatewayOpts {
    fn default() -> Self {
        Self {
            access: bkvy::http::access::AccessPolicy::default(),
            state_dir: None,
            stats: StatsOptions::disabled(),
            config_dir: None,
            dashboard: DashboardOptions::disabled(),
            limits: HttpLimits {
                max_request_bytes: 64 * 1024,
                max_messages: 100,
                body_timeout: Duration::from_secs(2),
                ..HttpLimits::default()
            },
            probes: bkvy::probes::ProbeOptions::disabled(),
            connections: server::ConnectionOptions::default(),
        }
    }
}

/// Starts a gateway with everything chosen by the caller.
pub fn start_gateway_full(
    fake: FakeUpstream,
    config: bkvy::config::Config,
    opts: GatewayOpts,
) -> Harness {
    let GatewayOpts {
        access,
        state_dir,
        stats,
        config_dir,
        dashboard,
        limits,
        probes,
        connections,
    } = opts;
    let gateway = server::start(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        ServerOptions {
            config,
            clock: Arc::new(SystemClock),
            limits,
            workers: 1,
            access,
            state_dir,
            stats,
            shutdown_grace: Duration::from_secs(10),
            config_dir,
            probes,
            dashboard,
            access_log: true,
            connections,
            require_client_keys: false,
        },
    )
    .unwrap();
    let url = gateway.url();
    let state = gateway.state.clone();
    let dashboard = gateway.dashboard.clone();
    let server = gateway.handle();
    let (tx, rx) = futures::channel::oneshot::channel::<()>();
    // Only `begin_stop` starts the shutdown: a dropped harness leaves its server running
    // until the test's runtime ends, as a killed process would leave nothing to do.
    let running = actix_web::rt::spawn(gateway.run(async move {
        if rx.await.is_err() {
            futures::future::pending::<()>().await;
        }
    }));
    Harness {
        fake,
        url,
        state,
        dashboard,
        server,
        shutdown: Some(tx),
        running: Some(running),
    }
}

/// Both statistics logs on, in `dir`.
pub fn stats_on(dir: &std::path::Path) -> StatsOptions {
    StatsOptions {
        transaction_logging: true,
        summary_stats: true,
        log_dir: dir.to_owned(),
        max_csv_bytes: None,
    }
}

/// The standard test setup with both statistics logs writing to `dir`.
pub fn start_with_stats(dir: &std::path::Path) -> Harness {
    start_with_stats_opts(PROVIDERS, FakeOptions::default(), stats_on(dir))
}

/// A gateway over `providers` with these statistics options.
pub fn start_with_stats_opts(
    providers: &str,
    fake_opts: FakeOptions,
    stats: StatsOptions,
) -> Harness {
    let fake = FakeUpstream::start(TcpListener::bind("127.0.0.1:0").unwrap(), fake_opts).unwrap();
    let providers = providers
        .replace("{FAKE}", &fake.url())
        .replace("{DEAD}", &dead_url());
    let config = load_from_strs(&providers, ROUTING, &env_lookup)
        .unwrap_or_else(|p| panic!("test config invalid: {p:?}"));
    start_gateway_with_stats(fake, config, stats)
}

/// The standard test setup.
pub fn start() -> Harness {
    start_with(PROVIDERS, ROUTING, FakeOptions::default())
}

pub fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish()
}

/// POSTs JSON and returns (status, headers as text, parsed body).
pub async fn post(url: &str, body: &Value) -> (u16, Value) {
    let mut res = client().post(url).send_json(body).await.unwrap();
    let status = res.status().as_u16();
    let bytes = res.body().limit(10 << 20).await.unwrap();
    let json = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        panic!(
            "non-JSON body {status}: {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, json)
}

/// POSTs raw bytes with a content type.
pub async fn post_raw(url: &str, body: Vec<u8>) -> (u16, Value, String) {
    let mut res = client()
        .post(url)
        .insert_header(("content-type", "application/json"))
        .send_body(body)
        .await
        .unwrap();
    let status = res.status().as_u16();
    let bytes = res.body().limit(10 << 20).await.unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        text,
    )
}

/// GETs JSON.
pub async fn get(url: &str) -> (u16, Value) {
    let mut res = client().get(url).send().await.unwrap();
    let status = res.status().as_u16();
    let bytes = res.body().limit(10 << 20).await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A user message body for `/llm/intelligence`.
pub fn ask(level: &str, text: &str) -> Value {
    serde_json::json!({
        "client_id": "test",
        "intelligence_level": level,
        "max_wait_seconds": 30,
        "messages": [{"role": "user", "content": text}],
        "debug": true,
    })
}

/// Requests the fake received for a model.
pub fn received(h: &Harness, model: &str) -> Vec<RecordedRequest> {
    h.fake
        .requests()
        .into_iter()
        .filter(|r| r.model == model)
        .collect()
}

/// The dashboard on, loading history from `log_dir` (if any).
pub fn dashboard_on(log_dir: Option<&std::path::Path>) -> DashboardOptions {
    DashboardOptions {
        enabled: true,
        log_dir: log_dir.map(std::path::Path::to_owned),
    }
}

/// The standard test setup with the dashboard on (statistics logs off).
pub fn start_dashboard(
    access: bkvy::http::access::AccessPolicy,
    log_dir: Option<&std::path::Path>,
    fake_opts: FakeOptions,
) -> Harness {
    let fake = FakeUpstream::start(TcpListener::bind("127.0.0.1:0").unwrap(), fake_opts).unwrap();
    let config = config_for(&fake, PROVIDERS, ROUTING);
    start_gateway_full(
        fake,
        config,
        GatewayOpts {
            access,
            dashboard: dashboard_on(log_dir),
            ..GatewayOpts::default()
        },
    )
}

/// GETs with extra headers; returns (status, headers, body text).
pub async fn get_text(
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, awc::http::header::HeaderMap, String) {
    let mut req = client().get(url);
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    let mut res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let bytes = res.body().limit(10 << 20).await.unwrap();
    (
        status,
        res.headers().clone(),
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

/// Polls `/dashboard/data` until it counts `n` requests in the last hour (events are
/// delivered without waiting), then returns it.
pub async fn dashboard_data_with(url: &str, n: u64) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = get(&format!("{url}/dashboard/data?hours=1")).await;
        assert_eq!(status, 200, "{body}");
        if body["overview"]["total_requests"] == n || std::time::Instant::now() > deadline {
            return body;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `providers` as a config file on disk for `fake`: `{FAKE}` replaced, `{DEAD}` an address
/// nothing listens on, and the test keys written literally, so that loading it (a reload
/// reads the process environment) needs no variables.
pub fn providers_on_disk(providers: &str, fake: &FakeUpstream) -> String {
    SECRETS.iter().fold(
        providers
            .replace("{FAKE}", &fake.url())
            .replace("{DEAD}", "http://127.0.0.1:9"),
        |text, (name, value)| text.replace(&format!("env:{name}"), value),
    )
}
