//! Gemini request bodies: `contents`, `systemInstruction` parts and `generationConfig`.
//!
//! Field names are accepted in camelCase or snake_case, as the real (protobuf JSON)
//! API does; unknown ones get Gemini's "Unknown name" 400. `thinkingBudget` follows the
//! real ranges, so a gateway that switches thinking off on a pro model fails loudly.

use serde_json::{Map, Value};

use super::exchange::Reject;
use super::text;

const KNOWN: &[&str] = &[
    "contents",
    "systemInstruction",
    "generationConfig",
    "safetySettings",
    "tools",
    "toolConfig",
    "cachedContent",
    "labels",
];
const CONFIG: &[&str] = &[
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "stopSequences",
    "candidateCount",
    "thinkingConfig",
    "responseMimeType",
    "responseSchema",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
];
const PART: &[&str] = &[
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "thought",
    "thoughtSignature",
    "executableCode",
    "codeExecutionResult",
    "videoMetadata",
];

/// snake_case → camelCase.
fn camel(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The object with camelCase keys; refuses a field given in both spellings.
pub(super) fn camel_keys(
    obj: &Map<String, Value>,
    at: Option<&str>,
) -> Result<Map<String, Value>, Reject> {
    let mut out = Map::new();
    for (k, v) in obj {
        if out.insert(camel(k), v.clone()).is_some() {
            let place = at.map(|a| format!(" at '{a}'")).unwrap_or_default();
            return Err(Reject::bad(format!(
                "Invalid JSON payload received. Duplicate field \"{k}\"{place}."
            )));
        }
    }
    Ok(out)
}

fn unknown(name: &str, at: Option<&str>) -> Reject {
    let place = at.map(|a| format!(" at '{a}'")).unwrap_or_default();
    Reject::bad(format!(
        "Invalid JSON payload received. Unknown name \"{name}\"{place}: Cannot find field."
    ))
}

/// Checks `contents`; returns the input word count and the last user text.
pub(super) fn contents(body: &Map<String, Value>) -> Result<(u64, String), Reject> {
    if let Some(k) = text::unknown_key(body, KNOWN) {
        return Err(unknown(k, None));
    }
    let list = match text::get(body, "contents") {
        Some(Value::Array(l)) if !l.is_empty() => l,
        Some(Value::Array(_)) | None => {
            return Err(Reject::bad(
                "* GenerateContentRequest.contents: contents is not specified",
            ))
        }
        Some(_) => {
            return Err(Reject::bad(
                "Invalid JSON payload received. contents: expected a list.",
            ))
        }
    };
    let mut input = 0;
    let mut last_user = String::new();
    for (idx, c) in list.iter().enumerate() {
        let (words, text, role) = content_words(c, &format!("contents[{idx}]"))?;
        if role != "user" && role != "model" {
            return Err(Reject::bad("Please use a valid role: user, model."));
        }
        input += words;
        if role == "user" {
            last_user = text;
        }
    }
    Ok((input, last_user))
}

/// A `Content` (`{role?, parts:[...]}`): its word count, text and role (`user` when absent).
pub(super) fn content_words(v: &Value, at: &str) -> Result<(u64, String, String), Reject> {
    let obj = v.as_object().ok_or_else(|| {
        Reject::bad(format!(
            "Invalid JSON payload received. {at}: expected an object."
        ))
    })?;
    let obj = camel_keys(obj, Some(at))?;
    if let Some(k) = text::unknown_key(&obj, &["role", "parts"]) {
        return Err(unknown(k, Some(at)));
    }
    let role = match text::get(&obj, "role") {
        None => "user".to_owned(),
        Some(Value::String(r)) if r.is_empty() => "user".to_owned(),
        Some(Value::String(r)) => r.clone(),
        Some(_) => {
            return Err(Reject::bad(format!(
                "Invalid value at '{at}.role': expected a string"
            )))
        }
    };
    let parts = match text::get(&obj, "parts") {
        Some(Value::Array(p)) if !p.is_empty() => p,
        _ => {
            return Err(Reject::bad(format!(
                "* GenerateContentRequest.{at}.parts: contents.parts must not be empty."
            )))
        }
    };
    let mut texts = Vec::new();
    for (pidx, p) in parts.iter().enumerate() {
        let where_ = format!("{at}.parts[{pidx}]");
        let p = p.as_object().ok_or_else(|| {
            Reject::bad(format!(
                "Invalid JSON payload received. {where_}: expected an object."
            ))
        })?;
        let p = camel_keys(p, Some(&where_))?;
        if let Some(k) = text::unknown_key(&p, PART) {
            return Err(unknown(k, Some(&where_)));
        }
        match text::get(&p, "text") {
            Some(Value::String(t)) => texts.push(t.clone()),
            Some(_) => {
                return Err(Reject::bad(format!(
                    "Invalid value at '{where_}.text': expected a string"
                )))
            }
            None => {}
        }
    }
    let joined = texts.join(" ");
    Ok((text::words(&joined), joined, role))
}

/// What `generationConfig` asks for.
#[derive(Debug)]
pub(super) struct Config {
    pub(super) max_tokens: Option<u64>,
    pub(super) stops: Vec<String>,
    pub(super) candidates: i64,
    pub(super) budget: Option<i64>,
    pub(super) include_thoughts: bool,
}

impl Default for Config {
    /// No `generationConfig`: one candidate, no limits, default thinking.
    fn default() -> Self {
        Self {
            max_tokens: None,
            stops: Vec::new(),
            candidates: 1,
            budget: None,
            include_thoughts: false,
        }
    }
}

pub(super) fn config(c: &Map<String, Value>, model: &str) -> Result<Config, Reject> {
    if let Some(k) = text::unknown_key(c, CONFIG) {
        return Err(unknown(k, Some("generation_config")));
    }
    let max = text::int_in(c, "maxOutputTokens", 1, i64::from(i32::MAX))?;
    text::number_in(c, "temperature", 0.0, 2.0)?;
    text::number_in(c, "topP", 0.0, 1.0)?;
    text::int_in(c, "topK", 1, i64::from(i32::MAX))?;
    text::int_in(c, "seed", i64::from(i32::MIN), i64::from(i32::MAX))?;
    text::number_in(c, "presencePenalty", -2.0, 2.0)?;
    text::number_in(c, "frequencyPenalty", -2.0, 2.0)?;
    text::string(c, "responseMimeType")?;
    let stops = text::string_list(c, "stopSequences", 5)?;
    let candidates = text::int_in(c, "candidateCount", 1, 8)?.unwrap_or(1);
    let (budget, include_thoughts) = match text::get(c, "thinkingConfig") {
        None => (None, false),
        Some(Value::Object(t)) => {
            let t = camel_keys(t, Some("generation_config.thinking_config"))?;
            if let Some(k) = text::unknown_key(&t, &["thinkingBudget", "includeThoughts"]) {
                return Err(unknown(k, Some("generation_config.thinking_config")));
            }
            let budget = text::int_in(&t, "thinkingBudget", i64::MIN, i64::MAX)?;
            let include = text::boolean(&t, "includeThoughts")?.unwrap_or(false);
            (budget, include)
        }
        Some(_) => {
            return Err(Reject::bad(
                "generation_config.thinking_config: expected an object",
            ))
        }
    };
    if let Some(b) = budget {
        check_budget(model, b)?;
    }
    Ok(Config {
        max_tokens: max.and_then(|n| u64::try_from(n).ok()),
        stops,
        candidates,
        budget,
        include_thoughts,
    })
}

/// The real API's budget ranges: pro models cannot switch thinking off.
fn check_budget(model: &str, budget: i64) -> Result<(), Reject> {
    if budget == -1 {
        return Ok(());
    }
    if model.to_ascii_lowercase().contains("pro") {
        if budget == 0 {
            return Err(Reject::bad(
                "Budget 0 is invalid. This model only works in thinking mode.",
            ));
        }
        if !(128..=32768).contains(&budget) {
            return Err(Reject::bad(format!(
                "The thinking budget {budget} is invalid. Please choose a value between 128 and 32768."
            )));
        }
    } else if !(0..=24576).contains(&budget) {
        return Err(Reject::bad(format!(
            "The thinking budget {budget} is invalid. Please choose a value between 0 and 24576."
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_becomes_camel_case() {
        assert_eq!(camel("generation_config"), "generationConfig");
        assert_eq!(camel("maxOutputTokens"), "maxOutputTokens");
    }

    #[test]
    fn budgets_follow_the_real_ranges() {
        assert!(check_budget("gemini-2.5-pro", 0).is_err());
        assert!(check_budget("gemini-2.5-pro", 100).is_err());
        assert!(check_budget("gemini-2.5-pro", 128).is_ok());
        assert!(check_budget("gemini-2.5-pro", -1).is_ok());
        assert!(check_budget("gemini-2.5-flash", 0).is_ok());
        assert!(check_budget("gemini-2.5-flash", 24577).is_err());
        assert!(check_budget("gemini-2.5-flash", -2).is_err());
    }
}
