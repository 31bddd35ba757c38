//! The dashboard in a real browser: headless Chromium driven over the WebDriver protocol
//! (chromedriver, spoken to with awc, so no extra client crate), against bkvy filled with
//! known traffic. Checks what a person would see: the cards' numbers, drawn charts, the
//! newest transaction first, an XSS `client_id` shown as text, no console errors (CSP
//! violations included), and a refresh without a page reload. Saves a screenshot to
//! `target/dashboard.png`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (or `CHROME` / `CHROMEDRIVER`). Without
//! them the test fails under `CI=true` and is skipped with a printed note otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use bkvy::fake::FakeOptions;
use bkvy::http::access::AccessPolicy;
use common::*;
use serde_json::{json, Value};

const FLAGS: [&str; 10] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,2400",
];

fn tool(env: &str, default: &str) -> Option<PathBuf> {
    let p = std::env::var_os(env).map_or_else(|| PathBuf::from(default), PathBuf::from);
    p.exists().then_some(p)
}

/// Chromium and chromedriver, or the reason they cannot be used.
fn browser_tools() -> Result<(PathBuf, PathBuf), String> {
    match (
        tool("CHROME", "/usr/bin/chromium"),
        tool("CHROMEDRIVER", "/usr/bin/chromedriver"),
    ) {
        (Some(c), Some(d)) => Ok((c, d)),
        _ => Err("chromium and chromedriver are needed for the browser test \
                  (apt-get install -y chromium chromium-driver, or set CHROME/CHROMEDRIVER)"
            .into()),
    }
}

/// chromedriver, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver(path: &Path) -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromedriver");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut res) = client().get(format!("{}/status", driver.url)).send().await {
            let body: Value = res.json().await.unwrap_or_default();
            if body["value"]["ready"] == true {
                return driver;
            }
        }
        assert!(
            Instant::now() < deadline,
            "chromedriver did not become ready"
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One WebDriver session.
struct Session {
    base: String,
}

impl Session {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let c = client();
        let req = match method {
            "GET" => c.get(&url),
            "DELETE" => c.delete(&url),
            _ => c.post(&url),
        };
        let mut res = match body {
            Some(b) => req.send_json(&b).await,
            None => req.send().await,
        }
        .unwrap();
        let bytes = res.body().limit(64 << 20).await.unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert!(
            res.status().is_success(),
            "WebDriver {method} {path}: {}",
            v["value"]
        );
        v["value"].clone()
    }

    async fn open(driver: &Driver, chrome: &Path, profile: &Path) -> Self {
        let mut args: Vec<String> = FLAGS.iter().map(|s| (*s).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chrome, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let s = Session {
            base: driver.url.clone(),
        };
        let v = s.call("POST", "/session", Some(caps)).await;
        let id = v["sessionId"].as_str().unwrap().to_owned();
        Session {
            base: format!("{}/session/{id}", driver.url),
        }
    }

    async fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url }))).await;
    }

    async fn js(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// Console entries of level SEVERE (errors, CSP violations).
    async fn console_errors(&self) -> Vec<String> {
        let logs = self
            .call("POST", "/se/log", Some(json!({"type": "browser"})))
            .await;
        logs.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    async fn screenshot(&self) -> Vec<u8> {
        let png = self.call("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"));
        png
    }

    async fn close(self) {
        self.call("DELETE", "", None).await;
    }
}

fn direct(client: &str, provider: &str, model: &str, key: &str) -> Value {
    json!({"client_id": client, "provider": provider, "model": model, "api_key_id": key,
           "max_wait_seconds": 30, "messages": [{"role": "user", "content": "hello"}]})
}

const PAGE_STATE: &str = r#"
const q = (s) => document.querySelector(s);
const all = (s) => Array.from(document.querySelectorAll(s));
return {
  total: q('#card-total .value') && q('#card-total .value').textContent,
  success: q('#card-success .value') && q('#card-success .value').textContent,
  cost: q('#card-cost .value') && q('#card-cost .value').textContent,
  series_bars: all('#chart-series rect.ok').length,
  provider_slices: all('#chart-providers circle.slice').length,
  svgs: all('svg').length,
  times: all('#recent-table time').map((t) => t.getAttribute('datetime')),
  shown_time: q('#recent-table time') && q('#recent-table time').textContent,
  clients: all('#recent-table td.client').map((td) => td.textContent),
  images: all('img').length,
  scripts: all('script').length,
  marker: window.__kept === true,
};
"#;

const BACKGROUND: &str = "return getComputedStyle(document.body).backgroundColor;";

/// Picks "Custom…", fills in the last hour (plus two minutes) and submits.
const CUSTOM_RANGE: &str = r#"
const r = document.getElementById('range');
r.value = 'custom';
r.dispatchEvent(new Event('change'));
const pad = (n) => String(n).padStart(2, '0');
const v = (d) => d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) +
  'T' + pad(d.getHours()) + ':' + pad(d.getMinutes());
const now = new Date();
document.getElementById('from').value = v(new Date(now.getTime() - 3600 * 1000));
document.getElementById('to').value = v(new Date(now.getTime() + 120 * 1000));
document.getElementById('apply').click();
return null;
"#;

