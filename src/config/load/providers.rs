//! Validation of providers.json: providers, keys, rate limits and models.
//!
//! The original format must keep loading unchanged, so the protocol still
//! defaults from the provider's name and `"none_required"` still means "no key";
//! everything new (`type`, timeouts, `rpd_timezone`, split prices) is optional.

use std::time::Duration;

use serde_json::{Map, Value};

use super::check::{join, Checker};
use crate::config::{ApiKey, Model, Provider, ProviderKind, RateLimit, Secret};
use crate::types::Tier;

const PROVIDER_FIELDS: &[&str] = &[
    "type",
    "keys",
    "models",
    "rpd_timezone",
    "connect_timeout_seconds",
    "timeout_seconds",
];
const KEY_FIELDS: &[&str] = &["api_key", "rate_limits"];
const LIMIT_FIELDS: &[&str] = &["rpm", "rpd", "max_concurrent"];
const MODEL_FIELDS: &[&str] = &[
    "endpoint",
    "cost_per_1k_tokens",
    "cost_per_1k_input_tokens",
    "cost_per_1k_output_tokens",
    "intelligence_tier",
    "supports_thinking",
    "avg_response_time_ms",
    "version",
];
const KINDS: &str = "openai, anthropic, gemini, ollama, openai_compatible";

/// Seed of the service-time estimate when a model does not state one.
pub(super) const DEFAULT_AVG_RESPONSE_TIME_MS: u64 = 2000;

/// All providers, in file order.
pub(super) fn providers(ck: &mut Checker<'_>, root: &Value) -> Option<Vec<Provider>> {
    let obj = ck.object("providers", root)?;
    let all: Vec<_> = obj.iter().map(|(n, v)| provider(ck, n, v)).collect();
    all.into_iter().collect()
}

fn provider(ck: &mut Checker<'_>, name: &str, v: &Value) -> Option<Provider> {
    let path = join("providers", name);
    ck.name(&path, "provider name", name);
    let obj = ck.object(&path, v)?;
    ck.fields(&path, obj, PROVIDER_FIELDS);
    let kind = kind(ck, &path, name, obj);
    let tz = ck.or(&path, obj, "rpd_timezone", chrono_tz::UTC, timezone);
    let connect = ck.or(
        &path,
        obj,
        "connect_timeout_seconds",
        Duration::from_secs(10),
        Checker::seconds,
    );
    let call = ck.or(
        &path,
        obj,
        "timeout_seconds",
        Duration::from_secs(120),
        Checker::seconds,
    );
    // `None` when `models` is not an object: that is reported once, not per limit.
    let names: Option<Vec<&str>> = match obj.get("models") {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(m) => m
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect()),
    };
    let keys = ck.or(&path, obj, "keys", Vec::new(), |ck, p, v| {
        keys(ck, p, v, kind, names.as_deref())
    });
    let models = ck.or(&path, obj, "models", Vec::new(), models);
    Some(Provider {
        name: name.to_owned(),
        kind: kind?,
        keys: keys?,
        models: models?,
        rpd_timezone: tz?,
        connect_timeout: connect?,
        call_timeout: call?,
    })
}

fn parse_kind(s: &str) -> Option<ProviderKind> {
    match s {
        "openai" => Some(ProviderKind::Openai),
        "anthropic" => Some(ProviderKind::Anthropic),
        "gemini" => Some(ProviderKind::Gemini),
        "ollama" => Some(ProviderKind::Ollama),
        "openai_compatible" => Some(ProviderKind::OpenaiCompatible),
        _ => None,
    }
}

/// `type`, or the protocol the original derived from the provider's name.
fn kind(
    ck: &mut Checker<'_>,
    path: &str,
    name: &str,
    obj: &Map<String, Value>,
) -> Option<ProviderKind> {
    match obj.get("type") {
        None | Some(Value::Null) => {
            let derived = parse_kind(name).filter(|k| *k != ProviderKind::OpenaiCompatible);
            if derived.is_none() {
                ck.problem(
                    path,
                    format!("unknown provider type; set \"type\" to one of {KINDS}"),
                );
            }
            derived
        }
        Some(v) => {
            let tpath = join(path, "type");
            let s = ck.string(&tpath, v)?;
            let k = parse_kind(s);
            if k.is_none() {
                let msg = format!("unknown provider type \"{s}\"; expected one of {KINDS}");
                ck.problem(&tpath, msg);
            }
            k
        }
    }
}

