//! The gateway end to end: bkvy and the fake providers on ephemeral loopback ports,
//! checked by what the fakes received.

mod common;

use std::time::{Duration, Instant};

use bkvy::fake::Fault;
use common::*;
use serde_json::{json, Value};

fn status_fault(status: u16, retry_after: Option<&str>) -> Fault {
    Fault::Status {
        status,
        retry_after: retry_after.map(str::to_owned),
        headers: Vec::new(),
    }
}

#[actix_web::test]
async fn intelligence_routes_to_the_cheapest_model_and_turns_thinking_off_for_low() {
    let h = start();
    let (status, body) = post(
        &format!("{}/llm/intelligence", h.url),
        &ask("low", "What is 2+2?"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["provider_used"], "gemini");
    assert_eq!(body["model_used"], "gemini-2.5-flash");
    assert_eq!(body["decision_reason"], "cheapest_within_estimate");
    assert_eq!(body["routing_method"], "intelligence");
    assert!(body["response"]["content"]
        .as_str()
        .unwrap()
        .contains("What is 2+2?"));
    let got = received(&h, "gemini-2.5-flash");
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.credential.as_deref(), Some(secret("TEST_GEMINI_KEY_1")));
    assert!(!r.query.contains("key="), "key must never be in the URL");
    assert_eq!(
        r.body["generationConfig"]["thinkingConfig"]["thinkingBudget"],
        0
    );
    // Metadata holds measured values.
    let md = &body["metadata"];
    assert!(md["api_response_time_ms"].as_i64().is_some());
    assert!(
        md["total_completion_time_ms"].as_i64().unwrap()
            >= md["api_response_time_ms"].as_i64().unwrap()
    );
    assert_eq!(md["queue_wait_ms"], 0);
    let usage = &body["response"]["usage"];
    let expected_cost = (usage["input_tokens"].as_f64().unwrap()
        + usage["output_tokens"].as_f64().unwrap()
        + usage["thinking_tokens"].as_f64().unwrap())
        * 0.0001
        / 1000.0;
    assert!((md["cost_usd"].as_f64().unwrap() - expected_cost).abs() < 1e-12);
    let considered = md["alternatives_considered"].as_array().unwrap();
    assert_eq!(
        considered.len(),
        3,
        "the other low candidates: {considered:?}"
    );
    assert!(considered
        .iter()
        .all(|c| c["reason_not_chosen"] == "higher_cost"));
}

#[actix_web::test]
async fn simplified_shape_by_default() {
    let h = start();
    let mut req = ask("high", "Analyse");
    req["debug"] = json!(false);
    let (status, body) = post(&format!("{}/llm/intelligence", h.url), &req).await;
    assert_eq!(status, 200, "{body}");
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        vec![
            "success",
            "request_id",
            "model_used",
            "content",
            "usage",
            "finish_reason",
            "truncated",
            "error"
        ]
    );
    assert_eq!(body["model_used"], "gemini-2.5-pro");
    assert_eq!(body["finish_reason"], "stop");
}

