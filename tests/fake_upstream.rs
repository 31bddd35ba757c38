//! The fake upstream over real HTTP: every API's success and error shapes, the
//! validation that must catch adapter bugs, scripted faults and the request log.

// Test helpers outside `#[test]` functions panic on purpose, like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::time::{Duration, Instant};

use bkvy::fake::{FakeApi, FakeLimit, FakeModelOptions, FakeOptions, FakeUpstream, Fault};
use serde_json::{json, Value};

fn start(opts: FakeOptions) -> FakeUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    FakeUpstream::start(listener, opts).unwrap()
}

/// A status, a body (`Null` if not JSON) and the response headers.
struct Reply {
    status: u16,
    body: Value,
    headers: awc::http::header::HeaderMap,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn call(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&Value>) -> Reply {
    let client = awc::Client::default();
    let mut req = match method {
        "GET" => client.get(url),
        _ => client.post(url),
    };
    for (n, v) in headers {
        req = req.insert_header((*n, *v));
    }
    let mut resp = match body {
        Some(b) => req.send_json(b).await.unwrap(),
        None => req.send().await.unwrap(),
    };
    let bytes = resp.body().await.unwrap();
    Reply {
        status: resp.status().as_u16(),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        headers: resp.headers().clone(),
    }
}

async fn openai(fake: &FakeUpstream, body: Value) -> Reply {
    let url = format!("{}/v1/chat/completions", fake.url());
    call(
        "POST",
        &url,
        &[("authorization", "Bearer sk-test")],
        Some(&body),
    )
    .await
}

async fn anthropic(fake: &FakeUpstream, body: Value) -> Reply {
    let url = format!("{}/v1/messages", fake.url());
    let headers = [
        ("x-api-key", "ak-test"),
        ("anthropic-version", "2023-06-01"),
    ];
    call("POST", &url, &headers, Some(&body)).await
}

async fn gemini(fake: &FakeUpstream, model: &str, body: Value) -> Reply {
    let url = format!("{}/v1beta/models/{model}:generateContent", fake.url());
    call("POST", &url, &[("x-goog-api-key", "gk-test")], Some(&body)).await
}

fn openai_body(model: &str) -> Value {
    json!({"model": model, "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello big world"}
    ]})
}

fn anthropic_body(model: &str) -> Value {
    json!({"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "hello big world"}]})
}

fn gemini_body() -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": "hello big world"}]}]})
}

#[actix_web::test]
async fn openai_success_shape_and_deterministic_text() {
    let fake = start(FakeOptions::default());
    let r = openai(&fake, openai_body("gpt-4o-mini")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["object"], "chat.completion");
    assert!(r.body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert!(r.body["created"].is_i64());
    assert_eq!(r.body["model"], "gpt-4o-mini");
    let choice = &r.body["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(
        choice["message"]["content"],
        "[gpt-4o-mini] hello big world"
    );
    assert_eq!(choice["finish_reason"], "stop");
    let usage = &r.body["usage"];
    assert_eq!(usage["prompt_tokens"], 5);
    assert_eq!(usage["completion_tokens"], 4);
    assert_eq!(usage["total_tokens"], 9);
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 0);

    let mut body = openai_body("o4-mini");
    body["max_completion_tokens"] = json!(2);
    body["reasoning_effort"] = json!("high");
    let r = openai(&fake, body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["choices"][0]["message"]["content"],
        "[o4-mini] hello"
    );
    assert_eq!(r.body["choices"][0]["finish_reason"], "length");
    assert_eq!(
        r.body["usage"]["completion_tokens_details"]["reasoning_tokens"],
        8
    );
    fake.stop().await;
}

#[actix_web::test]
async fn openai_refuses_what_the_real_api_refuses() {
    let fake = start(FakeOptions::default());
    let url = format!("{}/v1/chat/completions", fake.url());
    let r = call("POST", &url, &[], Some(&openai_body("m"))).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["error"]["type"], "invalid_request_error");
    assert_eq!(r.body["error"]["code"], "invalid_api_key");
    assert!(r.body["error"]["param"].is_null());

    let mut body = openai_body("m");
    body["reasoning"] = json!({"effort": "low"});
    let r = openai(&fake, body).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body["error"]["message"],
        "Unrecognized request argument supplied: reasoning"
    );

    let bad = [
        json!({"model": "m", "messages": [{"role": "bot", "content": "x"}]}),
        json!({"model": "m", "messages": []}),
        json!({"messages": [{"role": "user", "content": "x"}]}),
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "reasoning_effort": "max"}),
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 2.5}),
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": ["a", "b", "c", "d", "e"]}),
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": true}}),
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}),
    ];
    for body in bad {
        let r = openai(&fake, body.clone()).await;
        assert_eq!(r.status, 400, "accepted {body}");
        assert_eq!(
            r.body["error"]["type"], "invalid_request_error",
            "{}",
            r.body
        );
    }

    let client = awc::Client::default();
    let mut resp = client
        .post(&url)
        .insert_header(("authorization", "Bearer sk"))
        .insert_header(("content-type", "application/json"))
        .send_body("{not json")
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("parse the JSON"));
    fake.stop().await;
}