fn timezone(ck: &mut Checker<'_>, path: &str, v: &Value) -> Option<chrono_tz::Tz> {
    let s = ck.string(path, v)?;
    let tz = s.parse::<chrono_tz::Tz>().ok();
    if tz.is_none() {
        let msg = format!("unknown time zone \"{s}\"; expected an IANA name like \"UTC\" or \"America/Los_Angeles\"");
        ck.problem(path, msg);
    }
    tz
}

fn keys(
    ck: &mut Checker<'_>,
    path: &str,
    v: &Value,
    kind: Option<ProviderKind>,
    models: Option<&[&str]>,
) -> Option<Vec<ApiKey>> {
    let obj = ck.object(path, v)?;
    let all: Vec<_> = obj
        .iter()
        .map(|(id, v)| key(ck, &join(path, id), id, v, kind, models))
        .collect();
    all.into_iter().collect()
}

fn key(
    ck: &mut Checker<'_>,
    path: &str,
    id: &str,
    v: &Value,
    kind: Option<ProviderKind>,
    models: Option<&[&str]>,
) -> Option<ApiKey> {
    ck.name(path, "key id", id);
    let obj = ck.object(path, v)?;
    ck.fields(path, obj, KEY_FIELDS);
    let secret = api_key(ck, path, obj, kind);
    let limits = ck.req(path, obj, "rate_limits", |ck, p, v| {
        rate_limits(ck, p, v, models)
    });
    Some(ApiKey {
        id: id.to_owned(),
        secret: secret?,
        rate_limits: limits?,
    })
}

/// `api_key`: a literal, `env:NAME` / `env::NAME`, or absent / `none_required`
/// where the protocol needs no key. Values never appear in problems.
fn api_key(
    ck: &mut Checker<'_>,
    path: &str,
    obj: &Map<String, Value>,
    kind: Option<ProviderKind>,
) -> Option<Option<Secret>> {
    use ProviderKind::{Anthropic, Gemini, Openai};
    let needs_key = matches!(kind, Some(Openai | Anthropic | Gemini));
    let path = join(path, "api_key");
    let raw = match obj.get("api_key") {
        None | Some(Value::Null) if needs_key => {
            ck.problem(&path, "required field is missing");
            return None;
        }
        None | Some(Value::Null) => return Some(None),
        Some(v) => ck.string(&path, v)?,
    };
    let var = raw
        .strip_prefix("env::")
        .or_else(|| raw.strip_prefix("env:"));
    let value = match var {
        Some(var) => {
            let valid =
                !var.is_empty() && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                // Not shown: what follows `env:` may be a key pasted there.
                let msg = "what follows \"env:\" is not an environment variable name \
                           (letters, digits and _); it is not shown, as it may be a key";
                ck.problem(&path, msg);
                return None;
            }
            let Some(value) = (ck.env)(var) else {
                ck.problem(&path, format!("environment variable {var} is not set"));
                return None;
            };
            if value.trim().is_empty() && needs_key {
                ck.problem(&path, format!("environment variable {var} is empty"));
                return None;
            }
            value
        }
        None if raw.trim().is_empty() && needs_key => {
            ck.problem(&path, "must not be empty");
            return None;
        }
        None => raw.to_owned(),
    };
    let value = value.trim();
    if value == "none_required" && needs_key {
        let msg = "\"none_required\" means no key, but this provider type needs one";
        ck.problem(&path, msg);
        return None;
    }
    if value.is_empty() || value == "none_required" {
        return Some(None);
    }
    Some(Some(Secret::new(value)))
}

fn rate_limits(
    ck: &mut Checker<'_>,
    path: &str,
    v: &Value,
    models: Option<&[&str]>,
) -> Option<Vec<(String, RateLimit)>> {
    let obj = ck.object(path, v)?;
    let all: Vec<_> = obj
        .iter()
        .map(|(model, v)| {
            let mpath = join(path, model);
            if models.is_some_and(|m| !m.contains(&model.as_str())) {
                let msg = format!("model \"{model}\" is not in this provider's models");
                ck.problem(&mpath, msg);
            }
            Some((model.clone(), limit(ck, &mpath, v)?))
        })
        .collect();
    all.into_iter().collect()
}

