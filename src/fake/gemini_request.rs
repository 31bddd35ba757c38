//! Gemini request bodies: `contents`, `systemInstruction` parts and `generationConfig`.
//!
//! Field names are accepted in camelCase or snake_case, as the real (protobuf JSON)
//! API does; unknown ones get Gemini's "Unknown name" 400. `thinkingBudget` follows the
//! real ranges, so a gateway that switches thinking off on a pro model fails loudly.

use serde_json::{Map, Value};

use super::exchange::Reject;
use super::text;
use super::tools;

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
    "responseJsonSchema",
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
    pub(super) json: Option<tools::JsonMode>,
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
            json: None,
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
    let mime = text::string(c, "responseMimeType")?;
    let schema = text::get(c, "responseJsonSchema").or_else(|| text::get(c, "responseSchema"));
    let json = match (mime, schema) {
        (Some("application/json"), Some(s)) => Some(tools::JsonMode::Schema(s.clone())),
        (Some("application/json"), None) => Some(tools::JsonMode::Object),
        (Some("text/plain") | None, None) => None,
        (_, Some(_)) => {
            return Err(Reject::bad(
                "* GenerateContentRequest.generation_config.response_mime_type: response_mime_type must be application/json when a response schema is set.",
            ))
        }
        (Some(other), None) => {
            return Err(Reject::bad(format!(
                "* GenerateContentRequest.generation_config.response_mime_type: unsupported mime type {other}"
            )))
        }
    };
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
        json,
    })
}

/// `tools`: `functionDeclarations` (schema as `parameters` or `parametersJsonSchema`).
pub(super) fn tools(body: &Map<String, Value>) -> Result<Vec<tools::Offered>, Reject> {
    let list = match text::get(body, "tools") {
        None => return Ok(Vec::new()),
        Some(Value::Array(l)) => l,
        Some(_) => {
            return Err(Reject::bad(
                "Invalid JSON payload received. tools: expected a list.",
            ))
        }
    };
    let mut out = Vec::new();
    for (i, t) in list.iter().enumerate() {
        let at = format!("tools[{i}]");
        let t = camel_keys(
            t.as_object()
                .ok_or_else(|| Reject::bad(format!("{at}: expected an object")))?,
            Some(&at),
        )?;
        if let Some(k) = text::unknown_key(
            &t,
            &[
                "functionDeclarations",
                "googleSearch",
                "codeExecution",
                "urlContext",
            ],
        ) {
            return Err(unknown(k, Some(&at)));
        }
        for (j, f) in text::get(&t, "functionDeclarations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let here = format!("{at}.function_declarations[{j}]");
            let f = camel_keys(
                f.as_object()
                    .ok_or_else(|| Reject::bad(format!("{here}: expected an object")))?,
                Some(&here),
            )?;
            if let Some(k) = text::unknown_key(
                &f,
                &[
                    "name",
                    "description",
                    "parameters",
                    "parametersJsonSchema",
                    "response",
                    "responseJsonSchema",
                    "behavior",
                ],
            ) {
                return Err(unknown(k, Some(&here)));
            }
            let name = text::get(&f, "name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !tools::valid_name(name, &['.', ':']) {
                return Err(Reject::bad(format!("* GenerateContentRequest.{here}.name: Invalid function name. Must start with a letter or an underscore. Must be alphameric (a-z, A-Z, 0-9), underscores (_), dots (.), colons (:) or dashes (-), with a maximum length of 64.")));
            }
            if text::get(&f, "parameters").is_some()
                && text::get(&f, "parametersJsonSchema").is_some()
            {
                return Err(Reject::bad(format!("* GenerateContentRequest.{here}: parameters and parameters_json_schema cannot both be set.")));
            }
            let schema = text::get(&f, "parametersJsonSchema")
                .or_else(|| text::get(&f, "parameters"))
                .cloned();
            out.push(tools::Offered {
                name: name.to_owned(),
                schema,
            });
        }
    }
    Ok(out)
}

