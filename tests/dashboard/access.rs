//! `/dashboard*` off, behind the allow-list, and safe with hostile text.

use bkvy::fake::FakeOptions;
use bkvy::http::access::AccessPolicy;
use serde_json::Value;

use super::common::*;
use super::{direct, policy, send, XSS};

#[actix_web::test]
async fn disabled_dashboard_is_not_found() {
    let h = start();
    for path in [
        "/dashboard",
        "/dashboard/",
        "/dashboard/data",
        "/dashboard/fragment",
        "/dashboard/health",
        "/dashboard/app.js",
        "/dashboard/nope",
    ] {
        let (s, body) = get(&format!("{}{path}", h.url)).await;
        assert_eq!(s, 404, "{path}");
        assert_eq!(body["success"], false);
        assert_eq!(body["error_code"], "not_found");
    }
    h.stop().await;
}

const PATHS: [&str; 6] = [
    "/dashboard",
    "/dashboard/data",
    "/dashboard/fragment",
    "/dashboard/health",
    "/dashboard/app.js",
    "/dashboard/app.css",
];

async fn expect_denied(url: &str, headers: &[(&str, &str)], ip: &str) {
    for path in PATHS {
        let (s, hdrs, text) = get_text(&format!("{url}{path}"), headers).await;
        assert_eq!(s, 403, "{path}");
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["success"], false);
        assert_eq!(body["error_code"], "access_denied");
        let msg = body["error"].as_str().unwrap();
        assert!(
            msg.starts_with(&format!("Access denied: IP address {ip} is not authorized")),
            "{msg}"
        );
        assert!(hdrs.get("content-security-policy").is_some());
    }
}

async fn expect_allowed(url: &str, headers: &[(&str, &str)]) {
    for path in PATHS {
        let (s, _, text) = get_text(&format!("{url}{path}"), headers).await;
        assert_eq!(s, 200, "{path}: {text}");
    }
}

#[actix_web::test]
async fn access_is_limited_to_the_allow_list() {
    let h = start_dashboard(AccessPolicy::default(), None, FakeOptions::default());
    expect_allowed(&h.url, &[]).await;
    h.stop().await;

    let h = start_dashboard(policy("10.0.0.0/8, ::1", ""), None, FakeOptions::default());
    expect_denied(&h.url, &[], "127.0.0.1").await;
    // A client cannot spoof its way in: the header is ignored from an untrusted peer.
    expect_denied(&h.url, &[("x-forwarded-for", "10.1.2.3")], "127.0.0.1").await;
    h.stop().await;

    // Behind a trusted proxy (the loopback peer), the forwarded client address decides.
    let h = start_dashboard(
        policy("203.0.113.7", "127.0.0.1"),
        None,
        FakeOptions::default(),
    );
    expect_allowed(&h.url, &[("x-forwarded-for", "203.0.113.7")]).await;
    expect_denied(
        &h.url,
        &[("x-forwarded-for", "198.51.100.9")],
        "198.51.100.9",
    )
    .await;
    expect_denied(&h.url, &[], "127.0.0.1").await;
    h.stop().await;
}

#[actix_web::test]
async fn caller_supplied_text_is_escaped_and_headers_are_strict() {
    let h = start_dashboard(AccessPolicy::default(), None, FakeOptions::default());
    for x in XSS {
        let (s, _) = send(
            &format!("{}/llm/direct", h.url),
            &direct(x, "openai", "gpt-4o", "oa1", 30.0),
        )
        .await;
        assert_eq!(s, 200);
    }
    dashboard_data_with(&h.url, 2).await;
    for path in ["/dashboard", "/dashboard/fragment"] {
        let (s, hdrs, html) = get_text(&format!("{}{path}", h.url), &[]).await;
        assert_eq!(s, 200);
        assert!(!html.contains("<script>alert"), "{path}");
        assert!(!html.contains("<img src=x"), "{path}");
        assert!(!html.contains("onerror=alert(1)>"), "{path}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;&#x2F;script&gt;"),
            "{path}"
        );
        assert!(
            html.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"),
            "{path}"
        );
        let csp = hdrs
            .get("content-security-policy")
            .unwrap()
            .to_str()
            .unwrap();
        for part in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "connect-src 'self'",
        ] {
            assert!(csp.contains(part), "{csp}");
        }
        assert!(!csp.contains("unsafe-inline"));
        assert_eq!(hdrs.get("x-content-type-options").unwrap(), "nosniff");
        assert_eq!(hdrs.get("referrer-policy").unwrap(), "no-referrer");
        assert!(
            html.matches("<script").count() <= 1,
            "only the same-origin app.js"
        );
        assert!(!html.contains("style=\""), "no inline styles under the CSP");
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no external resources"
        );
    }
    let (_, hdrs, js) = get_text(&format!("{}/dashboard/app.js", h.url), &[]).await;
    assert!(hdrs
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert!(js.contains("/dashboard/fragment"));
    h.stop().await;
}

#[actix_web::test]
async fn an_empty_dashboard_says_so() {
    let h = start_dashboard(AccessPolicy::default(), None, FakeOptions::default());
    let (s, _, html) = get_text(&format!("{}/dashboard", h.url), &[]).await;
    assert_eq!(s, 200);
    assert!(html.contains("id=\"empty-state\""));
    assert!(html.contains("No data yet"));
    let (_, d) = get(&format!("{}/dashboard/data", h.url)).await;
    assert_eq!(d["data_coverage"]["has_data"], false);
    assert_eq!(d["overview"]["total_requests"], 0);
    h.stop().await;
}
