//! Validation of clients.json: client keys, allow lists, limits and budgets.
//!
//! Like the other files, every problem is collected with its JSON path. Key values never
//! appear in a problem, whether they came literally, through `env:` or as a hash.

use serde_json::Value;

use super::check::{index, join, Checker};
use crate::config::clients::{sha256, Allowed, Client, ClientKeys};
use crate::config::Config;

const TOP_FIELDS: &[&str] = &["clients"];
const CLIENT_FIELDS: &[&str] = &[
    "api_key",
    "api_key_sha256",
    "allow",
    "rpm",
    "rpd",
    "daily_budget_usd",
    "monthly_budget_usd",
];

/// Longest client name.
const MAX_NAME_BYTES: usize = 200;
/// Shortest client key given as a value: shorter ones can be guessed.
const MIN_KEY_CHARS: usize = 16;

/// Walks clients.json. `config` is the rest of the configuration when it is valid, for
/// checking that allow-listed scenarios and models exist.
pub(super) fn clients(
    ck: &mut Checker<'_>,
    v: &Value,
    config: Option<&Config>,
) -> Option<ClientKeys> {
    let root = "clients";
    let top = ck.object(root, v)?;
    ck.fields(root, top, TOP_FIELDS);
    let base = join(root, "clients");
    let list = ck.required(root, top, "clients")?;
    let list = ck.object(&base, list)?;
    let mut out = Vec::new();
    let mut ok = true;
    for (name, entry) in list {
        let path = join(&base, name);
        match client(ck, &path, name, entry, config) {
            Some(c) => out.push(c),
            None => ok = false,
        }
    }
    for (i, c) in out.iter().enumerate() {
        if let Some(first) = out[..i].iter().find(|o| o.key_sha256 == c.key_sha256) {
            ck.problem(
                &join(&base, &c.name),
                format!("the same key as client \"{}\"", first.name),
            );
            ok = false;
        }
    }
    ok.then_some(ClientKeys { clients: out })
}

fn client(
    ck: &mut Checker<'_>,
    path: &str,
    name: &str,
    v: &Value,
    config: Option<&Config>,
) -> Option<Client> {
    let before = ck.problems.len();
    if name.is_empty() || name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control) {
        ck.problem(
            path,
            format!("a client name must be 1 to {MAX_NAME_BYTES} bytes without control characters"),
        );
    }
    if name == crate::http::chat::ANONYMOUS {
        ck.problem(
            path,
            "\"anonymous\" is the name of requests without a client",
        );
    }
    let obj = ck.object(path, v)?;
    ck.fields(path, obj, CLIENT_FIELDS);
    let key = key_hash(ck, path, obj);
    let allow = ck.opt(path, obj, "allow", |ck, p, v| allow_list(ck, p, v, config));
    let rpm = ck.opt(path, obj, "rpm", Checker::positive_u32);
    let rpd = ck.opt(path, obj, "rpd", Checker::positive_u32);
    let daily = ck.opt(path, obj, "daily_budget_usd", Checker::non_negative_f64);
    let monthly = ck.opt(path, obj, "monthly_budget_usd", Checker::non_negative_f64);
    if ck.problems.len() > before {
        return None;
    }
    Some(Client {
        name: name.to_owned(),
        key_sha256: key?,
        allow: allow?,
        rpm: rpm?,
        rpd: rpd?,
        daily_budget_usd: daily?,
        monthly_budget_usd: monthly?,
    })
}

/// `api_key` (a value or `env:NAME`) or `api_key_sha256`: exactly one.
fn key_hash(
    ck: &mut Checker<'_>,
    path: &str,
    obj: &serde_json::Map<String, Value>,
) -> Option<[u8; 32]> {
    let given = |f: &str| obj.get(f).is_some_and(|v| !v.is_null());
    match (given("api_key"), given("api_key_sha256")) {
        (true, true) => {
            ck.problem(path, "give either api_key or api_key_sha256, not both");
            None
        }
        (false, false) => {
            ck.problem(path, "api_key or api_key_sha256 is required");
            None
        }
        (true, false) => {
            let p = join(path, "api_key");
            let raw = ck.string(&p, &obj["api_key"])?;
            let value = match raw.strip_prefix("env:") {
                Some(var) => {
                    let valid = !var.is_empty()
                        && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                    if !valid {
                        // The text after `env:` may be a pasted key: never echo it.
                        ck.problem(
                            &p,
                            "\"env:\" must be followed by an environment variable name \
                             (letters, digits and _)",
                        );
                        return None;
                    }
                    let Some(value) = (ck.env)(var) else {
                        ck.problem(&p, format!("environment variable {var} is not set"));
                        return None;
                    };
                    value
                }
                None => raw.to_owned(),
            };
            if value.trim() != value || value.chars().count() < MIN_KEY_CHARS {
                ck.problem(
                    &p,
                    format!(
                        "a client key must be at least {MIN_KEY_CHARS} characters, \
                         without surrounding spaces"
                    ),
                );
                return None;
            }
            Some(sha256(&value))
        }
        (false, true) => {
            let p = join(path, "api_key_sha256");
            let raw = ck.string(&p, &obj["api_key_sha256"])?;
            let hash = parse_hex32(raw);
            if hash.is_none() {
                ck.problem(&p, "expected 64 hexadecimal digits (a SHA-256)");
            }
            hash
        }
    }
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn allow_list(
    ck: &mut Checker<'_>,
    path: &str,
    v: &Value,
    config: Option<&Config>,
) -> Option<Vec<Allowed>> {
    let Some(items) = v.as_array() else {
        ck.problem(path, "expected an array of strings");
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = index(path, i);
        let Some(s) = ck.string(&p, item) else {
            continue;
        };
        let Some(a) = Allowed::parse(s) else {
            ck.problem(
                &p,
                format!(
                    "\"{}\" is not low, medium, high, scenario:<name> or <provider>/<model>",
                    s.escape_debug()
                ),
            );
            continue;
        };
        if let Some(cfg) = config {
            match &a {
                Allowed::Scenario(name) if !cfg.scenarios.contains_key(name) => {
                    ck.problem(&p, format!("no scenario \"{}\"", name.escape_debug()));
                }
                Allowed::Model { provider, model }
                    if cfg
                        .provider(provider)
                        .and_then(|pr| pr.model(model))
                        .is_none() =>
                {
                    ck.problem(
                        &p,
                        format!(
                            "no model \"{}\" of provider \"{}\"",
                            model.escape_debug(),
                            provider.escape_debug()
                        ),
                    );
                }
                _ => {}
            }
        }
        out.push(a);
    }
    Some(out)
}