/// `toolConfig.functionCallingConfig`: `AUTO`, `ANY` (optionally one allowed name), `NONE`.
pub(super) fn tool_config(
    body: &Map<String, Value>,
    offered: &[tools::Offered],
) -> Result<tools::Choice, Reject> {
    let Some(c) = text::get(body, "toolConfig").and_then(Value::as_object) else {
        return Ok(tools::Choice::Auto);
    };
    let c = camel_keys(c, Some("tool_config"))?;
    let Some(f) = text::get(&c, "functionCallingConfig").and_then(Value::as_object) else {
        return Ok(tools::Choice::Auto);
    };
    let f = camel_keys(f, Some("tool_config.function_calling_config"))?;
    let allowed: Vec<&str> = text::get(&f, "allowedFunctionNames")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    match text::get(&f, "mode").and_then(Value::as_str).unwrap_or("AUTO") {
        "AUTO" | "MODE_UNSPECIFIED" if allowed.is_empty() => Ok(tools::Choice::Auto),
        "NONE" if allowed.is_empty() => Ok(tools::Choice::None),
        "ANY" => match allowed.as_slice() {
            [] => Ok(tools::Choice::Any),
            [one, ..] if offered.iter().any(|t| t.name == *one) => Ok(tools::Choice::Named((*one).to_owned())),
            _ => Err(Reject::bad("* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: unknown function name.")),
        },
        _ => Err(Reject::bad("* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: only allowed when mode is ANY.")),
    }
}

/// Function calls (in `model` turns) and responses (in `user` turns, answering the
/// calls of the turn before, by name and count). Gemini 3 models refuse a model turn
/// whose first function call has no `thoughtSignature`. Returns whether the
/// conversation ends with function responses, and their text.
pub(super) fn function_turns(
    body: &Map<String, Value>,
    model: &str,
) -> Result<Option<String>, Reject> {
    let list = text::get(body, "contents")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let signed = model.to_ascii_lowercase().contains("gemini-3");
    let mut pending: Vec<String> = Vec::new();
    let mut result = None;
    for (idx, c) in list.iter().enumerate() {
        let role = c.get("role").and_then(Value::as_str).unwrap_or("user");
        let parts = c
            .get("parts")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut calls = Vec::new();
        let mut responses = Vec::new();
        for (p, part) in parts.iter().enumerate() {
            let part = part.as_object().cloned().unwrap_or_default();
            let part = camel_keys(&part, None)?;
            if let Some(call) = text::get(&part, "functionCall") {
                if role != "model" {
                    return Err(Reject::bad(format!("* GenerateContentRequest.contents[{idx}].parts[{p}]: function calls are only allowed in model turns.")));
                }
                let name = call.get("name").and_then(Value::as_str).unwrap_or_default();
                if name.is_empty() || call.get("args").is_some_and(|a| !a.is_object()) {
                    return Err(Reject::bad(format!("* GenerateContentRequest.contents[{idx}].parts[{p}].function_call: needs a name and object args.")));
                }
                if signed && calls.is_empty() && text::get(&part, "thoughtSignature").is_none() {
                    return Err(Reject::bad(format!("Function call is missing a thought_signature in functionCall parts. This is required for tools to work correctly, and missing thought_signature may lead to degraded model performance. Additional data, function call `default_api:{name}` , position {}. Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details.", idx + 1)));
                }
                calls.push(name.to_owned());
            }
            if let Some(resp) = text::get(&part, "functionResponse") {
                if role == "model" {
                    return Err(Reject::bad(format!("* GenerateContentRequest.contents[{idx}].parts[{p}]: function responses are not allowed in model turns.")));
                }
                let name = resp.get("name").and_then(Value::as_str).unwrap_or_default();
                if !resp.get("response").is_some_and(Value::is_object) {
                    return Err(Reject::bad(format!("* GenerateContentRequest.contents[{idx}].parts[{p}].function_response.response: expected an object.")));
                }
                let r = &resp["response"];
                let text = r
                    .get("output")
                    .and_then(Value::as_str)
                    .map_or_else(|| r.to_string(), str::to_owned);
                responses.push((name.to_owned(), text));
            }
        }
        if !pending.is_empty() || !responses.is_empty() {
            let mut names: Vec<&str> = responses.iter().map(|(n, _)| n.as_str()).collect();
            let mut expected: Vec<&str> = pending.iter().map(String::as_str).collect();
            names.sort_unstable();
            expected.sort_unstable();
            if role != "model" && names != expected {
                return Err(Reject::bad("Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn."));
            }
        }
        if role != "model" {
            result = (!responses.is_empty()).then(|| {
                responses
                    .iter()
                    .map(|(_, r)| r.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            });
        }
        pending = calls;
    }
    Ok(result)
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