#[actix_web::test]
async fn anthropic_success_with_thinking() {
    let fake = start(FakeOptions::default());
    let body = json!({
        "model": "claude-sonnet-4-0", "max_tokens": 2048, "system": "be brief",
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello big world"}]}]
    });
    let r = anthropic(&fake, body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["type"], "message");
    assert_eq!(r.body["role"], "assistant");
    assert!(r.body["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(r.body["content"][0]["type"], "thinking");
    assert_eq!(r.body["content"][1]["type"], "text");
    assert_eq!(
        r.body["content"][1]["text"],
        "[claude-sonnet-4-0] hello big world"
    );
    assert_eq!(r.body["stop_reason"], "end_turn");
    assert!(r.body["stop_sequence"].is_null());
    assert_eq!(r.body["usage"]["input_tokens"], 5);
    assert_eq!(r.body["usage"]["output_tokens"], 4 + 8);

    let mut body = anthropic_body("claude-3-5-haiku-latest");
    body["max_tokens"] = json!(1);
    body["thinking"] = json!({"type": "disabled"});
    let r = anthropic(&fake, body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["content"][0]["text"], "[claude-3-5-haiku-latest]");
    assert_eq!(r.body["stop_reason"], "max_tokens");
    fake.stop().await;
}

#[actix_web::test]
async fn anthropic_refuses_what_the_real_api_refuses() {
    let fake = start(FakeOptions::default());
    let url = format!("{}/v1/messages", fake.url());
    let r = call(
        "POST",
        &url,
        &[("anthropic-version", "2023-06-01")],
        Some(&anthropic_body("c")),
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["type"], "error");
    assert_eq!(r.body["error"]["type"], "authentication_error");
    let r = call(
        "POST",
        &url,
        &[("x-api-key", "k")],
        Some(&anthropic_body("c")),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"]["type"], "invalid_request_error");

    let mut body = anthropic_body("c");
    body["thinking"] = json!({"type": "enabled", "budget_tokens": 0});
    let r = anthropic(&fake, body).await;
    assert_eq!(r.status, 400);
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("budget_tokens"));

    let mut body = anthropic_body("c");
    body["reasoning_effort"] = json!("low");
    let r = anthropic(&fake, body).await;
    assert_eq!(r.status, 400);
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("reasoning_effort"));

    let bad = [
        json!({"model": "c", "messages": [{"role": "user", "content": "x"}]}),
        json!({"model": "c", "max_tokens": 10, "messages": [{"role": "system", "content": "x"}]}),
        json!({"model": "c", "max_tokens": 10, "messages": []}),
        json!({"model": "c", "max_tokens": 10, "messages": [{"role": "user", "content": ""}]}),
        json!({"model": "c", "max_tokens": 10, "temperature": 1.5, "messages": [{"role": "user", "content": "x"}]}),
        json!({"model": "c", "max_tokens": 2000, "thinking": {"type": "enabled", "budget_tokens": 2000},
               "messages": [{"role": "user", "content": "x"}]}),
        json!({"model": "c", "max_tokens": 10, "stream": "yes", "messages": [{"role": "user", "content": "x"}]}),
    ];
    for body in bad {
        let r = anthropic(&fake, body.clone()).await;
        assert_eq!(r.status, 400, "accepted {body}");
        assert_eq!(r.body["error"]["type"], "invalid_request_error");
    }
    fake.stop().await;
}

#[actix_web::test]
async fn gemini_success_and_thinking_count() {
    let fake = start(FakeOptions::default());
    let mut body = gemini_body();
    body["systemInstruction"] = json!({"parts": [{"text": "be brief"}]});
    body["generationConfig"] = json!({"maxOutputTokens": 100, "temperature": 1.5,
        "thinkingConfig": {"thinkingBudget": -1, "includeThoughts": true}});
    let r = gemini(&fake, "gemini-2.5-flash", body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let cand = &r.body["candidates"][0];
    assert_eq!(cand["content"]["role"], "model");
    assert_eq!(cand["content"]["parts"][0]["thought"], true);
    assert_eq!(
        cand["content"]["parts"][1]["text"],
        "[gemini-2.5-flash] hello big world"
    );
    assert_eq!(cand["finishReason"], "STOP");
    assert_eq!(cand["index"], 0);
    let usage = &r.body["usageMetadata"];
    assert_eq!(usage["promptTokenCount"], 5);
    assert_eq!(usage["candidatesTokenCount"], 4);
    assert_eq!(usage["thoughtsTokenCount"], 8);
    assert_eq!(usage["totalTokenCount"], 17);
    assert_eq!(r.body["modelVersion"], "gemini-2.5-flash");

    let mut body = gemini_body();
    body["generation_config"] =
        json!({"max_output_tokens": 2, "thinking_config": {"thinking_budget": 0}});
    let r = gemini(&fake, "gemini-2.5-flash", body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["candidates"][0]["content"]["parts"][0]["text"],
        "[gemini-2.5-flash] hello"
    );
    assert_eq!(r.body["candidates"][0]["finishReason"], "MAX_TOKENS");
    assert!(r.body["usageMetadata"].get("thoughtsTokenCount").is_none());
    fake.stop().await;
}

#[actix_web::test]
async fn gemini_refuses_key_in_url_and_bad_requests() {
    let fake = start(FakeOptions::default());
    let url = format!(
        "{}/v1beta/models/gemini-2.5-flash:generateContent?key=gk-test",
        fake.url()
    );
    let r = call(
        "POST",
        &url,
        &[("x-goog-api-key", "gk-test")],
        Some(&gemini_body()),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"]["code"], 400);
    assert_eq!(r.body["error"]["status"], "INVALID_ARGUMENT");

    let url = format!(
        "{}/v1beta/models/gemini-2.5-flash:generateContent",
        fake.url()
    );
    let r = call("POST", &url, &[], Some(&gemini_body())).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["error"]["status"], "UNAUTHENTICATED");

    let mut body = gemini_body();
    body["generationConfig"] = json!({"thinkingConfig": {"thinkingBudget": 0}});
    let r = gemini(&fake, "gemini-2.5-pro", body).await;
    assert_eq!(r.status, 400);
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Budget 0"));

    let mut body = gemini_body();
    body["generationConfig"] = json!({"max_tokens": 10});
    let r = gemini(&fake, "gemini-2.0-flash", body).await;
    assert_eq!(r.status, 400);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"maxTokens\""),
        "{}",
        r.body
    );

    let bad = [
        json!({"contents": []}),
        json!({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}),
        json!({"contents": [{"parts": [{"text": "x"}]}], "model": "g"}),
        json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"temperature": 3}}),
    ];
    for body in bad {
        let r = gemini(&fake, "gemini-2.0-flash", body.clone()).await;
        assert_eq!(r.status, 400, "accepted {body}");
        assert_eq!(r.body["error"]["status"], "INVALID_ARGUMENT");
    }

    let url = format!("{}/v1beta/models/gemini-2.0-flash:fooBar", fake.url());
    let r = call(
        "POST",
        &url,
        &[("x-goog-api-key", "k")],
        Some(&gemini_body()),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["error"]["status"], "NOT_FOUND");
    fake.stop().await;
}

