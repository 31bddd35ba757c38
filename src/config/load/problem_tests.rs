//! Every kind of problem, reported with its exact path, all at once, and without secrets.

use serde_json::{json, Value};

use super::load_from_strs;
use super::tests::no_env;
use super::ConfigProblem;

fn providers() -> Value {
    json!({"openai": {
        "keys": {"k1": {"api_key": "sk-LITERAL-SECRET",
                        "rate_limits": {"gpt-4o": {"rpm": 10, "rpd": 100}}}},
        "models": {"gpt-4o": {"endpoint": "https://api.openai.com/v1/chat/completions",
                              "cost_per_1k_tokens": 0.0025, "intelligence_tier": "high"}}
    }})
}

fn routing() -> Value {
    json!({"scenarios": {"s": [{"provider": "openai", "model": "gpt-4o", "priority": 1}]}})
}

fn errs_env(p: &Value, r: &Value, env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    match load_from_strs(&p.to_string(), &r.to_string(), env) {
        Ok(_) => panic!("expected problems"),
        Err(v) => v.iter().map(ToString::to_string).collect(),
    }
}

/// The problems after `edit` changed the valid base files.
fn errs(edit: impl FnOnce(&mut Value, &mut Value)) -> Vec<String> {
    let (mut p, mut r) = (providers(), routing());
    edit(&mut p, &mut r);
    errs_env(&p, &r, &no_env)
}

fn one(edit: impl FnOnce(&mut Value, &mut Value), expected: &str) {
    assert_eq!(errs(edit), [expected]);
}

fn remove(v: &mut Value, field: &str) {
    v.as_object_mut().unwrap().remove(field);
}

const KEY: &str = "providers.openai.keys.k1";
const MODEL: &str = "providers.openai.models.gpt-4o";

#[test]
fn base_is_valid() {
    assert!(load_from_strs(&providers().to_string(), &routing().to_string(), &no_env).is_ok());
}

#[test]
fn display_is_path_colon_message() {
    let p = ConfigProblem {
        path: "routing.max_queue".into(),
        message: "bad".into(),
    };
    assert_eq!(p.to_string(), "routing.max_queue: bad");
}

#[test]
fn rate_limit_problems() {
    fn limit(p: &mut Value) -> &mut Value {
        &mut p["openai"]["keys"]["k1"]["rate_limits"]["gpt-4o"]
    }
    let rpm = format!("{KEY}.rate_limits.gpt-4o.rpm: expected a positive integer");
    for bad in [
        json!(0),
        json!(-1),
        json!(1.5),
        json!("10"),
        json!(5_000_000_000u64),
    ] {
        one(|p, _| limit(p)["rpm"] = bad, &rpm);
    }
    one(
        |p, _| limit(p)["max_concurrent"] = json!(0),
        &format!("{KEY}.rate_limits.gpt-4o.max_concurrent: expected a positive integer"),
    );
    one(
        |p, _| remove(limit(p), "rpd"),
        &format!("{KEY}.rate_limits.gpt-4o.rpd: required field is missing"),
    );
    one(
        |p, _| p["openai"]["keys"]["k1"]["rate_limits"]["gpt-5"] = json!({"rpm": 1, "rpd": 1}),
        &format!("{KEY}.rate_limits.gpt-5: model \"gpt-5\" is not in this provider's models"),
    );
    one(
        |p, _| remove(&mut p["openai"]["keys"]["k1"], "rate_limits"),
        &format!("{KEY}.rate_limits: required field is missing"),
    );
}

#[test]
fn api_key_problems() {
    fn key(p: &mut Value) -> &mut Value {
        &mut p["openai"]["keys"]["k1"]
    }
    one(
        |p, _| remove(key(p), "api_key"),
        &format!("{KEY}.api_key: required field is missing"),
    );
    one(
        |p, _| key(p)["api_key"] = json!(""),
        &format!("{KEY}.api_key: must not be empty"),
    );
    one(
        |p, _| key(p)["api_key"] = json!(7),
        &format!("{KEY}.api_key: expected a string"),
    );
    let e = errs(|p, _| key(p)["api_key"] = json!("none_required"));
    assert!(e[0].starts_with(&format!("{KEY}.api_key: \"none_required\" means no key")));
    let not_a_name = format!(
        "{KEY}.api_key: what follows \"env:\" is not an environment variable name \
         (letters, digits and _); it is not shown, as it may be a key"
    );
    one(|p, _| key(p)["api_key"] = json!("env:"), &not_a_name);
    // A key pasted after `env:` is never echoed.
    one(
        |p, _| key(p)["api_key"] = json!("env:sk-abc123-pasted-secret"),
        &not_a_name,
    );
}

