//! Tool calls and JSON mode through `/v1/chat/completions`, on every provider: what each
//! upstream API receives, what the client gets back (plain and streamed), the Gemini 3
//! thought-signature round trip, and failover of a request that offers tools.

// Test helpers panic on unexpected input by design.
#![allow(clippy::unwrap_used)]

mod common;

use bkvy::fake::{FakeOptions, Fault};
use common::*;
use serde_json::{json, Value};

/// Every provider kind of the test config, as `provider/model`.
const MODELS: [&str; 5] = [
    "openai/gpt-4o-mini",
    "anthropic/claude-haiku",
    "gemini/gemini-2.5-flash",
    "ollama/llama3.2:3b",
    "vllm/qwen3",
];

fn weather() -> Value {
    json!({"type": "function", "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }})
}

fn ask_with_tools(model: &str, messages: Value, extra: Value) -> Value {
    let mut body = json!({"model": model, "messages": messages, "tools": [weather()]});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

/// The `data:` payloads of an SSE body, `[DONE]` included.
fn events(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

async fn stream(url: &str, body: &Value) -> (u16, Vec<String>) {
    let mut res = client().post(url).send_json(body).await.unwrap();
    let status = res.status().as_u16();
    let bytes = res.body().limit(1 << 20).await.unwrap();
    (status, events(&String::from_utf8_lossy(&bytes)))
}

#[actix_web::test]
async fn a_tool_call_round_trip_works_on_every_provider_and_reaches_each_api_in_its_own_shape() {
    let h = start();
    let url = format!("{}/v1/chat/completions", h.url);
    for model in MODELS {
        let messages = json!([{"role": "user", "content": "Paris"}]);
        let (s, first) = post(&url, &ask_with_tools(model, messages.clone(), json!({}))).await;
        assert_eq!(s, 200, "{model}: {first}");
        let choice = &first["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls", "{model}: {first}");
        assert_eq!(choice["message"]["content"], Value::Null, "{model}");
        let call = &choice["message"]["tool_calls"][0];
        assert_eq!(call["type"], "function");
        assert_eq!(call["function"]["name"], "get_weather");
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args, json!({"city": "Paris"}), "{model}");
        let id = call["id"].as_str().unwrap();
        assert!(!id.is_empty(), "{model}");

        let mut history = messages.as_array().unwrap().clone();
        history.push(choice["message"].clone());
        history.push(json!({"role": "tool", "tool_call_id": id, "content": "22 C and sunny"}));
        let (s, second) = post(&url, &ask_with_tools(model, json!(history), json!({}))).await;
        assert_eq!(s, 200, "{model}: {second}");
        assert_eq!(second["choices"][0]["finish_reason"], "stop", "{model}");
        let text = second["choices"][0]["message"]["content"].as_str().unwrap();
        assert!(text.ends_with("22 C and sunny"), "{model}: {text}");
        assert!(second["choices"][0]["message"].get("tool_calls").is_none());
    }

    // What each API received on the second call: the call and its result in its own terms.
    let last = |m: &str| received(&h, m).last().unwrap().body.clone();
    let o = last("gpt-4o-mini");
    assert_eq!(o["tools"][0], weather());
    assert_eq!(
        o["messages"][1]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
    assert_eq!(o["messages"][2]["role"], "tool");
    let a = last("claude-haiku");
    assert_eq!(a["tools"][0]["name"], "get_weather");
    assert_eq!(a["tools"][0]["input_schema"]["required"], json!(["city"]));
    assert_eq!(a["messages"][1]["content"][0]["type"], "tool_use");
    assert_eq!(
        a["messages"][1]["content"][0]["input"],
        json!({"city": "Paris"})
    );
    assert_eq!(a["messages"][2]["role"], "user");
    assert_eq!(a["messages"][2]["content"][0]["type"], "tool_result");
    assert_eq!(
        a["messages"][2]["content"][0]["tool_use_id"],
        a["messages"][1]["content"][0]["id"]
    );
    let g = last("gemini-2.5-flash");
    let decl = &g["tools"][0]["functionDeclarations"][0];
    assert_eq!(decl["name"], "get_weather");
    assert_eq!(decl["parametersJsonSchema"]["type"], "object");
    assert_eq!(g["contents"][1]["role"], "model");
    assert_eq!(
        g["contents"][1]["parts"][0]["functionCall"],
        json!({"name": "get_weather", "args": {"city": "Paris"}})
    );
    assert_eq!(
        g["contents"][2]["parts"][0]["functionResponse"],
        json!({"name": "get_weather", "response": {"output": "22 C and sunny"}})
    );
    let l = last("llama3.2:3b");
    assert_eq!(
        l["messages"][1]["tool_calls"][0]["function"]["arguments"],
        json!({"city": "Paris"})
    );
    assert_eq!(l["messages"][2]["tool_name"], "get_weather");
}

#[actix_web::test]
async fn streamed_tool_calls_arrive_as_openai_tool_call_deltas_on_every_provider() {
    let h = start();
    let url = format!("{}/v1/chat/completions", h.url);
    for model in MODELS {
        let body = ask_with_tools(
            model,
            json!([{"role": "user", "content": "Oslo"}]),
            json!({"stream": true, "stream_options": {"include_usage": true}}),
        );
        let (s, events) = stream(&url, &body).await;
        assert_eq!(s, 200, "{model}");
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{model}");
        let chunks: Vec<Value> = events[..events.len() - 1]
            .iter()
            .map(|e| serde_json::from_str(e).unwrap())
            .collect();
        let mut id = None;
        let mut name = String::new();
        let mut args = String::new();
        let mut finish = None;
        let mut first_piece = true;
        for c in &chunks {
            let Some(choice) = c["choices"].get(0) else {
                continue;
            };
            assert_ne!(choice["finish_reason"], "error", "{model}: {c}");
            for d in choice["delta"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
            {
                assert_eq!(d["index"], 0, "{model}: one call");
                if first_piece {
                    assert!(d["id"].is_string(), "{model}: the first piece has the id");
                    assert_eq!(d["type"], "function");
                    first_piece = false;
                }
                if let Some(i) = d["id"].as_str() {
                    id = Some(i.to_owned());
                }
                name.push_str(d["function"]["name"].as_str().unwrap_or(""));
                args.push_str(d["function"]["arguments"].as_str().unwrap_or(""));
            }
            if let Some(f) = choice["finish_reason"].as_str() {
                finish = Some(f.to_owned());
            }
        }
        assert!(id.is_some(), "{model}");
        assert_eq!(name, "get_weather", "{model}");
        let args: Value = serde_json::from_str(&args).unwrap();
        assert_eq!(args, json!({"city": "Oslo"}), "{model}");
        assert_eq!(finish.as_deref(), Some("tool_calls"), "{model}");
        let usage = chunks.last().unwrap();
        assert!(usage["usage"]["total_tokens"].as_u64().is_some(), "{model}");
    }
}

#[actix_web::test]
async fn gemini_3_thought_signatures_ride_in_the_call_id_and_go_back_unchanged() {
    let providers = PROVIDERS.replace("gemini-2.5-pro", "gemini-3-pro");
    let h = start_with(&providers, ROUTING, FakeOptions::default());
    let url = format!("{}/v1/chat/completions", h.url);
    let model = "gemini/gemini-3-pro";
    let messages = json!([{"role": "user", "content": "Rome"}]);
    let (s, first) = post(&url, &ask_with_tools(model, messages.clone(), json!({}))).await;
    assert_eq!(s, 200, "{first}");
    let message = first["choices"][0]["message"].clone();
    let id = message["tool_calls"][0]["id"].as_str().unwrap().to_owned();
    assert!(
        id.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
        "{id}"
    );
    let mut history = messages.as_array().unwrap().clone();
    history.push(message);
    history.push(json!({"role": "tool", "tool_call_id": id, "content": "18 C"}));
    let (s, second) = post(&url, &ask_with_tools(model, json!(history), json!({}))).await;
    assert_eq!(s, 200, "{second}");
    let sent = received(&h, "gemini-3-pro").last().unwrap().body.clone();
    assert_eq!(
        sent["contents"][1]["parts"][0]["thoughtSignature"], "CiQB+fake/signat+w==",
        "the signature goes back exactly as Gemini sent it"
    );

    // A call made by another model carries no signature: Gemini's documented
    // placeholder keeps the request valid.
    let foreign = json!([
        {"role": "user", "content": "Rome"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_from_elsewhere",
            "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}]},
        {"role": "tool", "tool_call_id": "call_from_elsewhere", "content": "18 C"},
    ]);
    let (s, third) = post(&url, &ask_with_tools(model, foreign, json!({}))).await;
    assert_eq!(s, 200, "{third}");
    let sent = received(&h, "gemini-3-pro").last().unwrap().body.clone();
    assert_eq!(
        sent["contents"][1]["parts"][0]["thoughtSignature"],
        "skip_thought_signature_validator"
    );
}

#[actix_web::test]
async fn tool_choice_reaches_each_api_and_none_gets_text() {
    let h = start();
    let url = format!("{}/v1/chat/completions", h.url);
    let forced = json!({"tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": false});
    let msgs = json!([{"role": "user", "content": "Lima"}]);
    for model in [
        "openai/gpt-4o-mini",
        "anthropic/claude-haiku",
        "gemini/gemini-2.5-flash",
    ] {
        let (s, b) = post(&url, &ask_with_tools(model, msgs.clone(), forced.clone())).await;
        assert_eq!(s, 200, "{model}: {b}");
        assert_eq!(b["choices"][0]["finish_reason"], "tool_calls", "{model}");
    }
    let last = |m: &str| received(&h, m).last().unwrap().body.clone();
    assert_eq!(
        last("gpt-4o-mini")["tool_choice"],
        json!({"type": "function", "function": {"name": "get_weather"}})
    );
    assert_eq!(last("gpt-4o-mini")["parallel_tool_calls"], false);
    assert_eq!(
        last("claude-haiku")["tool_choice"],
        json!({"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true})
    );
    assert_eq!(
        last("gemini-2.5-flash")["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}})
    );

    for model in MODELS {
        let (s, b) = post(
            &url,
            &ask_with_tools(model, msgs.clone(), json!({"tool_choice": "none"})),
        )
        .await;
        assert_eq!(s, 200, "{model}: {b}");
        assert_eq!(b["choices"][0]["finish_reason"], "stop", "{model}: {b}");
        assert!(b["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .ends_with("Lima"));
    }
}

#[actix_web::test]
async fn json_mode_and_json_schemas_reach_every_provider() {
    let h = start();
    let url = format!("{}/v1/chat/completions", h.url);
    let schema = json!({"type": "object", "properties": {"ok": {"type": "boolean"}, "n": {"type": "integer"}},
        "required": ["ok", "n"], "additionalProperties": false});
    for model in MODELS {
        let body = json!({"model": model, "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_object"}});
        let (s, b) = post(&url, &body).await;
        assert_eq!(s, 200, "{model}: {b}");
        let text = b["choices"][0]["message"]["content"].as_str().unwrap();
        let v: Value =
            serde_json::from_str(text).unwrap_or_else(|e| panic!("{model}: {e}: {text}"));
        assert!(v.is_object(), "{model}");

        let body = json!({"model": model, "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "strict": true, "schema": schema}}});
        let (s, b) = post(&url, &body).await;
        assert_eq!(s, 200, "{model}: {b}");
        let text = b["choices"][0]["message"]["content"].as_str().unwrap();
        let v: Value = serde_json::from_str(text).unwrap();
        assert_eq!(v, json!({"ok": true, "n": 1}), "{model}");
    }
    let last = |m: &str| received(&h, m).last().unwrap().body.clone();
    assert_eq!(
        last("gpt-4o-mini")["response_format"]["json_schema"]["schema"],
        schema
    );
    assert_eq!(
        last("claude-haiku")["output_config"],
        json!({"format": {"type": "json_schema", "schema": schema}})
    );
    let g = &last("gemini-2.5-flash")["generationConfig"];
    assert_eq!(g["responseMimeType"], "application/json");
    assert_eq!(g["responseJsonSchema"], schema);
    assert_eq!(last("llama3.2:3b")["format"], schema);
}

#[actix_web::test]
async fn a_request_with_tools_fails_over_like_any_other() {
    let h = start();
    let url = format!("{}/v1/chat/completions", h.url);
    // `low` goes to gemini-2.5-flash first; it fails, the next low model answers.
    h.fake
        .script("gemini-2.5-flash", [Fault::status(500), Fault::status(500)]);
    let body = ask_with_tools(
        "low",
        json!([{"role": "user", "content": "Kyiv"}]),
        json!({}),
    );
    let mut res = client().post(&url).send_json(&body).await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let model = res
        .headers()
        .get("x-bkvy-model")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(model, "gemini-2.5-flash");
    let b: Value = res.json().await.unwrap();
    assert_eq!(b["choices"][0]["finish_reason"], "tool_calls");
    let args = b["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(args).unwrap(),
        json!({"city": "Kyiv"})
    );

    // Streamed: the failure before the first token stays invisible.
    h.fake.script("gemini-2.5-flash", [Fault::status(503)]);
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let (s, events) = stream(&url, &streamed).await;
    assert_eq!(s, 200);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(events.iter().any(|e| e.contains("\"tool_calls\"")));
    assert!(!events.iter().any(|e| e.contains("\"error\"")));
}
