//! Loading and validating providers.json and routing.json.
//!
//! The files are parsed into `serde_json::Value`s and walked by hand rather than
//! deserialised with serde derive, because serde stops at the first error and
//! loses the location; here every problem is collected with its JSON path, so a
//! broken config is fixed in one round. The typed [`Config`] is built only
//! when nothing is wrong.

mod check;
mod clients;
#[cfg(test)]
mod problem_tests;
mod providers;
mod routing;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::Path;

use serde_json::Value;

use super::Config;
use check::Checker;

/// A problem found in the config: where (a JSON path such as
/// `providers.openai.keys.k1.rate_limits.gpt-4o.rpm`, prefixed `providers` or
/// `routing`, or a file name for unreadable files) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Where the problem is.
    pub path: String,
    /// What is wrong, never containing a credential.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

const PROVIDERS_FILE: &str = "providers.json";
const ROUTING_FILE: &str = "routing.json";
const CLIENTS_FILE: &str = "clients.json";

/// Reads `<dir>/providers.json`, `<dir>/routing.json` and, when it exists,
/// `<dir>/clients.json`, validates everything, and returns every problem found (not just
/// the first). `env:NAME` keys are resolved from the process environment.
pub fn load(dir: &Path) -> Result<Config, Vec<ConfigProblem>> {
    let read = |file: &str| {
        let full = dir.join(file);
        std::fs::read_to_string(&full).map_err(|e| ConfigProblem {
            path: file.to_owned(),
            message: format!("cannot read {}: {e}", full.display()),
        })
    };
    let providers = read(PROVIDERS_FILE);
    let routing = read(ROUTING_FILE);
    // Only a file that is certainly not there means "no client keys": one that cannot be
    // checked (no permission) or a link to nowhere is an error, never an open door.
    let clients = match std::fs::symlink_metadata(dir.join(CLIENTS_FILE)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        _ => Some(read(CLIENTS_FILE)),
    };
    let env = |name: &str| std::env::var(name).ok();
    let config = validate(providers.as_deref(), routing.as_deref(), &env);
    match clients {
        None => config,
        Some(text) => with_clients(config, text.as_deref(), &env),
    }
}

/// Adds the clients of a `clients.json` text to a config from [`load_from_strs`] (tests
/// and embedders; [`load`] reads the file itself). Problems of both are reported together.
pub fn with_clients_str(
    config: Result<Config, Vec<ConfigProblem>>,
    clients_json: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Vec<ConfigProblem>> {
    with_clients(config, Ok(clients_json), env)
}

fn with_clients(
    config: Result<Config, Vec<ConfigProblem>>,
    clients_json: Result<&str, &ConfigProblem>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Vec<ConfigProblem>> {
    let mut ck = Checker::new(env);
    let keys = match clients_json {
        Ok(text) => parse(&mut ck, CLIENTS_FILE, text)
            .and_then(|v| clients::clients(&mut ck, &v, config.as_ref().ok())),
        Err(problem) => {
            ck.problems.push(problem.clone());
            None
        }
    };
    match (config, keys) {
        (Ok(mut config), Some(keys)) if ck.problems.is_empty() => {
            config.clients = Some(std::sync::Arc::new(keys));
            Ok(config)
        }
        (Ok(_), _) => Err(ck.problems),
        (Err(mut problems), _) => {
            problems.extend(ck.problems);
            Err(problems)
        }
    }
}

/// Same as [`load`], from strings; `env` resolves `env:NAME` keys (so tests do
/// not touch the process environment).
pub fn load_from_strs(
    providers_json: &str,
    routing_json: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Vec<ConfigProblem>> {
    validate(Ok(providers_json), Ok(routing_json), env)
}

/// Walks both files; an unreadable file is a problem of its own.
fn validate(
    providers_json: Result<&str, &ConfigProblem>,
    routing_json: Result<&str, &ConfigProblem>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Vec<ConfigProblem>> {
    let mut ck = Checker::new(env);
    let mut parse_or_report = |source: Result<&str, &ConfigProblem>, file: &str| match source {
        Ok(text) => parse(&mut ck, file, text),
        Err(problem) => {
            ck.problems.push(problem.clone());
            None
        }
    };
    let pv = parse_or_report(providers_json, PROVIDERS_FILE);
    let rv = parse_or_report(routing_json, ROUTING_FILE);
    let providers = pv.as_ref().and_then(|v| providers::providers(&mut ck, v));
    let catalogue = pv.as_ref().and_then(routing::Catalogue::from_json);
    let routing = rv
        .as_ref()
        .and_then(|v| routing::routing(&mut ck, v, catalogue.as_ref()));
    match (providers, routing) {
        (Some(providers), Some(routing)) if ck.problems.is_empty() => Ok(Config {
            providers,
            scenarios: routing.scenarios,
            scenarios_raw: routing.scenarios_raw,
            settings: routing.settings,
            clients: None,
        }),
        _ => {
            if ck.problems.is_empty() {
                // Unreachable by construction: every failed read records a problem.
                ck.problem("config", "configuration is incomplete");
            }
            Err(ck.problems)
        }
    }
}

/// Parses one file; a syntax error becomes a problem with line and column.
fn parse(ck: &mut Checker<'_>, file: &str, text: &str) -> Option<Value> {
    match serde_json::from_str(text) {
        Ok(v) => Some(v),
        Err(e) => {
            let full = e.to_string();
            let suffix = format!(" at line {} column {}", e.line(), e.column());
            let what = full.strip_suffix(&suffix).unwrap_or(&full);
            let msg = format!(
                "invalid JSON at line {}, column {}: {what}",
                e.line(),
                e.column()
            );
            ck.problem(file, msg);
            None
        }
    }
}