#[actix_web::test]
async fn ollama_chat_version_and_model_lists() {
    let fake = start(FakeOptions::default());
    let url = format!("{}/api/chat", fake.url());
    let body = json!({"model": "qwen3:8b", "stream": false, "think": true,
        "options": {"num_predict": 3, "temperature": 0.2},
        "messages": [{"role": "user", "content": "hello big world"}]});
    let r = call("POST", &url, &[], Some(&body)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["message"]["role"], "assistant");
    assert_eq!(r.body["message"]["content"], "[qwen3:8b] hello big");
    assert!(r.body["message"]["thinking"].is_string());
    assert_eq!(r.body["done"], true);
    assert_eq!(r.body["done_reason"], "length");
    assert_eq!(r.body["prompt_eval_count"], 3);
    assert_eq!(r.body["eval_count"], 3 + 8);

    let bad_option = json!({"model": "m", "stream": false, "options": {"max_tokens": 3},
        "messages": [{"role": "user", "content": "x"}]});
    let r = call("POST", &url, &[], Some(&bad_option)).await;
    assert_eq!(r.status, 400);
    assert!(r.body["error"].as_str().unwrap().contains("max_tokens"));

    let base = fake.url();
    let r = call("GET", &format!("{base}/api/version"), &[], None).await;
    assert_eq!(r.body, json!({"version": "0.9.0"}));
    let r = call("GET", &format!("{base}/api/tags"), &[], None).await;
    assert!(r.body["models"][0]["name"].is_string());
    let r = call(
        "GET",
        &format!("{base}/v1/models"),
        &[("authorization", "Bearer sk")],
        None,
    )
    .await;
    assert_eq!(r.body["object"], "list");
    assert_eq!(r.body["data"][0]["object"], "model");
    let anth = [("x-api-key", "ak"), ("anthropic-version", "2023-06-01")];
    let r = call("GET", &format!("{base}/v1/models"), &anth, None).await;
    assert_eq!(r.body["data"][0]["type"], "model");
    assert_eq!(r.body["has_more"], false);
    let r = call(
        "GET",
        &format!("{base}/v1beta/models"),
        &[("x-goog-api-key", "gk")],
        None,
    )
    .await;
    assert!(r.body["models"][0]["name"]
        .as_str()
        .unwrap()
        .starts_with("models/"));
    let r = call("GET", &format!("{base}/v1/models"), &[], None).await;
    assert_eq!(r.status, 401);

    let r = call("GET", &format!("{base}/v1/nothing"), &[], None).await;
    assert_eq!(r.status, 404);
    assert!(r.body["error"]["message"].is_string());
    let kinds: Vec<FakeApi> = fake.requests().iter().map(|r| r.api).collect();
    assert_eq!(
        kinds[..3],
        [FakeApi::Ollama, FakeApi::Ollama, FakeApi::Ollama]
    );
    assert_eq!(kinds[4], FakeApi::ModelList);
    fake.stop().await;
}

