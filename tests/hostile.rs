//! Hostile input against every endpoint: malformed, truncated, oversized, deeply nested
//! and mistyped bodies, invalid UTF-8, NUL and control characters, unknown enum values,
//! duplicate keys, wrong content types, odd paths and queries, header floods and huge
//! URLs. Every answer must be a 4xx (in the project's JSON error shape where the app
//! answers; a 4xx or a closed connection where actix's HTTP parser refuses the request
//! first), never a 5xx and never a hang; afterwards the gateway still serves, and nothing
//! hostile ever reached the fake upstream.

// Test helpers panic on unexpected results by design.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use bkvy::fake::{FakeOptions, FakeUpstream};
use bkvy::http::HttpLimits;
use common::*;
use serde_json::{json, Value};

/// Body limit of the gateway under test: large enough that the 1 MB `client_id` and the
/// 10,000 messages reach validation instead of stopping at the size limit.
const LIMIT: usize = 2 * 1024 * 1024;
/// Message limit of the gateway under test.
const MAX_MESSAGES: usize = 1_000;
/// No single hostile request may take longer than this.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A gateway with [`LIMIT`] and [`MAX_MESSAGES`] in front of a fresh fake upstream.
fn start_hostile() -> Harness {
    let fake = FakeUpstream::start(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        FakeOptions::default(),
    )
    .unwrap();
    let config = config_for(&fake, PROVIDERS, ROUTING);
    start_gateway_full(
        fake,
        config,
        GatewayOpts {
            limits: HttpLimits {
                max_request_bytes: LIMIT,
                max_messages: MAX_MESSAGES,
                body_timeout: Duration::from_secs(2),
                ..HttpLimits::default()
            },
            ..GatewayOpts::default()
        },
    )
}