fn limit(ck: &mut Checker<'_>, path: &str, v: &Value) -> Option<RateLimit> {
    let obj = ck.object(path, v)?;
    ck.fields(path, obj, LIMIT_FIELDS);
    let rpm = ck.req(path, obj, "rpm", Checker::positive_u32);
    let rpd = ck.req(path, obj, "rpd", Checker::positive_u32);
    let max_concurrent = ck.opt(path, obj, "max_concurrent", Checker::positive_u32);
    Some(RateLimit {
        rpm: rpm?,
        rpd: rpd?,
        max_concurrent: max_concurrent?,
    })
}

fn models(ck: &mut Checker<'_>, path: &str, v: &Value) -> Option<Vec<Model>> {
    let obj = ck.object(path, v)?;
    let all: Vec<_> = obj
        .iter()
        .map(|(name, v)| model(ck, &join(path, name), name, v))
        .collect();
    all.into_iter().collect()
}

fn model(ck: &mut Checker<'_>, path: &str, name: &str, v: &Value) -> Option<Model> {
    ck.name(path, "model name", name);
    let obj = ck.object(path, v)?;
    ck.fields(path, obj, MODEL_FIELDS);
    let endpoint = ck.req(path, obj, "endpoint", endpoint);
    let blended = ck.opt(path, obj, "cost_per_1k_tokens", Checker::non_negative_f64);
    let input = ck.opt(
        path,
        obj,
        "cost_per_1k_input_tokens",
        Checker::non_negative_f64,
    );
    let output = ck.opt(
        path,
        obj,
        "cost_per_1k_output_tokens",
        Checker::non_negative_f64,
    );
    let prices = match (blended, input, output) {
        (Some(b), Some(i), Some(o)) => prices(ck, path, b, i, o),
        _ => None,
    };
    let tier = ck.req(path, obj, "intelligence_tier", |ck, p, v| {
        let t = Tier::parse(ck.string(p, v)?);
        if t.is_none() {
            ck.problem(p, "expected one of low, medium, high");
        }
        t
    });
    let thinking = ck.or(path, obj, "supports_thinking", false, Checker::boolean);
    let avg = ck.or(
        path,
        obj,
        "avg_response_time_ms",
        DEFAULT_AVG_RESPONSE_TIME_MS,
        Checker::non_negative_u64,
    );
    let version = ck.opt(path, obj, "version", Checker::owned_string);
    let (input, output, blended) = prices?;
    Some(Model {
        name: name.to_owned(),
        endpoint: endpoint?,
        cost_per_1k_input: input,
        cost_per_1k_output: output,
        cost_per_1k_tokens: blended,
        tier: tier?,
        supports_thinking: thinking?,
        avg_response_time_ms: avg?,
        version: version?,
    })
}

/// (input, output, blended): each specific price falls back to the blended one;
/// without a blended price both specific ones are needed and their mean orders by cost.
fn prices(
    ck: &mut Checker<'_>,
    path: &str,
    blended: Option<f64>,
    input: Option<f64>,
    output: Option<f64>,
) -> Option<(f64, f64, f64)> {
    match (blended, input, output) {
        (Some(b), i, o) => Some((i.unwrap_or(b), o.unwrap_or(b), b)),
        (None, Some(i), Some(o)) => Some((i, o, (i + o) / 2.0)),
        (None, _, _) => {
            let msg = "required unless both cost_per_1k_input_tokens and cost_per_1k_output_tokens are set";
            ck.problem(&join(path, "cost_per_1k_tokens"), msg);
            None
        }
    }
}

fn endpoint(ck: &mut Checker<'_>, path: &str, v: &Value) -> Option<String> {
    let s = ck.string(path, v)?;
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    let ok = rest.is_some_and(|r| !r.is_empty()) && !s.contains(char::is_whitespace);
    if !ok {
        ck.problem(path, "expected a URL starting with http:// or https://");
        return None;
    }
    Some(s.to_owned())
}