#[actix_web::test]
async fn scripted_status_faults_use_each_api_shape() {
    let fake = start(FakeOptions::default());
    let reset = (
        "anthropic-ratelimit-requests-reset".to_owned(),
        "2030-01-01T00:00:00Z".to_owned(),
    );
    let faults = [
        Fault::Status {
            status: 429,
            retry_after: Some("7".into()),
            headers: vec![reset],
        },
        Fault::status(500),
        Fault::status(529),
    ];
    fake.script("claude-x", faults);
    // An invalid call does not use up a fault.
    let r = anthropic(&fake, json!({"model": "claude-x"})).await;
    assert_eq!(r.status, 400);

    let r = anthropic(&fake, anthropic_body("claude-x")).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("7"));
    assert_eq!(
        r.header("anthropic-ratelimit-requests-reset"),
        Some("2030-01-01T00:00:00Z")
    );
    assert_eq!(r.body["error"]["type"], "rate_limit_error");
    let r = anthropic(&fake, anthropic_body("claude-x")).await;
    assert_eq!(
        (r.status, r.body["error"]["type"].as_str()),
        (500, Some("api_error"))
    );
    let r = anthropic(&fake, anthropic_body("claude-x")).await;
    assert_eq!(
        (r.status, r.body["error"]["type"].as_str()),
        (529, Some("overloaded_error"))
    );
    let r = anthropic(&fake, anthropic_body("claude-x")).await;
    assert_eq!(r.status, 200);

    let r = gemini(&fake, "gemini-2.0-flash", gemini_body()).await;
    assert_eq!(
        r.body["candidates"][0]["content"]["parts"][0]["text"],
        "[gemini-2.0-flash] hello big world"
    );
    fake.script("gemini-2.0-flash", [Fault::rate_limited(9)]);
    let r = gemini(&fake, "gemini-2.0-flash", gemini_body()).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.body["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(r.body["error"]["details"][0]["retryDelay"], "9s");

    fake.script("gpt-x", [Fault::status(503)]);
    let r = openai(&fake, openai_body("gpt-x")).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body["error"]["type"], "server_error");
    fake.stop().await;
}