#[actix_web::test]
async fn scenario_follows_priority_and_direct_uses_the_named_key() {
    let h = start();
    let (status, body) = post(
        &format!("{}/llm/scenario", h.url),
        &json!({"client_id": "t", "scenario": "support", "max_wait_seconds": 10, "debug": true,
                "messages": [{"role": "user", "content": "hello"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model_used"], "claude-haiku");
    assert_eq!(body["decision_reason"], "scenario_priority");
    let (status, body) = post(
        &format!("{}/llm/direct", h.url),
        &json!({"client_id": "t", "provider": "openai", "model": "gpt-4o", "api_key_id": "oa2",
                "max_wait_seconds": 10, "debug": true, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["api_key_used"], "oa2");
    assert_eq!(body["decision_reason"], "direct_requested_key");
    let r = received(&h, "gpt-4o");
    assert_eq!(r.len(), 1);
    assert_eq!(
        r[0].credential.as_deref(),
        Some(secret("TEST_OPENAI_KEY_2"))
    );
}

#[actix_web::test]
async fn a_429_fails_over_and_its_retry_after_is_respected() {
    let h = start();
    // A pause longer than the caller's wait budget: the request moves on at once (a pause
    // within the budget is waited out instead: tests/routing_edges.rs).
    h.fake
        .script("gemini-2.5-flash", [status_fault(429, Some("3"))]);
    let url = format!("{}/llm/intelligence", h.url);
    let mut first = ask("low", "one");
    first["max_wait_seconds"] = json!(2);
    let (status, body) = post(&url, &first).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model_used"], "gpt-4o-mini", "next cheapest");
    let attempts = body["metadata"]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["error_type"], "rate_limited");
    assert_eq!(attempts[0]["status"], 429);
    // While paused, a caller that cannot wait out the pause is sent elsewhere, and the
    // gemini key/model is not called again.
    let mut hurried = ask("low", "two");
    hurried["max_wait_seconds"] = json!(1);
    let (_, body) = post(&url, &hurried).await;
    assert_eq!(body["model_used"], "gpt-4o-mini");
    let considered = body["metadata"]["alternatives_considered"]
        .as_array()
        .unwrap();
    let flash = considered
        .iter()
        .find(|c| c["model"] == "gemini-2.5-flash")
        .unwrap();
    assert_ne!(flash["fallback_rank"], json!(1), "{flash}");
    assert_eq!(received(&h, "gemini-2.5-flash").len(), 1);
    let (_, rates) = get(&format!("{}/rates/status", h.url)).await;
    let st = &rates["rate_limit_states"]["gemini_ge1_gemini-2.5-flash"];
    assert_eq!(st["limited_by"], "paused", "{st}");
    // After the pause the cheapest model is used again.
    actix_web::rt::time::sleep(Duration::from_millis(3_200)).await;
    let (_, body) = post(&url, &ask("low", "three")).await;
    assert_eq!(body["model_used"], "gemini-2.5-flash");
    assert_eq!(received(&h, "gemini-2.5-flash").len(), 2);
}

#[actix_web::test]
async fn server_errors_are_retried_then_failed_over() {
    let h = start();
    h.fake.script(
        "gemini-2.5-flash",
        [status_fault(500, None), status_fault(503, None)],
    );
    let (status, body) = post(&format!("{}/llm/intelligence", h.url), &ask("low", "x")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model_used"], "gpt-4o-mini");
    let attempts = body["metadata"]["attempts"].as_array().unwrap();
    let strategies: Vec<&str> = attempts
        .iter()
        .map(|a| a["strategy"].as_str().unwrap())
        .collect();
    assert_eq!(strategies, vec!["retry", "next_alternative"]);
    assert_eq!(
        received(&h, "gemini-2.5-flash").len(),
        2,
        "bounded retry: 2 attempts"
    );
}

#[actix_web::test]
async fn timeouts_malformed_and_cut_bodies_fail_over() {
    for fault in [
        Fault::Hang,
        Fault::Malformed,
        Fault::Truncated,
        Fault::EmptyContent,
    ] {
        let h = start();
        let label = format!("{fault:?}");
        let two = match &fault {
            Fault::Hang => [Fault::Hang, Fault::Hang],
            Fault::Malformed => [Fault::Malformed, Fault::Malformed],
            Fault::Truncated => [Fault::Truncated, Fault::Truncated],
            _ => [Fault::EmptyContent, Fault::EmptyContent],
        };
        h.fake.script("gemini-2.5-flash", two);
        let started = Instant::now();
        let (status, body) = post(&format!("{}/llm/intelligence", h.url), &ask("low", "x")).await;
        assert_eq!(status, 200, "{label}: {body}");
        assert_eq!(body["model_used"], "gpt-4o-mini", "{label}");
        let kinds: Vec<&str> = body["metadata"]["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["error_type"].as_str().unwrap())
            .collect();
        // A call that timed out is not retried on the same pair while another candidate
        // is there: the pair is likely hung.
        let expected = if matches!(fault, Fault::Hang) {
            vec!["timeout"]
        } else {
            vec!["malformed_response", "malformed_response"]
        };
        assert_eq!(kinds, expected, "{label}");
        assert!(started.elapsed() < Duration::from_secs(10), "{label}");
    }
}

#[actix_web::test]
async fn a_refused_connection_fails_over() {
    let h = start();
    let (status, body) = post(
        &format!("{}/llm/scenario", h.url),
        &json!({"client_id": "t", "scenario": "dead_first", "max_wait_seconds": 10, "debug": true,
                "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model_used"], "gpt-4o");
    let first = &body["metadata"]["attempts"][0];
    assert_eq!(first["error_type"], "connection", "{first}");
    assert!(!body.to_string().contains("sk-dead-literal"));
}

#[actix_web::test]
async fn an_auth_failure_takes_the_key_out_of_rotation_for_all_its_models() {
    let h = start();
    h.fake.script("claude-haiku", [status_fault(401, None)]);
    let (status, body) = post(
        &format!("{}/llm/scenario", h.url),
        &json!({"client_id": "t", "scenario": "support", "max_wait_seconds": 10, "debug": true,
                "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model_used"], "gemini-2.5-flash");
    assert_eq!(body["metadata"]["attempts"][0]["strategy"], "skip_key");
    actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    let (_, rates) = get(&format!("{}/rates/status", h.url)).await;
    for model in ["claude-haiku", "claude-sonnet"] {
        let st = &rates["rate_limit_states"][format!("anthropic_an1_{model}")];
        assert!(
            st["disabled"].as_str().unwrap().contains("authentication"),
            "{st}"
        );
    }
    // A direct request for the disabled key is refused without calling upstream.
    let (status, body) = post(
        &format!("{}/llm/direct", h.url),
        &json!({"client_id": "t", "provider": "anthropic", "model": "claude-sonnet",
                "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(received(&h, "claude-sonnet").len(), 0);
}

#[actix_web::test]
async fn rpm_is_never_exceeded_under_100_concurrent_requests() {
    let providers = PROVIDERS.replace(
        r#""gpt-4o-mini": {"rpm": 100, "rpd": 10000}"#,
        r#""gpt-4o-mini": {"rpm": 5, "rpd": 10000}"#,
    );
    let h = start_with(&providers, ROUTING, bkvy::fake::FakeOptions::default());
    let url = format!("{}/llm/direct", h.url);
    let body = json!({"client_id": "load", "provider": "openai", "model": "gpt-4o-mini",
                      "max_wait_seconds": 1, "timeout_seconds": 3,
                      "messages": [{"role": "user", "content": "x"}]});
    let started = Instant::now();
    let results = futures::future::join_all((0..100).map(|_| post(&url, &body))).await;
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    let unavailable = results.iter().filter(|(s, _)| *s == 503).count();
    assert_eq!(ok, 10, "5 per key and minute, two keys");
    assert_eq!(unavailable, 90);
    assert!(started.elapsed() < Duration::from_secs(5));
    for (_, b) in results.iter().filter(|(s, _)| *s == 503) {
        assert_eq!(b["error_code"], "all_candidates_unavailable", "{b}");
    }
    let sent = received(&h, "gpt-4o-mini");
    for key in ["TEST_OPENAI_KEY_1", "TEST_OPENAI_KEY_2"] {
        let n = sent
            .iter()
            .filter(|r| r.credential.as_deref() == Some(secret(key)))
            .count();
        assert_eq!(n, 5, "{key}");
    }
    let (_, rates) = get(&format!("{}/rates/status", h.url)).await;
    assert_eq!(
        rates["rate_limit_states"]["openai_oa1_gpt-4o-mini"]["requests_this_minute"],
        5
    );
}

#[actix_web::test]
async fn the_deadline_bounds_the_whole_request() {
    let h = start();
    h.fake.script("gpt-4o", [Fault::Hang, Fault::Hang]);
    let started = Instant::now();
    let (status, body) = post(
        &format!("{}/llm/direct", h.url),
        &json!({"client_id": "t", "provider": "openai", "model": "gpt-4o", "api_key_id": "oa1",
                "timeout_seconds": 1.5, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error_code"], "deadline_exceeded");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[actix_web::test]
async fn options_and_system_messages_map_to_each_api() {
    let h = start();
    let msgs = json!([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi there"}
    ]);
    let options =
        json!({"max_tokens": 20, "temperature": 0.5, "top_p": 0.9, "top_k": 40, "stop": ["END"]});
    for (provider, model) in [
        ("openai", "gpt-4o"),
        ("anthropic", "claude-sonnet"),
        ("gemini", "gemini-2.5-pro"),
        ("ollama", "llama3.2:3b"),
        ("vllm", "qwen3"),
    ] {
        let (status, body) = post(
            &format!("{}/llm/direct", h.url),
            &json!({"client_id": "t", "provider": provider, "model": model,
                    "messages": msgs, "options": options}),
        )
        .await;
        assert_eq!(status, 200, "{provider}: {body}");
        let r = received(&h, model).pop().unwrap();
        let b = &r.body;
        match provider {
            "openai" => {
                assert_eq!(b["max_completion_tokens"], 20);
                assert_eq!(b["temperature"], 0.5);
                assert_eq!(b["top_p"], 0.9);
                assert_eq!(b["stop"], json!(["END"]));
                assert!(b.get("top_k").is_none());
                assert_eq!(b["messages"][0]["role"], "system");
                assert_eq!(r.credential.as_deref(), Some(secret("TEST_OPENAI_KEY_1")));
            }
            "anthropic" => {
                assert_eq!(b["system"], "Be brief.");
                assert_eq!(b["max_tokens"], 20);
                assert_eq!(b["top_k"], 40);
                assert_eq!(b["stop_sequences"], json!(["END"]));
                assert_eq!(b["messages"].as_array().unwrap().len(), 1);
                assert!(b.get("thinking").is_none());
            }
            "gemini" => {
                assert_eq!(b["systemInstruction"]["parts"][0]["text"], "Be brief.");
                let g = &b["generationConfig"];
                assert_eq!(g["maxOutputTokens"], 20);
                assert_eq!(g["topK"], 40);
                assert_eq!(g["stopSequences"], json!(["END"]));
                assert!(
                    g.get("thinkingConfig").is_none(),
                    "high tier keeps thinking"
                );
            }
            "ollama" => {
                assert_eq!(b["options"]["num_predict"], 20);
                assert_eq!(b["options"]["top_k"], 40);
                assert_eq!(b["stream"], false);
                assert!(r.credential.is_none());
            }
            _ => {
                assert_eq!(b["max_tokens"], 20);
                assert!(r.credential.is_none());
            }
        }
    }
}

#[actix_web::test]
async fn thinking_control_uses_each_apis_valid_parameter() {
    let h = start();
    let direct = |provider: &str, model: &str, disable: Value| {
        json!({"client_id": "t", "provider": provider, "model": model,
               "options": {"disable_thinking": disable},
               "messages": [{"role": "user", "content": "x"}]})
    };
    let url = format!("{}/llm/direct", h.url);
    for (provider, model) in [
        ("gemini", "gemini-2.5-pro"),
        ("anthropic", "claude-sonnet"),
        ("ollama", "llama3.2:3b"),
        ("vllm", "qwen3"),
        ("gemini", "gemini-2.5-flash"),
    ] {
        let (status, body) = post(&url, &direct(provider, model, json!(true))).await;
        assert_eq!(status, 200, "{model}: {body}");
        let b = received(&h, model).pop().unwrap().body;
        match model {
            "gemini-2.5-pro" => assert_eq!(
                b["generationConfig"]["thinkingConfig"]["thinkingBudget"],
                128
            ),
            "gemini-2.5-flash" => {
                assert_eq!(b["generationConfig"]["thinkingConfig"]["thinkingBudget"], 0)
            }
            "claude-sonnet" => assert!(b.get("thinking").is_none()),
            "llama3.2:3b" => assert_eq!(b["think"], false),
            _ => assert_eq!(b["chat_template_kwargs"]["enable_thinking"], false),
        }
    }
    // An explicit false is respected even for a low-tier thinking model.
    let (status, _) = post(&url, &direct("gemini", "gemini-2.5-flash", json!(false))).await;
    assert_eq!(status, 200);
    let b = received(&h, "gemini-2.5-flash").pop().unwrap().body;
    assert!(b["generationConfig"].get("thinkingConfig").is_none(), "{b}");
}

#[actix_web::test]
async fn bad_inputs_get_the_right_4xx_with_a_message() {
    let h = start();
    let intel = format!("{}/llm/intelligence", h.url);
    let cases: Vec<(String, Vec<u8>, u16, &str)> = vec![
        (intel.clone(), b"{\"intelligence_level\": ".to_vec(), 400, "malformed_json"),
        (intel.clone(), b"".to_vec(), 400, "malformed_json"),
        (intel.clone(), b"[1,2]".to_vec(), 422, "invalid_request"),
        (intel.clone(), br#"{"intelligence_level":"low","messages":"hi"}"#.to_vec(), 422, "invalid_request"),
        (intel.clone(), br#"{"intelligence_level":"low","messages":[]}"#.to_vec(), 422, "invalid_request"),
        (intel.clone(), br#"{"intelligence_level":"ultra","messages":[{"role":"user","content":"x"}]}"#.to_vec(), 422, "invalid_request"),
        (intel.clone(), br#"{"intelligence_level":"low","messages":[{"role":"robot","content":"x"}]}"#.to_vec(), 422, "invalid_request"),
        (intel.clone(), br#"{"intelligence_level":"low","surprise":1,"messages":[{"role":"user","content":"x"}]}"#.to_vec(), 422, "invalid_request"),
        (intel.clone(), br#"{"intelligence_level":"low","options":{"thinking_budget":5},"messages":[{"role":"user","content":"x"}]}"#.to_vec(), 422, "invalid_request"),
        (intel.clone(), br#"{"intelligence_level":"low","max_wait_seconds":1e400,"messages":[{"role":"user","content":"x"}]}"#.to_vec(), 400, "malformed_json"),
        (intel.clone(), vec![b'{'; 70 * 1024], 413, "payload_too_large"),
        (format!("{}/llm/scenario", h.url), br#"{"scenario":"nope","messages":[{"role":"user","content":"x"}]}"#.to_vec(), 404, "scenario_not_found"),
        (format!("{}/llm/direct", h.url), br#"{"provider":"nope","model":"x","messages":[{"role":"user","content":"x"}]}"#.to_vec(), 404, "provider_not_found"),
        (format!("{}/llm/direct", h.url), br#"{"provider":"openai","model":"nope","messages":[{"role":"user","content":"x"}]}"#.to_vec(), 404, "model_not_found"),
        (format!("{}/llm/direct", h.url), br#"{"provider":"openai","model":"gpt-4o","api_key_id":"nope","messages":[{"role":"user","content":"x"}]}"#.to_vec(), 404, "api_key_not_found"),
        (format!("{}/no/such/path", h.url), b"{}".to_vec(), 404, "not_found"),
    ];
    for (url, body, status, code) in cases {
        let preview = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
        let (got, json, text) = post_raw(&url, body).await;
        assert_eq!(got, status, "{preview}: {text}");
        assert_eq!(json["success"], false, "{preview}: {text}");
        assert_eq!(json["error_code"], code, "{preview}: {text}");
        assert!(
            !json["error"].as_str().unwrap_or_default().is_empty(),
            "{preview}"
        );
    }
    // The process keeps serving.
    let (status, _) = post(&intel, &ask("low", "still there?")).await;
    assert_eq!(status, 200);
    assert!(
        h.fake.requests().len() == 1,
        "no bad request reached upstream"
    );
}

#[actix_web::test]
async fn no_response_ever_contains_a_secret() {
    let h = start();
    h.fake.script("claude-haiku", [status_fault(401, None)]);
    let mut texts = Vec::new();
    for body in [
        ask("low", "a"),
        ask("medium", "b"),
        ask("high", "c"),
        json!({"scenario": "support", "debug": true, "messages": [{"role": "user", "content": "d"}]}),
        json!({"scenario": "dead_first", "debug": true, "messages": [{"role": "user", "content": "e"}]}),
    ] {
        let path = if body.get("scenario").is_some() {
            "scenario"
        } else {
            "intelligence"
        };
        let (_, _, text) = post_raw(
            &format!("{}/llm/{path}", h.url),
            serde_json::to_vec(&body).unwrap(),
        )
        .await;
        texts.push(text);
    }
    for path in [
        "/health",
        "/providers",
        "/intelligence/low",
        "/scenarios",
        "/queue/status",
        "/rates/status",
        "/debug/config",
    ] {
        let mut res = client()
            .get(format!("{}{path}", h.url))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200, "{path}");
        texts.push(String::from_utf8_lossy(&res.body().await.unwrap()).into_owned());
    }
    for text in &texts {
        for (_, s) in SECRETS {
            assert!(!text.contains(s), "secret leaked: {text}");
        }
        assert!(!text.contains("sk-dead-literal"));
    }
}

#[actix_web::test]
async fn status_endpoints_report_live_numbers() {
    let h = start();
    let (status, health) = get(&format!("{}/health", h.url)).await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "healthy");
    post(&format!("{}/llm/intelligence", h.url), &ask("low", "x")).await;
    let (_, rates) = get(&format!("{}/rates/status", h.url)).await;
    let st = &rates["rate_limit_states"]["gemini_ge1_gemini-2.5-flash"];
    assert_eq!(st["requests_this_minute"], 1);
    assert_eq!(st["requests_today"], 1);
    assert_eq!(st["rpm_limit"], 100);
    assert!(st["minute_reset_time"].is_string());
    let (_, queues) = get(&format!("{}/queue/status", h.url)).await;
    let q = &queues["queue_states"]["gemini_ge1_gemini-2.5-flash"];
    assert_eq!(q["current_queue_length"], 0);
    assert_eq!(q["in_flight"], 0);
    let (_, intel) = get(&format!("{}/intelligence/low", h.url)).await;
    assert_eq!(intel["models"].as_array().unwrap().len(), 3);
    let (status, _) = get(&format!("{}/intelligence/ultra", h.url)).await;
    assert_eq!(status, 422);
    let (_, providers) = get(&format!("{}/providers", h.url)).await;
    assert_eq!(
        providers["providers"]["openai"]["models"]["gpt-4o"]["keys"]["oa1"]["rate_limits"]["rpm"],
        100
    );
    let (_, scen) = get(&format!("{}/scenarios", h.url)).await;
    assert!(scen["scenarios"]["support"].is_array());
}

#[actix_web::test]
async fn the_demo_config_answers_the_readme_examples() {
    let fake = bkvy::fake::FakeUpstream::start(
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        bkvy::fake::FakeOptions::default(),
    )
    .unwrap();
    let mut config = bkvy::config::load(std::path::Path::new("config/demo")).unwrap();
    for p in &mut config.providers {
        for m in &mut p.models {
            m.endpoint = m.endpoint.replace("http://127.0.0.1:10007", &fake.url());
        }
    }
    let h = start_gateway(fake, config);
    for level in ["low", "medium", "high"] {
        let (status, body) = post(
            &format!("{}/llm/intelligence", h.url),
            &json!({"client_id": "demo-client", "intelligence_level": level, "max_wait_seconds": 30,
                    "messages": [{"role": "user", "content": "What is 2+2?"}]}),
        )
        .await;
        assert_eq!(status, 200, "{level}: {body}");
        assert_eq!(body["success"], true);
    }
    let (status, body) = post(
        &format!("{}/llm/scenario", h.url),
        &json!({"client_id": "demo-client", "scenario": "cost_optimized_bulk", "max_wait_seconds": 30,
                "messages": [{"role": "user", "content": "Summarise"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}
