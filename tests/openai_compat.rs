//! The OpenAI-compatible surface: request and response shapes, streaming chunks, errors
//! in OpenAI's shape, and the model list.

// Test helpers panic on unexpected input by design.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{json, Value};

fn chat(model: &str, extra: Value) -> Value {
    let mut body = json!({"model": model, "messages": [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "What is 2+2?"}]}
    ]});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

#[actix_web::test]
async fn a_completion_is_a_real_chat_completion_object() {
    let h = start();
    let mut res = client()
        .post(format!("{}/v1/chat/completions", h.url))
        .insert_header(("authorization", "Bearer my-app"))
        .insert_header(("x-bkvy-max-wait-seconds", "30"))
        .send_json(&chat(
            "low",
            json!({"max_tokens": 50, "temperature": 0.2, "user": "u1"}),
        ))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    for h in [
        "x-bkvy-provider",
        "x-bkvy-model",
        "x-bkvy-decision",
        "x-bkvy-cost-usd",
        "x-bkvy-request-id",
    ] {
        assert!(res.headers().get(h).is_some(), "{h}");
    }
    assert_eq!(
        res.headers().get("x-bkvy-model").unwrap(),
        "gemini-2.5-flash"
    );
    let b: Value = res.json().await.unwrap();
    assert_eq!(b["object"], "chat.completion");
    assert!(b["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(b["model"], "gemini-2.5-flash");
    assert_eq!(b["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        b["choices"][0]["message"]["content"],
        "[gemini-2.5-flash] What is 2+2?"
    );
    assert_eq!(b["choices"][0]["finish_reason"], "stop");
    let u = &b["usage"];
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
    );
    assert!(u["completion_tokens_details"]["reasoning_tokens"].is_u64());
    // The developer message became the system instruction, options were mapped.
    let sent = received(&h, "gemini-2.5-flash").pop().unwrap().body;
    assert_eq!(sent["systemInstruction"]["parts"][0]["text"], "Be brief.");
    assert_eq!(sent["generationConfig"]["maxOutputTokens"], 50);
}

#[actix_web::test]
async fn scenario_and_direct_model_names_route_and_reasoning_effort_maps_to_thinking() {
    let h = start();
    let url = format!("{}/v1/chat/completions", h.url);
    let (s, b) = post(&url, &chat("scenario:support", json!({}))).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["model"], "claude-haiku");
    let (s, b) = post(
        &url,
        &chat("gemini/gemini-2.5-pro", json!({"reasoning_effort": "none"})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let sent = received(&h, "gemini-2.5-pro").pop().unwrap().body;
    assert_eq!(
        sent["generationConfig"]["thinkingConfig"]["thinkingBudget"],
        128
    );
    let (s, _) = post(
        &url,
        &chat("gemini/gemini-2.5-pro", json!({"reasoning_effort": "high"})),
    )
    .await;
    assert_eq!(s, 200);
    let sent = received(&h, "gemini-2.5-pro").pop().unwrap().body;
    assert!(sent["generationConfig"].get("thinkingConfig").is_none());
}

#[actix_web::test]
async fn streaming_sends_chunks_usage_and_done() {
    let h = start();
    let mut res = client()
        .post(format!("{}/v1/chat/completions", h.url))
        .send_json(&chat(
            "openai/gpt-4o",
            json!({"stream": true, "stream_options": {"include_usage": true}}),
        ))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let body = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
    let events: Vec<&str> = body
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .collect();
    assert_eq!(*events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "[gpt-4o] What is 2+2?");
    let finish = chunks
        .iter()
        .find(|c| c["choices"][0]["finish_reason"].is_string())
        .unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert!(usage["usage"]["total_tokens"].as_u64().unwrap() > 0);
}

#[actix_web::test]
async fn errors_use_openais_shape() {
    let h = start();
    let url = format!("{}/v1/chat/completions", h.url);
    let cases = [
        (
            chat("gpt-4o", json!({})),
            404,
            "model_not_found",
            Some("model"),
        ),
        (
            chat("scenario:nope", json!({})),
            404,
            "scenario_not_found",
            None,
        ),
        (
            chat("low", json!({"n": 2})),
            400,
            "invalid_value",
            Some("n"),
        ),
        (
            chat("low", json!({"tools": [{"type": "function"}]})),
            400,
            "invalid_value",
            Some("tools"),
        ),
        (
            chat("low", json!({"tool_choice": "required"})),
            400,
            "invalid_value",
            Some("tool_choice"),
        ),
        (
            chat(
                "low",
                json!({"response_format": {"type": "json_schema", "json_schema": {}}}),
            ),
            400,
            "invalid_value",
            Some("response_format"),
        ),
        (
            json!({"model": "low", "messages": [{"role": "user", "content": "hi"},
                {"role": "tool", "tool_call_id": "call_1", "content": "x"}]}),
            400,
            "invalid_value",
            Some("messages"),
        ),
        (
            chat("low", json!({"tools": [{"type": "web_search"}]})),
            400,
            "invalid_value",
            Some("tools"),
        ),
        (
            chat("low", json!({"reasoning_effort": "extreme"})),
            400,
            "invalid_value",
            Some("reasoning_effort"),
        ),
        (
            chat("low", json!({"frobnicate": 1})),
            400,
            "unknown_parameter",
            Some("messages"),
        ),
        (
            chat("low", json!({"temperature": 9})),
            400,
            "invalid_request",
            None,
        ),
        (
            json!({"model": "low", "messages": []}),
            400,
            "invalid_value",
            Some("messages"),
        ),
        (
            json!({"model": "low", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
            400,
            "invalid_value",
            Some("messages"),
        ),
        (json!({"model": "low"}), 400, "invalid_request", None),
    ];
    for (body, status, code, param) in cases {
        let (s, b) = post(&url, &body).await;
        assert_eq!(s, status, "{body}: {b}");
        let e = &b["error"];
        assert_eq!(e["code"], code, "{body}: {b}");
        assert!(!e["message"].as_str().unwrap().is_empty());
        assert!(e["type"].is_string());
        assert_eq!(
            e["param"],
            param.map_or(Value::Null, |p| json!(p)),
            "{body}"
        );
    }
    let (s, _, text) = post_raw(&url, b"{not json".to_vec()).await;
    assert_eq!(s, 400);
    assert!(text.contains("\"error\""));
}

#[actix_web::test]
async fn the_model_list_names_every_routable_choice() {
    let h = start();
    let (s, b) = get(&format!("{}/v1/models", h.url)).await;
    assert_eq!(s, 200);
    assert_eq!(b["object"], "list");
    let ids: Vec<&str> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    for want in [
        "low",
        "medium",
        "high",
        "scenario:support",
        "openai/gpt-4o",
        "ollama/llama3.2:3b",
        "vllm/qwen3",
    ] {
        assert!(ids.contains(&want), "{want} in {ids:?}");
    }
}