#[actix_web::test]
async fn scripted_body_faults() {
    let fake = start(FakeOptions::default());
    fake.script("m", [Fault::Malformed, Fault::Truncated]);
    let url = format!("{}/v1/chat/completions", fake.url());
    let client = awc::Client::default();
    let post = || {
        client
            .post(&url)
            .insert_header(("authorization", "Bearer sk"))
            .send_json(&openai_body("m"))
    };

    let mut resp = post().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.json::<Value>().await.is_err(), "malformed body parsed");

    let mut resp = post().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let got = resp.body().await;
    assert!(
        matches!(got, Err(awc::error::PayloadError::Incomplete(_))),
        "truncated body read in full: {got:?}"
    );

    // Without gzip the body just stops early; awc takes that as the end of the body,
    // so the client sees JSON that does not parse.
    fake.script("m", [Fault::Truncated]);
    let mut resp = client
        .post(&url)
        .insert_header(("authorization", "Bearer sk"))
        .insert_header(("accept-encoding", "identity"))
        .send_json(&openai_body("m"))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let got = resp
        .body()
        .await
        .map(|b| serde_json::from_slice::<Value>(&b).is_ok());
    assert!(!matches!(got, Ok(true)), "truncated body parsed");

    fake.script(
        "m",
        [
            Fault::EmptyContent,
            Fault::Delay(Duration::from_millis(300)),
        ],
    );
    let mut resp = post().await.unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "");
    assert_eq!(body["usage"]["completion_tokens"], 0);

    let t = Instant::now();
    let resp = post().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(t.elapsed() >= Duration::from_millis(300));

    fake.script("m", [Fault::Hang]);
    let short = awc::Client::builder()
        .timeout(Duration::from_millis(300))
        .finish();
    let res = short
        .post(&url)
        .insert_header(("authorization", "Bearer sk"))
        .send_json(&openai_body("m"))
        .await;
    assert!(
        matches!(res, Err(awc::error::SendRequestError::Timeout)),
        "{res:?}"
    );
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 0]);
    let t = Instant::now();
    fake.stop().await;
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[actix_web::test]
async fn fail_rate_latency_and_request_log() {
    let fake = start(FakeOptions {
        fail_rate: 1.0,
        fail_status: 429,
        retry_after_secs: 3,
        ..FakeOptions::default()
    });
    let r = openai(&fake, openai_body("gpt-a")).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("3"));
    assert_eq!(r.body["error"]["code"], "rate_limit_exceeded");

    fake.set_options(FakeOptions {
        latency: Duration::from_millis(200),
        ..FakeOptions::default()
    });
    let t = Instant::now();
    let url = format!(
        "{}/v1beta/models/gemini-2.0-flash:generateContent?alt=json",
        fake.url()
    );
    let r = call(
        "POST",
        &url,
        &[("x-goog-api-key", "gk-1")],
        Some(&gemini_body()),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(200));

    let log = fake.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].api, FakeApi::OpenAi);
    assert_eq!(log[0].model, "gpt-a");
    assert_eq!(log[0].credential.as_deref(), Some("sk-test"));
    assert_eq!(log[0].status, 429);
    assert_eq!(log[0].body["messages"][1]["content"], "hello big world");
    assert_eq!(log[1].api, FakeApi::Gemini);
    assert_eq!(
        log[1].path,
        "/v1beta/models/gemini-2.0-flash:generateContent"
    );
    assert_eq!(log[1].model, "gemini-2.0-flash");
    assert_eq!(log[1].credential.as_deref(), Some("gk-1"));
    assert_eq!(log[1].query, "alt=json");
    assert_eq!(log[1].header("x-goog-api-key"), Some("gk-1"));
    assert_eq!(log[1].status, 200);
    assert!(log[0].received_at <= log[1].received_at);
    fake.clear();
    assert!(fake.requests().is_empty());
    fake.stop().await;
}