#[test]
fn names_with_control_characters_or_over_200_bytes_are_refused_at_their_path() {
    let long = "m".repeat(201);
    let mut p = providers();
    let model = p["openai"]["models"]["gpt-4o"].clone();
    p["openai"]["models"][long.as_str()] = model.clone();
    p["openai"]["models"]["bell\u{7}model"] = model;
    p["openai"]["keys"]["k\nid"] = json!({"api_key": "sk-x", "rate_limits": {}});
    p["bad\u{1b}[31m"] = p["openai"].clone();
    let e = errs_env(&p, &routing(), &no_env);
    let cut = format!("{}…", "m".repeat(64));
    for expected in [
        "providers.openai.keys.k\\u{a}id: a key id must not contain control characters".to_owned(),
        format!("providers.openai.models.{cut}: a model name must be at most 200 bytes (this one has 201)"),
        "providers.openai.models.bell\\u{7}model: a model name must not contain control characters".to_owned(),
        "providers.bad\\u{1b}[31m: a provider name must not contain control characters".to_owned(),
    ] {
        assert!(e.contains(&expected), "{expected} not in {e:#?}");
    }
    // 200 bytes is allowed.
    let mut p = providers();
    let model = p["openai"]["models"]["gpt-4o"].clone();
    p["openai"]["models"]["m".repeat(200).as_str()] = model;
    assert!(load_from_strs(&p.to_string(), &routing().to_string(), &no_env).is_ok());
}

#[test]
fn missing_or_empty_env_var_names_the_variable_and_no_secret() {
    let mut p = providers();
    p["openai"]["keys"]["k1"]["api_key"] = json!("env:GEMINI_KEY_1");
    p["openai"]["keys"]["k2"] = json!({"api_key": "env::OTHER", "rate_limits": {}});
    p["openai"]["keys"]["k3"] = json!({"api_key": "sk-LITERAL-SECRET", "rate_limits": {"x": {}}});
    let env = |n: &str| (n == "OTHER").then(|| "sk-ENV-SECRET".to_owned());
    let e = errs_env(&p, &routing(), &env);
    assert_eq!(
        e[0],
        format!("{KEY}.api_key: environment variable GEMINI_KEY_1 is not set")
    );
    assert_eq!(e.len(), 4, "{e:#?}");
    for line in &e {
        assert!(!line.contains("SECRET"), "{line}");
    }
    let empty = |_: &str| Some(" ".to_owned());
    p["openai"]["keys"]["k2"]["api_key"] = json!("sk-x");
    p["openai"]["keys"]["k3"]["rate_limits"] = json!({});
    assert_eq!(
        errs_env(&p, &routing(), &empty),
        [format!(
            "{KEY}.api_key: environment variable GEMINI_KEY_1 is empty"
        )]
    );
}

