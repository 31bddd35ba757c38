//! The deterministic answer and small JSON field checks shared by the API modules.
//!
//! The answer is `"[<model>] <last user text>"` so a test can tell which model served
//! a call and that the prompt arrived intact. Tokens are whitespace-separated words:
//! crude, but predictable enough for tests to assert exact usage numbers.

use serde_json::{Map, Value};

/// Thinking tokens reported whenever thinking is on (a small, fixed, nonzero count).
pub(crate) const THINKING_TOKENS: u64 = 8;

/// The thought text of APIs that return one; exactly [`THINKING_TOKENS`] words.
pub(crate) const THOUGHT: &str = "the fake upstream thought about this very briefly";

/// Counts whitespace-separated words.
pub(crate) fn words(s: &str) -> u64 {
    u64::try_from(s.split_whitespace().count()).unwrap_or(u64::MAX)
}

/// Why the fake's generation stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Finish {
    /// The whole answer was produced.
    Stop,
    /// Cut at the token limit.
    Length,
    /// Cut before this stop sequence.
    Sequence(String),
}

/// A generated answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) text: String,
    pub(crate) finish: Finish,
}

impl Answer {
    /// The deterministic answer: cut before the earliest stop sequence, then to
    /// `max_tokens` words (which makes the finish reason `Length`).
    pub(crate) fn new(
        model: &str,
        last_user: &str,
        max_tokens: Option<u64>,
        stops: &[String],
    ) -> Self {
        let mut text = format!("[{model}] {last_user}");
        let mut finish = Finish::Stop;
        let earliest = stops
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| text.find(s.as_str()).map(|at| (at, s)))
            .min_by_key(|(at, _)| *at);
        if let Some((at, stop)) = earliest {
            finish = Finish::Sequence(stop.clone());
            text.truncate(at);
        }
        if let Some(max) = max_tokens {
            if words(&text) > max {
                let keep = usize::try_from(max).unwrap_or(usize::MAX);
                text = text
                    .split_whitespace()
                    .take(keep)
                    .collect::<Vec<_>>()
                    .join(" ");
                finish = Finish::Length;
            }
        }
        Self { text, finish }
    }

    /// An empty answer (for [`crate::fake::Fault::EmptyContent`]).
    pub(crate) fn empty() -> Self {
        Self {
            text: String::new(),
            finish: Finish::Stop,
        }
    }

    /// Output tokens of the answer.
    pub(crate) fn tokens(&self) -> u64 {
        words(&self.text)
    }
}

/// A field's value, treating JSON `null` as absent (as the real APIs do).
pub(crate) fn get<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

/// The first key not in `known`.
pub(crate) fn unknown_key<'a>(obj: &'a Map<String, Value>, known: &[&str]) -> Option<&'a str> {
    obj.keys().map(String::as_str).find(|k| !known.contains(k))
}

/// An optional number within `lo..=hi`.
pub(crate) fn number_in(
    obj: &Map<String, Value>,
    key: &str,
    lo: f64,
    hi: f64,
) -> Result<Option<f64>, String> {
    match get(obj, key) {
        None => Ok(None),
        Some(v) => match v.as_f64() {
            Some(n) if (lo..=hi).contains(&n) => Ok(Some(n)),
            Some(n) => Err(format!("`{key}` must be between {lo} and {hi}, got {n}")),
            None => Err(format!("`{key}` must be a number, got {v}")),
        },
    }
}

/// An optional integer within `lo..=hi`.
pub(crate) fn int_in(
    obj: &Map<String, Value>,
    key: &str,
    lo: i64,
    hi: i64,
) -> Result<Option<i64>, String> {
    match get(obj, key) {
        None => Ok(None),
        Some(v) => match v.as_i64() {
            Some(n) if (lo..=hi).contains(&n) => Ok(Some(n)),
            Some(n) => Err(format!("`{key}` must be between {lo} and {hi}, got {n}")),
            None => Err(format!("`{key}` must be an integer, got {v}")),
        },
    }
}

/// An optional boolean.
pub(crate) fn boolean(obj: &Map<String, Value>, key: &str) -> Result<Option<bool>, String> {
    match get(obj, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(format!("`{key}` must be a boolean, got {v}")),
    }
}

/// An optional string.
pub(crate) fn string<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a str>, String> {
    match get(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(format!("`{key}` must be a string, got {v}")),
    }
}

/// An optional list of at most `max` strings.
pub(crate) fn string_list(
    obj: &Map<String, Value>,
    key: &str,
    max: usize,
) -> Result<Vec<String>, String> {
    let Some(v) = get(obj, key) else {
        return Ok(Vec::new());
    };
    let list = v
        .as_array()
        .and_then(|a| {
            a.iter()
                .map(|s| s.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
        })
        .ok_or_else(|| format!("`{key}` must be a list of strings, got {v}"))?;
    if list.len() > max {
        return Err(format!(
            "`{key}` may hold at most {max} entries, got {}",
            list.len()
        ));
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_is_model_and_last_user_text() {
        let a = Answer::new("m1", "hello there", None, &[]);
        assert_eq!(a.text, "[m1] hello there");
        assert_eq!(a.finish, Finish::Stop);
        assert_eq!(a.tokens(), 3);
    }

    #[test]
    fn answer_is_cut_to_max_tokens() {
        let a = Answer::new("m1", "one two  three four", Some(3), &[]);
        assert_eq!(a.text, "[m1] one two");
        assert_eq!(a.finish, Finish::Length);
        let exact = Answer::new("m1", "one two", Some(3), &[]);
        assert_eq!(exact.finish, Finish::Stop);
    }

    #[test]
    fn answer_stops_at_earliest_stop_sequence() {
        let stops = vec!["four".to_owned(), "two".to_owned()];
        let a = Answer::new("m", "one two three four", None, &stops);
        assert_eq!(a.text, "[m] one ");
        assert_eq!(a.finish, Finish::Sequence("two".into()));
    }

    #[test]
    fn thought_has_the_reported_token_count() {
        assert_eq!(words(THOUGHT), THINKING_TOKENS);
    }

    #[test]
    fn field_checks() {
        let v = serde_json::json!({"t": 3, "n": null, "s": ["a", "b"], "x": "y"});
        let o = v.as_object().unwrap();
        assert!(number_in(o, "t", 0.0, 2.0).is_err());
        assert_eq!(number_in(o, "n", 0.0, 2.0), Ok(None));
        assert_eq!(string_list(o, "s", 4).unwrap().len(), 2);
        assert!(string_list(o, "s", 1).is_err());
        assert!(string_list(o, "x", 4).is_err());
        assert_eq!(unknown_key(o, &["t", "n", "s"]), Some("x"));
    }
}