fn limit(credential: &str, model: &str, rpm: u32) -> FakeLimit {
    FakeLimit {
        credential: Some(credential.to_owned()),
        model: model.to_owned(),
        rpm,
        rpd: 1000,
    }
}

/// The `Retry-After` of a reply as whole seconds.
fn retry_after(r: &Reply) -> u64 {
    r.header("retry-after").unwrap().parse().unwrap()
}

#[actix_web::test]
async fn provider_limits_refuse_by_arrival_with_retry_after() {
    let slow = FakeModelOptions {
        model: "gpt-lim".into(),
        latency: Duration::from_millis(1500),
        latency_jitter: Duration::ZERO,
        fail_rate: 0.0,
        fail_status: 500,
    };
    let failing = FakeModelOptions {
        model: "always-500".into(),
        latency: Duration::ZERO,
        latency_jitter: Duration::ZERO,
        fail_rate: 1.0,
        fail_status: 500,
    };
    let mut opts = FakeOptions {
        limits: vec![
            limit("sk-test", "gpt-lim", 1),
            limit("ak-test", "claude-lim", 1),
            limit("gk-test", "gemini-lim", 1),
        ],
        per_model: vec![slow, failing],
        ..FakeOptions::default()
    };
    let fake = start(opts.clone());

    // An invalid call is not counted (nor refused).
    let r = openai(&fake, json!({"model": "gpt-lim"})).await;
    assert_eq!(r.status, 400);
    let t = Instant::now();
    let r = openai(&fake, openai_body("gpt-lim")).await;
    assert_eq!(r.status, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "per-model latency"
    );
    // The second call within 60 s at rpm 1: refused at once, in OpenAI's shape.
    let t = Instant::now();
    let r = openai(&fake, openai_body("gpt-lim")).await;
    assert!(
        t.elapsed() < Duration::from_millis(1000),
        "a refusal is immediate"
    );
    assert_eq!(r.status, 429);
    assert!((57..=60).contains(&retry_after(&r)), "{:?}", r.headers);
    assert_eq!(r.body["error"]["code"], "rate_limit_exceeded");
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("requests per min (RPM): Limit 1"));
    // Another key, or a model without a limit, is not affected.
    let url = format!("{}/v1/chat/completions", fake.url());
    let other = [("authorization", "Bearer sk-other")];
    let r = call("POST", &url, &other, Some(&openai_body("gpt-lim"))).await;
    assert_eq!(r.status, 200);
    let r = openai(&fake, openai_body("gpt-free")).await;
    assert_eq!(r.status, 200);

    assert_eq!(
        anthropic(&fake, anthropic_body("claude-lim")).await.status,
        200
    );
    let r = anthropic(&fake, anthropic_body("claude-lim")).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.body["error"]["type"], "rate_limit_error");
    assert!((57..=60).contains(&retry_after(&r)));

    assert_eq!(gemini(&fake, "gemini-lim", gemini_body()).await.status, 200);
    let r = gemini(&fake, "gemini-lim", gemini_body()).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.body["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(
        r.body["error"]["details"][0]["retryDelay"],
        format!("{}s", retry_after(&r))
    );
    assert_eq!(fake.limit_refusals(), 3);

    // Per-model failures replace the global (none) for that model only.
    let r = openai(&fake, openai_body("always-500")).await;
    assert_eq!(r.status, 500);

    // Raising the limit at run time keeps the arrivals already counted.
    opts.limits[0].rpm = 2;
    opts.per_model.clear();
    fake.set_options(opts);
    assert_eq!(openai(&fake, openai_body("gpt-lim")).await.status, 200);
    assert_eq!(openai(&fake, openai_body("gpt-lim")).await.status, 429);
    assert_eq!(fake.limit_refusals(), 4);

    let statuses: Vec<(String, u16)> = fake
        .requests()
        .into_iter()
        .filter(|r| r.model.ends_with("-lim"))
        .map(|r| (r.model, r.status))
        .collect();
    let refused = statuses.iter().filter(|(_, s)| *s == 429).count();
    assert_eq!(refused, 4, "{statuses:?}");
    fake.stop().await;
}