#[actix_web::test]
async fn the_dashboard_renders_in_headless_chromium() {
    let (chrome, chromedriver) = match browser_tools() {
        Ok(t) => t,
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("{why}"),
        Err(why) => {
            eprintln!("SKIPPED the_dashboard_renders_in_headless_chromium: {why}");
            return;
        }
    };
    let fake = FakeOptions {
        latency: Duration::from_millis(15),
        ..FakeOptions::default()
    };
    let h = start_dashboard(AccessPolicy::default(), None, fake);
    let url = format!("{}/llm/direct", h.url);
    let plan = [
        ("alpha", "openai", "gpt-4o-mini", "oa1"),
        ("alpha", "openai", "gpt-4o-mini", "oa1"),
        ("alpha", "openai", "gpt-4o", "oa2"),
        ("beta", "anthropic", "claude-haiku", "an1"),
        ("beta", "anthropic", "claude-sonnet", "an1"),
        ("<script>alert(1)</script>", "openai", "gpt-4o", "oa1"),
        (
            "\"><img src=x onerror=alert(1)>",
            "gemini",
            "gemini-2.5-flash",
            "ge1",
        ),
        ("gamma", "deadai", "dead-model", "d1"),
    ];
    for (client_id, p, m, k) in plan {
        let _ = post(&url, &direct(client_id, p, m, k)).await;
        // Distinct arrival times, so "newest first" is well defined.
        actix_web::rt::time::sleep(Duration::from_millis(5)).await;
    }
    let data = dashboard_data_with(&h.url, 8).await;
    let o = &data["overview"];
    assert_eq!(o["total_requests"], 8);
    assert_eq!(o["successful_requests"], 7);

    let driver = start_driver(&chromedriver).await;
    let profile = tempfile::tempdir().unwrap();
    let s = Session::open(&driver, &chrome, profile.path()).await;
    s.goto(&format!("{}/dashboard?hours=1", h.url)).await;
    let page = s.js(PAGE_STATE).await;
    assert_eq!(page["total"], "8", "{page}");
    assert_eq!(page["success"], "87.50%");
    assert_eq!(
        page["cost"],
        format!("${:.6}", o["total_cost"].as_f64().unwrap())
    );
    // Series, providers, models, methods, clients, wait budgets (direct requests have no
    // intelligence level, so that chart shows its empty note).
    assert_eq!(page["svgs"], 6, "{page}");
    assert!(page["series_bars"].as_u64().unwrap() >= 60);
    assert_eq!(page["provider_slices"], 3, "openai, anthropic, gemini");
    let times: Vec<&str> = page["times"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(times.len(), 8);
    let mut newest_first = times.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, newest_first);
    assert_eq!(
        page["clients"][0], "gamma",
        "the last request is listed first"
    );
    assert_ne!(
        page["shown_time"], times[0],
        "shown in local time by app.js"
    );
    let clients: Vec<&str> = page["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(
        clients.contains(&"<script>alert(1)</script>"),
        "{clients:?}"
    );
    assert!(clients.contains(&"\"><img src=x onerror=alert(1)>"));
    assert_eq!(page["images"], 0, "no injected element");
    assert_eq!(page["scripts"], 1, "only app.js");

    // Refresh without a reload: a marker on `window` survives the swap of the content.
    s.js("window.__kept = true; return null;").await;
    let _ = post(&url, &direct("delta", "openai", "gpt-4o-mini", "oa1")).await;
    dashboard_data_with(&h.url, 9).await;
    s.js(
        "const r = document.getElementById('range'); r.value = '6'; \
          r.dispatchEvent(new Event('change')); return null;",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let p = s.js(PAGE_STATE).await;
        if p["total"] == "9" || Instant::now() > deadline {
            break p;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(after["total"], "9", "{after}");
    assert_eq!(after["marker"], true, "refreshed in place, not reloaded");
    let location = s.js("return location.search;").await;
    assert_eq!(location, "?hours=6");

    // A custom range through the controls; auto-refresh keeps it (both stay in the address).
    s.js(CUSTOM_RANGE).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let search = s.js("return location.search;").await;
        let search = search.as_str().unwrap_or_default().to_owned();
        if search.contains("start_date=") {
            assert!(search.contains("end_date="), "{search}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "custom range not applied: {search}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    let custom = s.js(PAGE_STATE).await;
    assert_eq!(custom["total"], "9", "{custom}");
    s.js(
        "const f = document.getElementById('refresh'); f.value = '15'; \
          f.dispatchEvent(new Event('change')); return null;",
    )
    .await;
    let search = s.js("return location.search;").await;
    let search = search.as_str().unwrap();
    assert!(
        search.contains("start_date=") && search.contains("refresh=15"),
        "{search}"
    );
    s.js(
        "const f = document.getElementById('refresh'); f.value = '0'; \
          f.dispatchEvent(new Event('change')); return null;",
    )
    .await;

    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&target).unwrap();
    s.goto(&format!("{}/dashboard?hours=1", h.url)).await;
    let light = s.js(BACKGROUND).await;
    std::fs::write(target.join("dashboard.png"), s.screenshot().await).unwrap();

    // Dark theme from the browser's preference.
    s.call(
        "POST",
        "/goog/cdp/execute",
        Some(json!({"cmd": "Emulation.setEmulatedMedia", "params": {
            "features": [{"name": "prefers-color-scheme", "value": "dark"}]}})),
    )
    .await;
    let dark = s.js(BACKGROUND).await;
    assert_ne!(light, dark, "the theme follows prefers-color-scheme");
    std::fs::write(target.join("dashboard-dark.png"), s.screenshot().await).unwrap();

    let errors = s.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:?}");
    s.close().await;
    h.stop().await;
}
