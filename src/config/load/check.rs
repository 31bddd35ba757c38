//! The problem collector and the typed field readers used by the validators.
//!
//! Every reader records a [`ConfigProblem`] with the value's JSON path and returns
//! `None` instead of stopping, so one pass over a file reports everything wrong
//! with it. Optional fields treat JSON `null` as absent, as the original did.

use std::time::Duration;

use serde_json::{Map, Value};

use super::ConfigProblem;

/// Longest provider name, model name or key id, in bytes: each is a label in logs,
/// metrics, CSV rows and state file names.
pub(super) const MAX_NAME_BYTES: usize = 200;

/// Characters of a key shown in a problem path; a longer one ends in `…`.
const MAX_PATH_KEY_CHARS: usize = 64;

/// `path.key`, the notation used in every problem path. A key is shown with its control
/// characters escaped (`\u{7}`) and cut to 64 characters, so a problem prints on one line
/// whatever the file holds.
pub(super) fn join(path: &str, key: &str) -> String {
    let mut out = format!("{path}.");
    for (i, c) in key.chars().enumerate() {
        if i == MAX_PATH_KEY_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// `path[index]`, for array elements.
pub(super) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// Collects problems while the files are walked.
pub(super) struct Checker<'e> {
    /// Everything found so far, in walk order.
    pub problems: Vec<ConfigProblem>,
    /// Resolves `env:NAME` credentials.
    pub env: &'e dyn Fn(&str) -> Option<String>,
}

impl<'e> Checker<'e> {
    pub fn new(env: &'e dyn Fn(&str) -> Option<String>) -> Self {
        Self {
            problems: Vec::new(),
            env,
        }
    }

    /// Records a problem.
    pub fn problem(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(ConfigProblem {
            path: path.to_owned(),
            message: message.into(),
        });
    }

    /// A provider name, model name or key id (`what`): not empty, at most
    /// [`MAX_NAME_BYTES`], no control characters. Records a problem at `path` otherwise.
    pub fn name(&mut self, path: &str, what: &str, name: &str) {
        if name.is_empty() {
            self.problem(path, format!("a {what} must not be empty"));
        } else if name.len() > MAX_NAME_BYTES {
            self.problem(
                path,
                format!(
                    "a {what} must be at most {MAX_NAME_BYTES} bytes (this one has {})",
                    name.len()
                ),
            );
        } else if name.chars().any(char::is_control) {
            self.problem(
                path,
                format!("a {what} must not contain control characters"),
            );
        }
    }

    /// The value as an object, or a problem.
    pub fn object<'v>(&mut self, path: &str, v: &'v Value) -> Option<&'v Map<String, Value>> {
        let obj = v.as_object();
        if obj.is_none() {
            self.problem(path, "expected an object");
        }
        obj
    }

    /// Reports every field of `obj` that is not in `allowed`.
    pub fn fields(&mut self, path: &str, obj: &Map<String, Value>, allowed: &[&str]) {
        for name in obj.keys() {
            if !allowed.contains(&name.as_str()) {
                let expected = allowed.join(", ");
                self.problem(
                    &join(path, name),
                    format!("unknown field \"{name}\"; expected one of {expected}"),
                );
            }
        }
    }

    /// A field that must be present (and not `null`).
    pub fn required<'v>(
        &mut self,
        path: &str,
        obj: &'v Map<String, Value>,
        field: &str,
    ) -> Option<&'v Value> {
        match obj.get(field) {
            Some(v) if !v.is_null() => Some(v),
            _ => {
                self.problem(&join(path, field), "required field is missing");
                None
            }
        }
    }

    /// A required field read with `read`.
    pub fn req<T>(
        &mut self,
        path: &str,
        obj: &Map<String, Value>,
        field: &str,
        read: impl FnOnce(&mut Self, &str, &Value) -> Option<T>,
    ) -> Option<T> {
        let v = self.required(path, obj, field)?;
        read(self, &join(path, field), v)
    }

    /// An optional field read with `read`: `Some(None)` when absent or `null`,
    /// `None` when present but invalid.
    pub fn opt<T>(
        &mut self,
        path: &str,
        obj: &Map<String, Value>,
        field: &str,
        read: impl FnOnce(&mut Self, &str, &Value) -> Option<T>,
    ) -> Option<Option<T>> {
        match obj.get(field) {
            None | Some(Value::Null) => Some(None),
            Some(v) => read(self, &join(path, field), v).map(Some),
        }
    }

    /// An optional field with a default.
    pub fn or<T>(
        &mut self,
        path: &str,
        obj: &Map<String, Value>,
        field: &str,
        default: T,
        read: impl FnOnce(&mut Self, &str, &Value) -> Option<T>,
    ) -> Option<T> {
        self.opt(path, obj, field, read)
            .map(|v| v.unwrap_or(default))
    }

    pub fn string<'v>(&mut self, path: &str, v: &'v Value) -> Option<&'v str> {
        let s = v.as_str();
        if s.is_none() {
            self.problem(path, "expected a string");
        }
        s
    }

    pub fn owned_string(&mut self, path: &str, v: &Value) -> Option<String> {
        self.string(path, v).map(str::to_owned)
    }

    pub fn boolean(&mut self, path: &str, v: &Value) -> Option<bool> {
        let b = v.as_bool();
        if b.is_none() {
            self.problem(path, "expected true or false");
        }
        b
    }

    /// An integer ≥ 1 that fits in `u32` (rate limits; 0 would block forever).
    pub fn positive_u32(&mut self, path: &str, v: &Value) -> Option<u32> {
        let n = v
            .as_u64()
            .filter(|&n| n >= 1)
            .and_then(|n| u32::try_from(n).ok());
        if n.is_none() {
            self.problem(path, "expected a positive integer");
        }
        n
    }

    /// An integer ≥ 0.
    pub fn non_negative_u64(&mut self, path: &str, v: &Value) -> Option<u64> {
        let n = v.as_u64();
        if n.is_none() {
            self.problem(path, "expected a non-negative integer");
        }
        n
    }

    /// Any integer.
    pub fn integer(&mut self, path: &str, v: &Value) -> Option<i64> {
        let n = v.as_i64();
        if n.is_none() {
            self.problem(path, "expected an integer");
        }
        n
    }

    /// An integer in `lo..=hi`.
    pub fn int_in(&mut self, path: &str, v: &Value, lo: u64, hi: u64) -> Option<u64> {
        let n = v.as_u64().filter(|n| (lo..=hi).contains(n));
        if n.is_none() {
            self.problem(path, format!("expected an integer from {lo} to {hi}"));
        }
        n
    }

    /// A finite number ≥ 0 (prices).
    pub fn non_negative_f64(&mut self, path: &str, v: &Value) -> Option<f64> {
        let n = v.as_f64().filter(|n| n.is_finite() && *n >= 0.0);
        if n.is_none() {
            self.problem(path, "expected a number ≥ 0");
        }
        n
    }

    /// A positive number of seconds (timeouts).
    pub fn seconds(&mut self, path: &str, v: &Value) -> Option<Duration> {
        let d = v
            .as_f64()
            .filter(|n| n.is_finite() && *n > 0.0)
            .and_then(|n| Duration::try_from_secs_f64(n).ok())
            .filter(|d| !d.is_zero());
        if d.is_none() {
            self.problem(path, "expected a positive number of seconds");
        }
        d
    }
}