#[actix_web::test]
async fn several_workers_share_the_log_and_scripts() {
    let fake = start(FakeOptions {
        workers: 3,
        latency: Duration::from_millis(50),
        latency_jitter: Duration::from_millis(20),
        ..FakeOptions::default()
    });
    fake.script("shared", [Fault::status(500), Fault::status(500)]);
    let calls = (0..12).map(|_| openai(&fake, openai_body("shared")));
    let replies = futures::future::join_all(calls).await;
    let failed = replies.iter().filter(|r| r.status == 500).count();
    assert_eq!(failed, 2);
    assert_eq!(replies.iter().filter(|r| r.status == 200).count(), 10);
    let log = fake.requests();
    assert_eq!(log.len(), 12);
    assert!(log.iter().all(|r| r.status == 200 || r.status == 500));
    fake.stop().await;
}

/// Posts and returns the status, content type and raw body text.
async fn raw(url: &str, headers: &[(&str, &str)], body: &Value) -> (u16, String, String) {
    let client = awc::Client::default();
    let mut req = client.post(url);
    for (n, v) in headers {
        req = req.insert_header((*n, *v));
    }
    let mut resp = req.send_json(body).await.unwrap();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let bytes = resp.body().await.unwrap();
    (
        resp.status().as_u16(),
        ct,
        String::from_utf8(bytes.to_vec()).unwrap(),
    )
}

/// The JSON payloads of the `data:` lines of an SSE body.
fn sse_data(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d.trim_end()).unwrap())
        .collect()
}

