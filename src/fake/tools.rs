//! What the fake model does with tools and JSON formats, whatever the API.
//!
//! The rule is deterministic so tests can predict it: when tools are offered (and not
//! switched off) and the conversation does not end with a tool result, the model calls
//! the forced function, or else the first one, with arguments made from its schema
//! (every string property gets the last user text, numbers 1, booleans `true`, enums
//! their first value). After a tool result it answers in text, quoting the result. In
//! JSON mode the answer text is a JSON object: `{"answer": ...}`, or one made from the
//! schema the same way.

use serde_json::{json, Map, Value};

/// Whether and which tool the request forces, in API-neutral terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Choice {
    Auto,
    None,
    Any,
    Named(String),
}

/// A tool as offered: its name and argument schema.
#[derive(Debug, Clone)]
pub(crate) struct Offered {
    pub(crate) name: String,
    pub(crate) schema: Option<Value>,
}

/// The call the fake model makes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FakeCall {
    pub(crate) name: String,
    pub(crate) arguments: Value,
}

/// The answer's required JSON shape, if any.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum JsonMode {
    Object,
    Schema(Value),
}

/// Decides whether the model calls a tool (see the module docs).
pub(crate) fn decide(
    offered: &[Offered],
    choice: &Choice,
    last_is_tool_result: bool,
    last_user: &str,
) -> Option<FakeCall> {
    let tool = match choice {
        Choice::None => return None,
        Choice::Auto if last_is_tool_result => return None,
        Choice::Named(name) => offered.iter().find(|t| &t.name == name)?,
        Choice::Auto | Choice::Any => offered.first()?,
    };
    Some(FakeCall {
        name: tool.name.clone(),
        arguments: value_for(tool.schema.as_ref(), last_user),
    })
}

/// A value following `schema`, strings filled with `text`.
pub(crate) fn value_for(schema: Option<&Value>, text: &str) -> Value {
    let Some(schema) = schema else {
        return Value::Object(Map::new());
    };
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    let kind = match schema.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).next().unwrap_or(""),
        _ if schema.get("properties").is_some() => "object",
        _ => "",
    };
    match kind.to_ascii_lowercase().as_str() {
        "string" => json!(text),
        "integer" | "number" => json!(1),
        "boolean" => json!(true),
        "array" => json!([]),
        "null" => Value::Null,
        _ => {
            let mut out = Map::new();
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (name, prop) in props {
                    out.insert(name.clone(), value_for(Some(prop), text));
                }
            }
            Value::Object(out)
        }
    }
}

/// The answer text in JSON mode.
pub(crate) fn json_text(mode: &JsonMode, answer: &str) -> String {
    match mode {
        JsonMode::Object => json!({ "answer": answer }).to_string(),
        JsonMode::Schema(schema) => value_for(Some(schema), answer).to_string(),
    }
}

/// A made-up call id with the API's prefix.
pub(crate) fn call_id(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}{}", &id[..24])
}

/// Whether a name is a valid function name (letters, digits, `_`, `-`; 1 to 64; Gemini
/// also allows `.` and `:`).
pub(crate) fn valid_name(name: &str, extra: &[char]) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || extra.contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_calls_the_forced_or_first_tool_until_a_result_arrives() {
        let offered = vec![
            Offered {
                name: "weather".into(),
                schema: Some(json!({"type": "object", "properties": {
                    "city": {"type": "string"}, "days": {"type": "integer"},
                    "unit": {"type": "string", "enum": ["c", "f"]}}})),
            },
            Offered {
                name: "time".into(),
                schema: None,
            },
        ];
        let call = decide(&offered, &Choice::Auto, false, "Paris").unwrap();
        assert_eq!(call.name, "weather");
        assert_eq!(
            call.arguments,
            json!({"city": "Paris", "days": 1, "unit": "c"})
        );
        assert_eq!(decide(&offered, &Choice::Auto, true, "Paris"), None);
        assert_eq!(decide(&offered, &Choice::None, false, "Paris"), None);
        let named = decide(&offered, &Choice::Named("time".into()), true, "x").unwrap();
        assert_eq!((named.name.as_str(), named.arguments), ("time", json!({})));
        assert_eq!(decide(&[], &Choice::Any, false, "x"), None);
    }

    #[test]
    fn json_answers_are_json() {
        assert_eq!(json_text(&JsonMode::Object, "hi"), r#"{"answer":"hi"}"#);
        let schema = json!({"type": "object", "properties": {"a": {"type": "boolean"}}});
        assert_eq!(json_text(&JsonMode::Schema(schema), "hi"), r#"{"a":true}"#);
    }
}