fn hostile_client() -> awc::Client {
    awc::Client::builder()
        .timeout(CLIENT_TIMEOUT)
        .disable_redirects()
        .finish()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ep {
    Intelligence,
    Scenario,
    Direct,
}

const EPS: [Ep; 3] = [Ep::Intelligence, Ep::Scenario, Ep::Direct];

impl Ep {
    fn path(self) -> &'static str {
        match self {
            Ep::Intelligence => "/llm/intelligence",
            Ep::Scenario => "/llm/scenario",
            Ep::Direct => "/llm/direct",
        }
    }

    /// A valid request for this endpoint (it would reach the upstream).
    fn valid(self) -> Value {
        let mut v = json!({
            "client_id": "hostile",
            "max_wait_seconds": 10,
            "messages": [{"role": "user", "content": "hi"}],
            "options": {"max_tokens": 16},
            "debug": false,
        });
        match self {
            Ep::Intelligence => v["intelligence_level"] = json!("low"),
            Ep::Scenario => v["scenario"] = json!("support"),
            Ep::Direct => {
                v["provider"] = json!("openai");
                v["model"] = json!("gpt-4o-mini");
                v["api_key_id"] = Value::Null;
            }
        }
        v
    }

    /// A request that parses and validates its numbers but never reaches the upstream:
    /// an unknown scenario or model (404 from the router), or for `/llm/intelligence`,
    /// whose every level exists, an out-of-range temperature checked after everything
    /// else (422).
    fn ghost(self) -> (Value, u16) {
        let mut v = self.valid();
        match self {
            Ep::Intelligence => {
                v["options"]["temperature"] = json!(3);
                (v, 422)
            }
            Ep::Scenario => {
                v["scenario"] = json!("no-such-scenario");
                (v, 404)
            }
            Ep::Direct => {
                v["model"] = json!("no-such-model");
                (v, 404)
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Exactly this status, with the JSON error shape.
    Status(u16),
    /// Any 4xx with the JSON error shape.
    ClientError,
}

#[derive(Debug, Clone)]
struct Case {
    name: String,
    method: &'static str,
    path: String,
    content_type: Option<String>,
    body: Vec<u8>,
    expect: Expect,
}

fn case(name: impl Into<String>, ep: Ep, body: impl Into<Vec<u8>>, expect: Expect) -> Case {
    Case {
        name: name.into(),
        method: "POST",
        path: ep.path().to_owned(),
        content_type: Some("application/json".into()),
        body: body.into(),
        expect,
    }
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// `v` with the top-level `field` replaced by raw JSON text (which may be invalid or
/// out of range for serde_json's `Value`).
fn splice(v: &Value, field: &str, raw: &str) -> Vec<u8> {
    let mut v = v.clone();
    v[field] = json!("@@RAW@@");
    serde_json::to_string(&v)
        .unwrap()
        .replacen("\"@@RAW@@\"", raw, 1)
        .into_bytes()
}

/// `v` with `options.field` replaced by raw JSON text.
fn splice_option(v: &Value, field: &str, raw: &str) -> Vec<u8> {
    let mut v = v.clone();
    v["options"][field] = json!("@@RAW@@");
    serde_json::to_string(&v)
        .unwrap()
        .replacen("\"@@RAW@@\"", raw, 1)
        .into_bytes()
}

/// The whole body corpus for the three `/llm/*` endpoints.
fn llm_corpus() -> Vec<Case> {
    use Expect::*;
    let mut cases = Vec::new();
    for ep in EPS {
        let valid = ep.valid();
        let valid_text = serde_json::to_string(&valid).unwrap();
        let (ghost, ghost_status) = ep.ghost();
        let e = format!("{ep:?}");

        // Empty, whitespace and not-an-object bodies.
        for (name, body, status) in [
            ("empty", "", 400),
            ("whitespace", " \r\n\t ", 400),
            ("null", "null", 422),
            ("true", "true", 422),
            ("zero", "0", 422),
            ("string", "\"hello\"", 422),
            ("array", "[]", 422),
            ("empty object", "{}", 422),
            ("open brace", "{", 400),
            ("close brace", "}", 400),
            ("open key", "{\"", 400),
            ("key only", "{\"client_id\"", 400),
            ("key colon", "{\"client_id\":", 400),
            ("single quotes", "{'messages': []}", 400),
            ("NaN", "{\"max_wait_seconds\": NaN}", 400),
            ("Infinity", "{\"max_wait_seconds\": Infinity}", 400),
            ("hex number", "{\"max_wait_seconds\": 0x10}", 400),
            ("leading zero", "{\"max_wait_seconds\": 01}", 400),
            ("plus sign", "{\"max_wait_seconds\": +1}", 400),
            ("trailing comma", "{\"messages\": [],}", 400),
            ("only NULs", "\0\0\0\0", 400),
        ] {
            cases.push(case(format!("{e}: {name}"), ep, body, Status(status)));
        }
        cases.push(case(
            format!("{e}: comment before body"),
            ep,
            format!("/* hi */ {valid_text}"),
            Status(400),
        ));
        cases.push(case(
            format!("{e}: trailing garbage"),
            ep,
            format!("{valid_text}x"),
            Status(400),
        ));
        cases.push(case(
            format!("{e}: two bodies"),
            ep,
            format!("{valid_text} {valid_text}"),
            Status(400),
        ));
        cases.push(case(
            format!("{e}: raw NUL after the body"),
            ep,
            format!("{valid_text}\0"),
            Status(400),
        ));

        // Truncated JSON: every proper prefix of a valid body (every 5th for brevity on
        // the other endpoints).
        let step = if ep == Ep::Intelligence { 1 } else { 5 };
        for len in (1..valid_text.len()).step_by(step) {
            cases.push(case(
                format!("{e}: truncated at {len}"),
                ep,
                &valid_text.as_bytes()[..len],
                Status(400),
            ));
        }

        // Wrong types for every field.
        let string_fields = [
            "client_id",
            "intelligence_level",
            "scenario",
            "provider",
            "model",
            "api_key_id",
        ];
        for field in string_fields {
            for raw in [
                "1",
                "-1",
                "1.5",
                "true",
                "[]",
                "{}",
                "[\"low\"]",
                "{\"a\":1}",
            ] {
                cases.push(case(
                    format!("{e}: {field} = {raw}"),
                    ep,
                    splice(&valid, field, raw),
                    Status(422),
                ));
            }
        }
        for field in ["max_wait_seconds", "timeout_seconds"] {
            for raw in ["\"1\"", "\"NaN\"", "\"inf\"", "true", "[]", "{}", "[1]"] {
                cases.push(case(
                    format!("{e}: {field} = {raw}"),
                    ep,
                    splice(&valid, field, raw),
                    Status(422),
                ));
            }
        }
        for raw in ["1", "0", "\"true\"", "[]", "{}"] {
            cases.push(case(
                format!("{e}: debug = {raw}"),
                ep,
                splice(&valid, "debug", raw),
                Status(422),
            ));
        }
        for raw in [
            "null",
            "\"hi\"",
            "1",
            "{}",
            "[1]",
            "[null]",
            "[[]]",
            "[{}]",
            "[\"user\", \"hi\"]",
            "[{\"role\": \"user\"}]",
            "[{\"content\": \"hi\"}]",
            "[{\"role\": 1, \"content\": \"hi\"}]",
            "[{\"role\": null, \"content\": \"hi\"}]",
            "[{\"role\": \"user\", \"content\": 1}]",
            "[{\"role\": \"user\", \"content\": null}]",
            "[{\"role\": \"user\", \"content\": [\"hi\"]}]",
            "[{\"role\": \"user\", \"content\": {\"text\": \"hi\"}}]",
            "[]",
        ] {
            cases.push(case(
                format!("{e}: messages = {raw}"),
                ep,
                splice(&valid, "messages", raw),
                Status(422),
            ));
        }
        for raw in ["\"x\"", "1", "[]", "true"] {
            cases.push(case(
                format!("{e}: options = {raw}"),
                ep,
                splice(&valid, "options", raw),
                Status(422),
            ));
        }
        for (field, raw) in [
            ("max_tokens", "\"16\""),
            ("max_tokens", "-1"),
            ("max_tokens", "1.5"),
            ("max_tokens", "0"),
            ("max_tokens", "4294967296"),
            ("max_tokens", "18446744073709551616"),
            ("max_tokens", "1e308"),
            ("temperature", "\"hot\""),
            ("temperature", "1e308"),
            ("temperature", "-1e308"),
            ("temperature", "2.0000001"),
            ("top_p", "1e308"),
            ("top_p", "-0.1"),
            ("top_k", "-1"),
            ("top_k", "0"),
            ("top_k", "4294967296"),
            ("stop", "\"END\""),
            ("stop", "[1]"),
            ("stop", "{}"),
            ("stop", "[null]"),
            ("disable_thinking", "\"yes\""),
            ("disable_thinking", "1"),
            ("unknown_option", "1"),
        ] {
            cases.push(case(
                format!("{e}: options.{field} = {raw}"),
                ep,
                splice_option(&valid, field, raw),
                Status(422),
            ));
        }
        cases.push(case(
            format!("{e}: unknown top-level field"),
            ep,
            splice(&valid, "temperature", "0.5"),
            Status(422),
        ));

        // Huge and tiny numbers. Values that are valid go to the ghost target, so they
        // travel through validation (and routing, where there is one) without reaching
        // the upstream.
        for (field, raw, status) in [
            ("max_wait_seconds", "1e308", ghost_status),
            ("max_wait_seconds", "-1e308", 422),
            ("max_wait_seconds", "18446744073709551616", ghost_status),
            ("max_wait_seconds", "-18446744073709551616", 422),
            ("max_wait_seconds", "1e300", ghost_status),
            ("max_wait_seconds", "1e-300", ghost_status),
            ("max_wait_seconds", "-0", ghost_status),
            ("max_wait_seconds", "1e309", 400),
            ("max_wait_seconds", "-1e309", 400),
            ("timeout_seconds", "1e-300", 422),
            ("timeout_seconds", "5e-324", 422),
            ("timeout_seconds", "0.0001", 422),
            ("timeout_seconds", "0", 422),
            ("timeout_seconds", "-0", 422),
            ("timeout_seconds", "-1e308", 422),
            ("timeout_seconds", "1e308", ghost_status),
            ("timeout_seconds", "18446744073709551616", ghost_status),
            ("timeout_seconds", "1e309", 400),
        ] {
            cases.push(case(
                format!("{e}: {field} = {raw}"),
                ep,
                splice(&ghost, field, raw),
                Status(status),
            ));
        }
        cases.push(case(
            format!("{e}: huge number literal"),
            ep,
            splice(&ghost, "max_wait_seconds", &"9".repeat(100_000)),
            ClientError,
        ));

        // Deeply nested JSON.
        cases.push(case(
            format!("{e}: 100,000 ["),
            ep,
            "[".repeat(100_000),
            Status(400),
        ));
        cases.push(case(
            format!("{e}: 100,000 {{\"a\":"),
            ep,
            "{\"a\":".repeat(100_000),
            ClientError,
        ));
        cases.push(case(
            format!("{e}: messages nested 100,000 deep"),
            ep,
            splice(&valid, "messages", &"[".repeat(100_000)),
            Status(400),
        ));
        cases.push(case(
            format!("{e}: options.stop nested 1,000 deep, closed"),
            ep,
            splice_option(
                &valid,
                "stop",
                &format!("{}{}", "[".repeat(1_000), "]".repeat(1_000)),
            ),
            ClientError,
        ));
        cases.push(case(
            format!("{e}: 100 nested arrays, closed"),
            ep,
            format!("{}{}", "[".repeat(100), "]".repeat(100)),
            Status(422),
        ));

        // 10,000 messages.
        let mut many = valid.clone();
        many["messages"] = json!(vec![json!({"role": "user", "content": "x"}); 10_000]);
        cases.push(case(
            format!("{e}: 10,000 messages"),
            ep,
            bytes(&many),
            Status(422),
        ));

        // Invalid UTF-8 and broken escapes.
        let with_client_id = |raw: &[u8]| {
            let text = splice(&valid, "client_id", "\"@@ID@@\"");
            let text = String::from_utf8(text).unwrap();
            let (a, b) = text.split_once("@@ID@@").unwrap();
            let mut out = a.as_bytes().to_vec();
            out.extend_from_slice(raw);
            out.extend_from_slice(b.as_bytes());
            out
        };
        for (name, raw) in [
            ("invalid 2-byte sequence", &b"\xc3\x28"[..]),
            ("lone continuation byte", b"\x80"),
            ("overlong slash", b"\xc0\xaf"),
            ("encoded surrogate", b"\xed\xa0\x80"),
            ("truncated 3-byte sequence", b"\xe2\x82"),
            ("0xff", b"\xff"),
            ("raw NUL", b"a\0b"),
            ("raw newline", b"a\nb"),
            ("raw escape", b"\x1b[31m"),
            ("lone leading surrogate escape", b"\\ud800"),
            ("lone trailing surrogate escape", b"\\udc00"),
            ("bad escape", b"\\x41"),
            ("short unicode escape", b"\\u12"),
        ] {
            cases.push(case(
                format!("{e}: client_id with {name}"),
                ep,
                with_client_id(raw),
                Status(400),
            ));
        }
        cases.push(case(
            format!("{e}: invalid UTF-8 body"),
            ep,
            &b"\xff\xfe\xfd\xfc"[..],
            Status(400),
        ));
        let mut bom = b"\xef\xbb\xbf".to_vec();
        bom.extend_from_slice(valid_text.as_bytes());
        cases.push(case(format!("{e}: UTF-8 BOM"), ep, bom, Status(400)));
        let utf16: Vec<u8> = valid_text
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        cases.push(case(format!("{e}: UTF-16LE body"), ep, utf16, Status(400)));

        // NUL and control characters inside strings.
        let mut nul_id = valid.clone();
        nul_id["client_id"] = json!("a\u{0}b");
        cases.push(case(
            format!("{e}: NUL in client_id"),
            ep,
            bytes(&nul_id),
            Status(422),
        ));
        let mut nul_role = valid.clone();
        nul_role["messages"][0]["role"] = json!("user\u{0}");
        cases.push(case(
            format!("{e}: NUL in role"),
            ep,
            bytes(&nul_role),
            Status(422),
        ));
        let mut nul_content = ghost.clone();
        nul_content["messages"][0]["content"] = json!("\u{0}\u{0}\u{0}");
        cases.push(case(
            format!("{e}: NUL in content"),
            ep,
            bytes(&nul_content),
            Status(ghost_status),
        ));
        cases.push(case(
            format!("{e}: NUL in a key"),
            ep,
            serde_json::to_string(&valid).unwrap().replacen(
                "\"messages\"",
                "\"mess\\u0000ages\"",
                1,
            ),
            Status(422),
        ));
        for (field, value) in [
            ("scenario", "support\u{0}"),
            ("provider", "openai\u{0}"),
            ("model", "gpt-4o-mini\u{0}"),
        ] {
            let mut v = ghost.clone();
            v[field] = json!(value);
            let status = match (ep, field) {
                (Ep::Scenario, "scenario") | (Ep::Direct, "provider" | "model") => 404,
                _ => 422,
            };
            cases.push(case(
                format!("{e}: NUL in {field}"),
                ep,
                bytes(&v),
                Status(status),
            ));
        }

        // Unknown enum values.
        for role in [
            "tool",
            "User",
            "",
            " user",
            "function",
            "developer",
            "système",
        ] {
            let mut v = valid.clone();
            v["messages"][0]["role"] = json!(role);
            cases.push(case(
                format!("{e}: role {role:?}"),
                ep,
                bytes(&v),
                Status(422),
            ));
        }
        for level in ["ultra", "LOW", "", " low", "low ", "médium", "low\u{0}"] {
            let mut v = valid.clone();
            v["intelligence_level"] = json!(level);
            cases.push(case(
                format!("{e}: intelligence_level {level:?}"),
                ep,
                bytes(&v),
                Status(422),
            ));
        }

        // client_id: too long and control characters.
        for (name, id) in [
            ("1 MB", "a".repeat(1 << 20)),
            ("1 MB of é", "é".repeat(1 << 19)),
            ("257 bytes", "a".repeat(257)),
            ("BEL", "a\u{7}".into()),
            ("newline", "a\nb".into()),
            ("tab", "a\tb".into()),
            ("ANSI escape", "\u{1b}[31mred".into()),
            ("DEL", "a\u{7f}".into()),
            ("C1 NEL", "a\u{85}".into()),
        ] {
            let mut v = valid.clone();
            v["client_id"] = json!(id);
            cases.push(case(
                format!("{e}: client_id {name}"),
                ep,
                bytes(&v),
                Status(422),
            ));
        }

        // Duplicate keys.
        let dup = |key: &str, raw: &str| {
            valid_text
                .replacen('{', &format!("{{\"{key}\":{raw},"), 1)
                .into_bytes()
        };
        for (key, raw) in [
            ("client_id", "\"other\""),
            ("messages", "[{\"role\":\"user\",\"content\":\"x\"}]"),
            ("options", "{}"),
            ("debug", "true"),
            ("max_wait_seconds", "1"),
        ] {
            cases.push(case(
                format!("{e}: duplicate {key}"),
                ep,
                dup(key, raw),
                Status(422),
            ));
        }
        cases.push(case(
            format!("{e}: duplicate role in a message"),
            ep,
            valid_text.replacen(
                "\"role\":\"user\"",
                "\"role\":\"user\",\"role\":\"system\"",
                1,
            ),
            Status(422),
        ));
        cases.push(case(
            format!("{e}: duplicate option"),
            ep,
            valid_text.replacen(
                "\"max_tokens\":16",
                "\"max_tokens\":16,\"max_tokens\":32",
                1,
            ),
            Status(422),
        ));

        // Over the size limit.
        let mut big = valid.clone();
        big["messages"][0]["content"] = json!("a".repeat(LIMIT));
        cases.push(case(
            format!("{e}: body over the limit"),
            ep,
            bytes(&big),
            Status(413),
        ));
        cases.push(case(
            format!("{e}: body of 3x the limit"),
            ep,
            vec![b' '; 3 * LIMIT],
            Status(413),
        ));

        // Wrong content types (none of these bodies is a JSON request).
        for (ct, body) in [
            ("text/plain", b"hello".to_vec()),
            (
                "application/x-www-form-urlencoded",
                b"client_id=x&intelligence_level=low&messages=hi".to_vec(),
            ),
            (
                "multipart/form-data; boundary=XyZ",
                b"--XyZ\r\nContent-Disposition: form-data; name=\"client_id\"\r\n\r\nx\r\n--XyZ--\r\n"
                    .to_vec(),
            ),
            ("application/xml", b"<request><client_id>x</client_id></request>".to_vec()),
            ("application/octet-stream", vec![0, 159, 146, 150, 255]),
            ("image/png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec()),
            (
                "application/json; charset=utf-16",
                valid_text
                    .encode_utf16()
                    .flat_map(u16::to_be_bytes)
                    .collect(),
            ),
        ] {
            // Only a JSON content type reaches the parser (a 400 for the UTF-16 body);
            // any other is a 415 before the body is read.
            let expect = if ct.starts_with("application/json") { 400 } else { 415 };
            let mut c = case(format!("{e}: content type {ct}"), ep, body, Status(expect));
            c.content_type = Some(ct.into());
            cases.push(c);
        }
        let mut c = case(
            format!("{e}: no content type, no body"),
            ep,
            "",
            Status(415),
        );
        c.content_type = None;
        cases.push(c);
    }
    cases
}

/// GET and POST endpoints with odd paths: each an error in the JSON shape.
fn path_corpus() -> Vec<(&'static str, String, u16)> {
    let long = "a".repeat(10 * 1024);
    vec![
        ("GET", "/intelligence/%00".into(), 422),
        ("GET", format!("/intelligence/{long}"), 422),
        ("GET", "/intelligence/low%00".into(), 422),
        ("GET", "/intelligence/LOW".into(), 422),
        ("GET", "/intelligence/%2e%2e".into(), 422),
        ("GET", "/intelligence/..%2f..%2fhealth".into(), 422),
        ("GET", "/intelligence/low%2f..%2fhigh".into(), 422),
        ("GET", "/intelligence/%e2%80%ae".into(), 422),
        ("GET", "/intelligence/%ff%fe".into(), 422),
        ("GET", "/intelligence/%".into(), 422),
        ("GET", "/intelligence/%zz".into(), 422),
        ("GET", "/intelligence/".into(), 404),
        ("GET", "/intelligence/low/x".into(), 404),
        ("GET", "/intelligence/../health/x".into(), 404),
        ("POST", "/circuits/reset/../../x".into(), 404),
        ("POST", "/circuits/reset/%00/%00/%00".into(), 404),
        ("POST", "/circuits/reset/openai/gpt-4o-mini/%00".into(), 404),
        ("POST", format!("/circuits/reset/{long}/{long}/{long}"), 404),
        ("POST", "/circuits/reset/a/b/c/d".into(), 404),
        ("POST", "/circuits/reset/openai".into(), 404),
        ("POST", "/circuits/reset/%2e%2e/%2e%2e/%2e%2e".into(), 404),
        ("GET", "/%00".into(), 404),
        ("GET", "//health".into(), 404),
        ("GET", "/health/".into(), 404),
        ("GET", "/HEALTH".into(), 404),
        ("GET", "/llm/intelligence/x".into(), 404),
        ("GET", format!("/{long}"), 404),
        ("POST", "/llm".into(), 404),
        ("DELETE", "/nothing-here".into(), 404),
    ]
}

/// GET endpoints with odd queries (ignored by them): any answer but a 5xx.
fn query_corpus() -> Vec<String> {
    let long = "q".repeat(10 * 1024);
    vec![
        "/health?%00=%ff&&&=".into(),
        format!("/providers?x={long}"),
        "/scenarios?;;;".into(),
        "/queue/status?a[]=1&a[]=2&a[0][b]=%zz".into(),
        "/rates/status?%zz%".into(),
        "/circuits/status?x=%00%0d%0aSet-Cookie:%20a=b".into(),
        "/debug/config?../../etc/passwd".into(),
        "/metrics?name[]=x&name=%ff".into(),
        "/intelligence/low?%00".into(),
        "/intelligence/high?level=ultra".into(),
    ]
}

fn error_shape(name: &str, status: u16, body: &[u8]) -> Result<(), String> {
    let json: Value = serde_json::from_slice(body).map_err(|_| {
        format!(
            "{name}: {status} with a non-JSON body: {:?}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        )
    })?;
    let text = |k: &str| json[k].as_str().is_some_and(|s| !s.is_empty());
    if json["success"] != false || !text("error") || !text("error_code") {
        return Err(format!("{name}: not the error shape: {json}"));
    }
    Ok(())
}

fn check_error_shape(name: &str, status: u16, body: &[u8]) {
    error_shape(name, status, body).unwrap_or_else(|e| panic!("{e}"));
}

/// Sends one body case and checks its answer: the status, or what was wrong.
async fn try_case(client: &awc::Client, base: &str, c: &Case) -> Result<u16, String> {
    let method = awc::http::Method::from_bytes(c.method.as_bytes()).unwrap();
    let mut req = client.request(method, format!("{base}{}", c.path));
    if let Some(ct) = &c.content_type {
        req = req.insert_header(("content-type", ct.as_str()));
    }
    let mut res = req
        .send_body(c.body.clone())
        .await
        .map_err(|e| format!("{}: no answer: {e}", c.name))?;
    let status = res.status().as_u16();
    let body = res
        .body()
        .limit(1 << 20)
        .await
        .map_err(|e| format!("{}: body not read: {e}", c.name))?;
    let shown = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    if !(400..500).contains(&status) {
        return Err(format!("{}: status {status}: {shown}", c.name));
    }
    if let Expect::Status(expected) = c.expect {
        if status != expected {
            return Err(format!(
                "{}: {status} instead of {expected}: {shown}",
                c.name
            ));
        }
    }
    error_shape(&c.name, status, &body)?;
    Ok(status)
}

/// [`try_case`], panicking on a wrong answer.
async fn run_case(client: &awc::Client, base: &str, c: &Case) -> u16 {
    try_case(client, base, c)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// What a raw HTTP/1.1 exchange ended with.
#[derive(Debug)]
enum Raw {
    /// A response: status and body.
    Answer(u16, Vec<u8>),
    /// The server closed the connection without answering.
    Closed,
}

/// Writes `request` on a fresh connection (half-closing it when `half_close`) and reads
/// until the server closes. A read that blocks longer than [`CLIENT_TIMEOUT`] is a hang
/// and fails the test.
async fn raw(addr: String, request: Vec<u8>, half_close: bool) -> Raw {
    actix_web::rt::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(&addr).unwrap();
        stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        // The server may refuse and close before everything is written: that is fine.
        let _ = stream.write_all(&request);
        if half_close {
            let _ = stream.shutdown(std::net::Shutdown::Write);
        }
        let mut got = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    panic!(
                        "hang: no answer and no close within {CLIENT_TIMEOUT:?} (got {} bytes)",
                        got.len()
                    )
                }
                // Reset by the server after refusing the request.
                Err(_) => break,
            }
        }
        parse_raw(&got)
    })
    .await
    .unwrap()
}

fn parse_raw(got: &[u8]) -> Raw {
    if got.is_empty() {
        return Raw::Closed;
    }
    let text = String::from_utf8_lossy(got);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| got[i + 4..].to_vec())
        .unwrap_or_default();
    Raw::Answer(status, body)
}

fn host(h: &Harness) -> String {
    h.url.trim_start_matches("http://").to_owned()
}

fn request_line(method: &str, target: &str, extra_headers: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{extra_headers}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// Transport-level abuse that actix's HTTP/1 parser may refuse before the app sees it:
/// each ends with a 4xx or a closed connection, never a 5xx or a hang.
fn transport_corpus() -> Vec<(&'static str, Vec<u8>, bool)> {
    let hundreds: String = (0..300).map(|i| format!("X-Flood-{i}: {i}\r\n")).collect();
    let huge_header = format!("X-Huge: {}\r\n", "h".repeat(200 * 1024));
    let huge_url = format!("/health?{}", "u".repeat(200 * 1024));
    let huge_path = format!("/intelligence/{}", "p".repeat(200 * 1024));
    let valid = serde_json::to_vec(&Ep::Intelligence.valid()).unwrap();
    let chunked_over = {
        let mut out = b"POST /llm/intelligence HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let chunk = vec![b' '; 64 * 1024];
        for _ in 0..(LIMIT / chunk.len() + 2) {
            out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            out.extend_from_slice(&chunk);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    };
    vec![
        (
            "300 headers",
            request_line("GET", "/health", &hundreds, b""),
            false,
        ),
        (
            "300 headers on POST",
            request_line("POST", "/llm/intelligence", &hundreds, &valid),
            false,
        ),
        (
            "one 200 KB header",
            request_line("POST", "/llm/scenario", &huge_header, &valid),
            false,
        ),
        (
            "200 KB URL",
            request_line("GET", &huge_url, "", b""),
            false,
        ),
        (
            "200 KB path",
            request_line("GET", &huge_path, "", b""),
            false,
        ),
        ("garbage request line", b"GARBAGE\r\n\r\n".to_vec(), true),
        ("binary noise", vec![0xff; 4096], true),
        (
            "negative content length",
            b"POST /llm/direct HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n{}".to_vec(),
            true,
        ),
        (
            "conflicting content lengths",
            b"POST /llm/direct HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}x".to_vec(),
            true,
        ),
        (
            "content length and chunked",
            b"POST /llm/direct HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}".to_vec(),
            true,
        ),
        (
            "bad chunk size",
            b"POST /llm/direct HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n".to_vec(),
            true,
        ),
        (
            "body shorter than content length",
            b"POST /llm/intelligence HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"messages\":".to_vec(),
            true,
        ),
        (
            "NUL in a header value",
            b"GET /health HTTP/1.1\r\nHost: x\r\nX-Nul: a\0b\r\n\r\n".to_vec(),
            true,
        ),
        (
            "NUL in the path",
            b"GET /intelligence/lo\0w HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            true,
        ),
        (
            "HTTP/9.9",
            b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n".to_vec(),
            true,
        ),
        ("chunked body over the limit", chunked_over, false),
    ]
}

/// Sends every path case; returns how many were sent.
async fn run_paths(h: &Harness) -> usize {
    let cases = path_corpus();
    for (method, path, expected) in &cases {
        let name = format!("{method} {}", &path[..path.len().min(80)]);
        match raw(host(h), request_line(method, path, "", b""), false).await {
            Raw::Answer(status, body) => {
                assert_eq!(
                    status,
                    *expected,
                    "{name}: {}",
                    String::from_utf8_lossy(&body)
                );
                check_error_shape(&name, status, &body);
            }
            Raw::Closed => panic!("{name}: closed without an answer"),
        }
    }
    let queries = query_corpus();
    for path in &queries {
        let name = format!("GET {}", &path[..path.len().min(80)]);
        match raw(host(h), request_line("GET", path, "", b""), false).await {
            Raw::Answer(status, body) => {
                assert!(status < 500, "{name}: {status}");
                if status >= 400 {
                    check_error_shape(&name, status, &body);
                }
            }
            Raw::Closed => panic!("{name}: closed without an answer"),
        }
    }
    // Other methods on the endpoints get a JSON 405 naming the method.
    for (method, path) in [
        ("GET", "/llm/intelligence"),
        ("PUT", "/llm/scenario"),
        ("DELETE", "/llm/direct"),
        ("GET", "/circuits/reset/a/b/c"),
        ("POST", "/health"),
    ] {
        match raw(host(h), request_line(method, path, "", b""), false).await {
            Raw::Answer(status, body) => {
                assert_eq!(status, 405, "{method} {path}");
                check_error_shape(path, status, &body);
                let text = String::from_utf8_lossy(&body);
                assert!(
                    text.contains("method_not_allowed"),
                    "{method} {path}: {text}"
                );
            }
            Raw::Closed => panic!("{method} {path}: closed without an answer"),
        }
    }
    cases.len() + queries.len() + 5
}

/// Sends every transport case; returns how many were sent.
async fn run_transport(h: &Harness) -> usize {
    let cases = transport_corpus();
    for (name, request, half_close) in &cases {
        match raw(host(h), request.clone(), *half_close).await {
            Raw::Answer(status, body) => {
                assert!(
                    (400..500).contains(&status),
                    "{name}: {status} {}",
                    String::from_utf8_lossy(&body[..body.len().min(300)])
                );
                // Answers from the app itself keep the JSON error shape.
                if !body.is_empty() {
                    check_error_shape(name, status, &body);
                }
            }
            Raw::Closed => {}
        }
    }
    cases.len()
}

async fn assert_still_serving(h: &Harness, before: usize) {
    let (status, body) = post(
        &format!("{}/llm/intelligence", h.url),
        &ask("low", "still alive?"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["response"]["content"]
        .as_str()
        .unwrap()
        .contains("still alive?"));
    let (status, health) = get(&format!("{}/health", h.url)).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "healthy");
    assert_eq!(
        h.fake.requests().len(),
        before + 1,
        "only the normal request reaches the upstream"
    );
}

#[actix_web::test]
async fn every_hostile_request_gets_a_4xx_and_the_gateway_keeps_serving() {
    let h = start_hostile();
    let client = hostile_client();
    let cases = llm_corpus();
    assert!(cases.len() > 500, "{}", cases.len());
    let mut wrong = Vec::new();
    for c in &cases {
        if let Err(e) = try_case(&client, &h.url, c).await {
            wrong.push(e);
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong answers:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    run_paths(&h).await;
    run_transport(&h).await;
    let reached: Vec<String> = h.fake.requests().iter().map(|r| r.path.clone()).collect();
    assert!(
        reached.is_empty(),
        "hostile requests reached the upstream: {reached:?}"
    );
    assert_still_serving(&h, 0).await;
}

#[actix_web::test]
async fn hostile_requests_in_parallel_do_not_affect_good_ones() {
    let h = start_hostile();
    let client = hostile_client();
    // Every 3rd case of the corpus, 200 in all, cycling if needed.
    let corpus: Vec<Case> = llm_corpus().into_iter().step_by(3).collect();
    let hostile: Vec<Case> = corpus.iter().cycle().take(200).cloned().collect();
    let goods: Vec<(String, Value, String)> = (0..50)
        .map(|i| {
            let marker = format!("good request number {i}");
            let (path, body) = match i % 4 {
                0 => ("/llm/intelligence", ask("low", &marker)),
                1 => ("/llm/intelligence", ask("high", &marker)),
                2 => (
                    "/llm/scenario",
                    json!({"scenario": "support", "debug": true,
                           "messages": [{"role": "user", "content": marker}]}),
                ),
                _ => (
                    "/llm/direct",
                    json!({"provider": "openai", "model": "gpt-4o-mini", "debug": true,
                           "messages": [{"role": "user", "content": marker}]}),
                ),
            };
            (format!("{}{path}", h.url), body, marker)
        })
        .collect();

    let bad = futures::future::join_all(hostile.iter().map(|c| run_case(&client, &h.url, c)));
    let good = futures::future::join_all(goods.iter().map(|(url, body, marker)| async move {
        let (status, answer) = post(url, body).await;
        assert_eq!(status, 200, "{marker}: {answer}");
        let content = answer["response"]["content"].as_str().unwrap_or_default();
        assert!(content.contains(marker.as_str()), "{marker}: {answer}");
    }));
    let transport = async {
        for _ in 0..2 {
            run_transport(&h).await;
        }
    };
    let (statuses, _, _) = futures::join!(bad, good, transport);
    assert_eq!(statuses.len(), 200);
    assert_eq!(
        h.fake.requests().len(),
        50,
        "exactly the good requests reached the upstream"
    );
    assert_still_serving(&h, 50).await;
}

#[actix_web::test]
async fn a_body_that_never_arrives_gets_a_408_not_a_hang() {
    let h = start_hostile();
    // Announce 1,000 bytes, send 10, then stall (the connection stays open).
    let request = b"POST /llm/intelligence HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"messages".to_vec();
    let started = std::time::Instant::now();
    match raw(host(&h), request, false).await {
        Raw::Answer(status, body) => {
            assert_eq!(status, 408, "{}", String::from_utf8_lossy(&body));
            check_error_shape("slow body", status, &body);
        }
        Raw::Closed => panic!("closed without an answer"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    // The gateway keeps serving.
    let (status, _) = post(
        &format!("{}/llm/intelligence", h.url),
        &ask("low", "still here"),
    )
    .await;
    assert_eq!(status, 200);
}