#[actix_web::test]
async fn streaming_answers_in_each_api_framing() {
    let fake = start(FakeOptions::default());
    let base = fake.url();

    let mut body = openai_body("gpt-s");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let url = format!("{base}/v1/chat/completions");
    let (status, ct, text) = raw(&url, &[("authorization", "Bearer sk")], &body).await;
    assert_eq!((status, ct.as_str()), (200, "text/event-stream"));
    assert!(text.ends_with("data: [DONE]\n\n"));
    let chunks = sse_data(&text);
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    let joined: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(joined, "[gpt-s] hello big world");
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 4);

    let mut body = anthropic_body("claude-s");
    body["stream"] = json!(true);
    let url = format!("{base}/v1/messages");
    let headers = [("x-api-key", "ak"), ("anthropic-version", "2023-06-01")];
    let (status, ct, text) = raw(&url, &headers, &body).await;
    assert_eq!((status, ct.as_str()), (200, "text/event-stream"));
    assert!(text.starts_with("event: message_start\n"));
    let events = sse_data(&text);
    let joined: String = events
        .iter()
        .filter(|e| e["delta"]["type"] == "text_delta")
        .filter_map(|e| e["delta"]["text"].as_str())
        .collect();
    assert_eq!(joined, "[claude-s] hello big world");
    let end = &events[events.len() - 2];
    assert_eq!(end["delta"]["stop_reason"], "end_turn");
    assert_eq!(events.last().unwrap()["type"], "message_stop");

    let url = format!("{base}/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse");
    let (status, ct, text) = raw(&url, &[("x-goog-api-key", "gk")], &gemini_body()).await;
    assert_eq!((status, ct.as_str()), (200, "text/event-stream"));
    let chunks = sse_data(&text);
    let joined: String = chunks
        .iter()
        .filter_map(|c| c["candidates"][0]["content"]["parts"][0]["text"].as_str())
        .collect();
    assert_eq!(joined, "[gemini-2.0-flash] hello big world", "{text}");
    assert_eq!(
        chunks.last().unwrap()["candidates"][0]["finishReason"],
        "STOP"
    );
    let url = format!("{base}/v1beta/models/gemini-2.0-flash:streamGenerateContent");
    let (_, ct, text) = raw(&url, &[("x-goog-api-key", "gk")], &gemini_body()).await;
    assert_eq!(ct, "application/json");
    let array: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(array.as_array().unwrap().len(), 4);

    let url = format!("{base}/api/chat");
    let body =
        json!({"model": "llama3.2", "messages": [{"role": "user", "content": "hello big world"}]});
    let (status, ct, text) = raw(&url, &[], &body).await;
    assert_eq!((status, ct.as_str()), (200, "application/x-ndjson"));
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let joined: String = lines
        .iter()
        .filter_map(|l| l["message"]["content"].as_str())
        .collect();
    assert_eq!(joined, "[llama3.2] hello big world");
    let last = lines.last().unwrap();
    assert_eq!(
        (last["done"].as_bool(), last["eval_count"].as_u64()),
        (Some(true), Some(4))
    );

    // A truncated stream stops before its end event.
    fake.script("claude-s", [Fault::Truncated]);
    let mut body = anthropic_body("claude-s");
    body["stream"] = json!(true);
    let (status, _, text) = raw(&format!("{base}/v1/messages"), &headers, &body).await;
    assert_eq!(status, 200);
    assert!(text.starts_with("event: message_start"));
    assert!(!text.contains("message_stop"));
    fake.stop().await;
}

#[actix_web::test]
async fn keyless_prefix_serves_openai_compatible_calls_without_a_key() {
    let fake = start(FakeOptions::default());
    let url = format!("{}/keyless/v1/chat/completions", fake.url());
    let r = call("POST", &url, &[], Some(&openai_body("local-model"))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["choices"][0]["message"]["content"],
        "[local-model] hello big world"
    );
    let r = call(
        "POST",
        &url,
        &[("authorization", "Basic x")],
        Some(&openai_body("m")),
    )
    .await;
    assert_eq!(r.status, 401);
    let r = call(
        "GET",
        &format!("{}/keyless/v1/models", fake.url()),
        &[],
        None,
    )
    .await;
    assert_eq!(r.body["object"], "list");
    let log = fake.requests();
    assert_eq!(
        (log[0].api, log[0].credential.as_deref()),
        (FakeApi::OpenAi, None)
    );
    assert_eq!(log[0].path, "/keyless/v1/chat/completions");
    fake.stop().await;
}

#[actix_web::test]
async fn serve_forever_binds_host_and_port() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = actix_web::rt::spawn(bkvy::fake::serve_forever(
        port,
        "127.0.0.1",
        FakeOptions::default(),
    ));
    let url = format!("http://127.0.0.1:{port}/api/version");
    let client = awc::Client::default();
    let mut answer = None;
    for _ in 0..50 {
        if let Ok(mut resp) = client.get(&url).send().await {
            answer = Some(resp.json::<Value>().await.unwrap());
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(answer, Some(json!({"version": "0.9.0"})));
    server.abort();
}
