//! Tool calls across APIs: what every adapter needs to move OpenAI-style tool calls
//! (`arguments` as JSON text, an `id` per call) to and from APIs that carry arguments as
//! objects, identify calls differently (Anthropic's id pattern) or not at all (Ollama,
//! Gemini), or need an opaque token sent back with a call (Gemini's thought signature).
//!
//! The signature rides inside the call id handed to the client: clients always send a
//! tool call's id back unchanged with the conversation, while they may drop unknown
//! fields. The id stays within `[A-Za-z0-9_-]`, so every API accepts it.

use serde_json::{Map, Value};

use crate::types::{ChatRequest, Role, ToolCall, ToolDef};

/// Separates the call id proper from an encoded Gemini thought signature.
const SIGNATURE_MARK: &str = "__ts_";

/// A fresh call id, for APIs that do not name their calls.
pub(super) fn new_call_id() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("call_{}", &id[..24])
}

/// The arguments JSON text as an object, for APIs that take objects. Text that is not a
/// JSON object (a client may send anything) becomes an empty object rather than a call
/// the API would refuse.
pub(super) fn arguments_object(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => Value::Object(Map::new()),
    }
}

/// A tool result as an object (Gemini's `functionResponse.response` must be one): a JSON
/// object result as it is, anything else under `output`.
pub(super) fn result_object(content: &str) -> Value {
    match serde_json::from_str::<Value>(content) {
        Ok(v @ Value::Object(_)) => v,
        _ => serde_json::json!({ "output": content }),
    }
}

/// JSON text of an arguments value as an API sent it (an object, or already text).
pub(super) fn arguments_text(args: Option<&Value>) -> String {
    match args {
        None | Some(Value::Null) => "{}".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

/// The name of the function a tool message answers, from the assistant message that
/// made the call (APIs such as Gemini and Ollama name results by function, not by id).
pub(super) fn name_of_call<'a>(req: &'a ChatRequest, call_id: Option<&str>) -> &'a str {
    let Some(call_id) = call_id else { return "" };
    req.messages
        .iter()
        .filter(|m| m.role == Role::Assistant)
        .flat_map(|m| &m.tool_calls)
        .find(|c| c.id == call_id)
        .map_or("", |c| c.name.as_str())
}

/// Whether the conversation carries tool calls or results (then adapters must use their
/// structured message forms instead of plain text turns).
pub(super) fn has_tool_turns(req: &ChatRequest) -> bool {
    req.messages
        .iter()
        .any(|m| m.role == Role::Tool || !m.tool_calls.is_empty())
}

/// A function declaration: `name`, `description` when given, and the argument schema
/// under the API's own field name (when there is one).
pub(super) fn declaration(d: &ToolDef, schema_field: &str) -> Map<String, Value> {
    let mut f = Map::new();
    f.insert("name".into(), Value::String(d.name.clone()));
    if let Some(desc) = &d.description {
        f.insert("description".into(), Value::String(desc.clone()));
    }
    if let Some(p) = &d.parameters {
        f.insert(schema_field.into(), p.clone());
    }
    f
}

/// An id limited to `[A-Za-z0-9_-]` (Anthropic's pattern for tool use ids); other
/// characters become `_`, the same way for a call and for its result.
pub(super) fn safe_id(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A call id carrying a Gemini thought signature (standard base64 → URL-safe alphabet).
pub(super) fn id_with_signature(id: &str, signature: Option<&str>) -> String {
    match signature.filter(|s| !s.is_empty()) {
        None => id.to_owned(),
        Some(sig) => {
            let encoded: String = sig
                .chars()
                .filter(|c| *c != '=')
                .map(|c| match c {
                    '+' => '-',
                    '/' => '_',
                    c => c,
                })
                .collect();
            format!("{id}{SIGNATURE_MARK}{encoded}")
        }
    }
}

/// The thought signature a call id carries, back in standard base64.
pub(super) fn signature_of(id: &str) -> Option<String> {
    let (_, encoded) = id.split_once(SIGNATURE_MARK)?;
    if encoded.is_empty() {
        return None;
    }
    let mut sig: String = encoded
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while sig.len() % 4 != 0 {
        sig.push('=');
    }
    Some(sig)
}

/// The calls of a list of OpenAI-style `tool_calls` objects (OpenAI answers, Ollama's
/// `message.tool_calls`); calls without a function name are skipped.
pub(super) fn calls_from_openai(list: Option<&Value>) -> Vec<ToolCall> {
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let function = c.get("function")?;
            let name = function.get("name").and_then(Value::as_str)?;
            let id = c
                .get("id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map_or_else(new_call_id, str::to_owned);
            Some(ToolCall {
                id,
                name: name.to_owned(),
                arguments: arguments_text(function.get("arguments")),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_round_trip_through_ids() {
        let sig = "Cq8B+/x=";
        let id = id_with_signature("call_1", Some(sig));
        assert!(id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
        assert_eq!(signature_of(&id).as_deref(), Some("Cq8B+/x="));
        assert_eq!(signature_of("call_1"), None);
        assert_eq!(id_with_signature("call_1", None), "call_1");
    }

    #[test]
    fn arguments_and_results_become_objects() {
        assert_eq!(arguments_object(r#"{"a":1}"#), serde_json::json!({"a": 1}));
        assert_eq!(arguments_object("[1]"), serde_json::json!({}));
        assert_eq!(arguments_object("nope"), serde_json::json!({}));
        assert_eq!(result_object("22 C"), serde_json::json!({"output": "22 C"}));
        assert_eq!(result_object(r#"{"t":22}"#), serde_json::json!({"t": 22}));
        assert_eq!(
            arguments_text(Some(&serde_json::json!({"a": 1}))),
            r#"{"a":1}"#
        );
        assert_eq!(arguments_text(Some(&serde_json::json!("{}"))), "{}");
    }

    #[test]
    fn ids_are_made_safe() {
        assert_eq!(safe_id("call.1:x"), "call_1_x");
        assert_eq!(new_call_id().len(), 29);
    }
}