#[test]
fn keys_are_optional_for_local_protocols() {
    let p = json!({
        "ollama": {"keys": {"a": {"rate_limits": {}}, "b": {"api_key": "", "rate_limits": {}},
                            "c": {"api_key": "proxy-token", "rate_limits": {}}}},
        "vllm": {"type": "openai_compatible",
                 "keys": {"a": {"api_key": "none_required", "rate_limits": {}},
                          "b": {"api_key": "env:UNSET_BUT_OPTIONAL", "rate_limits": {}}}}
    });
    let e = errs_env(&p, &json!({"scenarios": {}}), &no_env);
    // A named variable must exist even when the key itself is optional.
    assert_eq!(
        e,
        ["providers.vllm.keys.b.api_key: environment variable UNSET_BUT_OPTIONAL is not set"]
    );
    let mut p = p;
    remove(&mut p["vllm"]["keys"], "b");
    let c = load_from_strs(&p.to_string(), r#"{"scenarios": {}}"#, &no_env).unwrap();
    let secrets: Vec<_> = c
        .providers
        .iter()
        .flat_map(|p| &p.keys)
        .map(|k| k.secret.is_some())
        .collect();
    assert_eq!(secrets, [false, false, true, false]);
}

#[test]
fn model_problems() {
    fn model(p: &mut Value) -> &mut Value {
        &mut p["openai"]["models"]["gpt-4o"]
    }
    for bad in ["ftp://x", "https://", "api.openai.com", "https://a b"] {
        one(
            |p, _| model(p)["endpoint"] = json!(bad),
            &format!("{MODEL}.endpoint: expected a URL starting with http:// or https://"),
        );
    }
    one(
        |p, _| remove(model(p), "endpoint"),
        &format!("{MODEL}.endpoint: required field is missing"),
    );
    one(
        |p, _| model(p)["cost_per_1k_tokens"] = json!(-0.1),
        &format!("{MODEL}.cost_per_1k_tokens: expected a number ≥ 0"),
    );
    one(
        |p, _| {
            remove(model(p), "cost_per_1k_tokens");
            model(p)["cost_per_1k_input_tokens"] = json!(0.1);
        },
        &format!("{MODEL}.cost_per_1k_tokens: required unless both cost_per_1k_input_tokens and cost_per_1k_output_tokens are set"),
    );
    one(
        |p, _| model(p)["cost_per_1k_output_tokens"] = json!("1"),
        &format!("{MODEL}.cost_per_1k_output_tokens: expected a number ≥ 0"),
    );
    one(
        |p, _| model(p)["intelligence_tier"] = json!("High"),
        &format!("{MODEL}.intelligence_tier: expected one of low, medium, high"),
    );
    one(
        |p, _| remove(model(p), "intelligence_tier"),
        &format!("{MODEL}.intelligence_tier: required field is missing"),
    );
    one(
        |p, _| model(p)["supports_thinking"] = json!("yes"),
        &format!("{MODEL}.supports_thinking: expected true or false"),
    );
    one(
        |p, _| model(p)["avg_response_time_ms"] = json!(-5),
        &format!("{MODEL}.avg_response_time_ms: expected a non-negative integer"),
    );
    one(
        |p, _| model(p)["version"] = json!(2023),
        &format!("{MODEL}.version: expected a string"),
    );
}

#[test]
fn provider_problems() {
    fn prov(p: &mut Value) -> &mut Value {
        &mut p["openai"]
    }
    one(
        |p, _| prov(p)["rpd_timezone"] = json!("Mars/Olympus"),
        "providers.openai.rpd_timezone: unknown time zone \"Mars/Olympus\"; expected an IANA name like \"UTC\" or \"America/Los_Angeles\"",
    );
    for (field, bad) in [
        ("timeout_seconds", json!(0)),
        ("connect_timeout_seconds", json!(-2)),
        ("timeout_seconds", json!("9")),
    ] {
        one(
            |p, _| prov(p)[field] = bad,
            &format!("providers.openai.{field}: expected a positive number of seconds"),
        );
    }
    one(
        |p, _| prov(p)["type"] = json!("grpc"),
        "providers.openai.type: unknown provider type \"grpc\"; expected one of openai, anthropic, gemini, ollama, openai_compatible",
    );
    one(
        |p, _| p["vllm"] = json!({}),
        "providers.vllm: unknown provider type; set \"type\" to one of openai, anthropic, gemini, ollama, openai_compatible",
    );
    one(|p, _| p["x"] = json!([]), "providers.x: expected an object");
    one(|p, _| *p = json!([]), "providers: expected an object");
    one(
        |p, _| prov(p)["models"] = json!(3),
        "providers.openai.models: expected an object",
    );
}

#[test]
fn unknown_fields_everywhere() {
    let e = errs(|p, r| {
        p["openai"]["region"] = json!("eu");
        p["openai"]["keys"]["k1"]["org"] = json!("o");
        p["openai"]["keys"]["k1"]["rate_limits"]["gpt-4o"]["tpm"] = json!(1);
        p["openai"]["models"]["gpt-4o"]["context"] = json!(1);
        r["fallback"] = json!(true);
        r["scenarios"]["s"][0]["weight"] = json!(1);
    });
    assert_eq!(
        e,
        [
            "providers.openai.region: unknown field \"region\"; expected one of type, keys, models, rpd_timezone, connect_timeout_seconds, timeout_seconds",
            "providers.openai.keys.k1.org: unknown field \"org\"; expected one of api_key, rate_limits",
            "providers.openai.keys.k1.rate_limits.gpt-4o.tpm: unknown field \"tpm\"; expected one of rpm, rpd, max_concurrent",
            "providers.openai.models.gpt-4o.context: unknown field \"context\"; expected one of endpoint, cost_per_1k_tokens, cost_per_1k_input_tokens, cost_per_1k_output_tokens, intelligence_tier, supports_thinking, avg_response_time_ms, version",
            "routing.fallback: unknown field \"fallback\"; expected one of scenarios, request_timeout_seconds, max_attempts_per_candidate, max_queue, circuit_breaker, stream_idle_timeout_seconds, rate_limit_margin_ms, attempt_timeout_multiplier, attempt_timeout_floor_seconds",
            "routing.scenarios.s[0].weight: unknown field \"weight\"; expected one of provider, model, priority",
        ]
    );
}

#[test]
fn routing_problems() {
    one(
        |_, r| r["scenarios"]["s"][0]["provider"] = json!("mistral"),
        "routing.scenarios.s[0].provider: unknown provider \"mistral\"",
    );
    one(
        |_, r| r["scenarios"]["s"][0]["model"] = json!("gpt-5"),
        "routing.scenarios.s[0].model: provider \"openai\" has no model \"gpt-5\"",
    );
    one(
        |_, r| r["scenarios"]["s"][0]["priority"] = json!("1"),
        "routing.scenarios.s[0].priority: expected an integer",
    );
    one(
        |_, r| remove(&mut r["scenarios"]["s"][0], "model"),
        "routing.scenarios.s[0].model: required field is missing",
    );
    one(
        |_, r| r["scenarios"]["s"] = json!([]),
        "routing.scenarios.s: a scenario needs at least one entry",
    );
    one(
        |_, r| r["scenarios"]["s"] = json!({}),
        "routing.scenarios.s: expected an array of {provider, model, priority} entries",
    );
    one(
        |_, r| remove(r, "scenarios"),
        "routing.scenarios: required field is missing",
    );
    for bad in [json!(0), json!(11), json!(2.5)] {
        one(
            |_, r| r["max_attempts_per_candidate"] = bad,
            "routing.max_attempts_per_candidate: expected an integer from 1 to 10",
        );
    }
    one(
        |_, r| r["max_queue"] = json!(100_001),
        "routing.max_queue: expected an integer from 1 to 100000",
    );
    one(
        |_, r| r["request_timeout_seconds"] = json!(0),
        "routing.request_timeout_seconds: expected a positive number of seconds",
    );
}

#[test]
fn several_problems_are_all_reported() {
    let e = errs(|p, r| {
        p["openai"]["keys"]["k1"]["rate_limits"]["gpt-4o"]["rpm"] = json!(0);
        p["openai"]["models"]["gpt-4o"]["endpoint"] = json!("nope");
        p["openai"]["models"]["gpt-4o"]["intelligence_tier"] = json!("max");
        r["scenarios"]["t"] = json!([{"provider": "x", "model": "y", "priority": 1}]);
        r["max_queue"] = json!(0);
    });
    assert_eq!(
        e,
        [
            "providers.openai.keys.k1.rate_limits.gpt-4o.rpm: expected a positive integer",
            "providers.openai.models.gpt-4o.endpoint: expected a URL starting with http:// or https://",
            "providers.openai.models.gpt-4o.intelligence_tier: expected one of low, medium, high",
            "routing.scenarios.t[0].provider: unknown provider \"x\"",
            "routing.max_queue: expected an integer from 1 to 100000",
        ]
    );
}

#[test]
fn json_syntax_errors_have_line_and_column() {
    let r = routing().to_string();
    let e = load_from_strs("{\n  \"openai\": {\n    \"keys\": ,\n  }\n}", &r, &no_env).unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].path, "providers.json");
    assert!(
        e[0].message
            .starts_with("invalid JSON at line 3, column 13: "),
        "{}",
        e[0].message
    );
    // Both files are checked; routing is still validated structurally.
    let e = load_from_strs("{", r#"{"scenarios": [], "x": 1}"#, &no_env).unwrap_err();
    let paths: Vec<_> = e.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["providers.json", "routing.x", "routing.scenarios"]);
}

#[test]
fn circuit_breaker_settings_are_checked() {
    let e = errs(|_, r| {
        r["circuit_breaker"] = json!({"consecutive_failures": 0, "base_backoff_seconds": 10, "max_backoff_seconds": 5, "x": 1});
    });
    assert_eq!(
        e,
        [
            "routing.circuit_breaker.x: unknown field \"x\"; expected one of consecutive_failures, window_seconds, window_failures, base_backoff_seconds, max_backoff_seconds, half_open_trials",
            "routing.circuit_breaker.consecutive_failures: expected an integer from 1 to 1000",
            "routing.circuit_breaker.max_backoff_seconds: must not be smaller than base_backoff_seconds",
        ]
    );
}
