//! Vocabulary shared by the HTTP layer, the provider adapters and the fake providers.
//!
//! These are the normalised shapes: every provider's request is built from a
//! [`ChatRequest`], and every provider's answer is turned into a [`ChatResponse`], so
//! routing, statistics and the API never look at a provider's own format.

use serde::{Deserialize, Serialize};

pub use bkvy_actors::{RoutingMethod, Tier};

/// A chat role accepted by every provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions; mapped to each API's own system field.
    System,
    /// The user's turn.
    User,
    /// A previous answer of the model.
    Assistant,
    /// A tool's result, answering one of the assistant's tool calls (OpenAI surface
    /// only; `/llm/*` requests cannot carry it).
    #[serde(skip_deserializing)]
    Tool,
}

impl Role {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::Tool => "tool",
        }
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who said it.
    pub role: Role,
    /// What was said (for a tool message: the tool's result).
    pub content: String,
    /// The tool calls of an assistant message (OpenAI surface only).
    #[serde(skip)]
    pub tool_calls: Vec<ToolCall>,
    /// The call a tool message answers (OpenAI surface only).
    #[serde(skip)]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    /// A text message.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

/// A call of a tool (function) by the model, in OpenAI's terms: `arguments` is the JSON
/// text of the arguments object, exactly as a client gets and sends it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call's id; a tool message answering it carries the same id.
    pub id: String,
    /// The function's name.
    pub name: String,
    /// The arguments, as JSON text.
    pub arguments: String,
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDef {
    /// The function's name.
    pub name: String,
    /// What it does, for the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of its arguments object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<serde_json::Value>,
    /// OpenAI's strict schema adherence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// Whether and which tool the model must call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides.
    Auto,
    /// No tool call.
    None,
    /// At least one tool call.
    Required,
    /// This function.
    Function(String),
}

/// The shape of the answer's text.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum ResponseFormat {
    /// Free text.
    #[default]
    Text,
    /// Any valid JSON object.
    JsonObject,
    /// JSON following a schema.
    JsonSchema {
        /// The schema's name.
        name: String,
        /// What it is for.
        description: Option<String>,
        /// The JSON Schema.
        schema: Option<serde_json::Value>,
        /// OpenAI's strict schema adherence.
        strict: Option<bool>,
    },
}

/// Tools and the answer format of one request (empty for `/llm/*`). Shared behind an
/// `Arc` because every candidate of a request builds its upstream call from it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tooling {
    /// Functions the model may call.
    pub tools: Vec<ToolDef>,
    /// Whether and which tool it must call (absent: the API's default).
    pub tool_choice: Option<ToolChoice>,
    /// Whether several calls may come in one answer (absent: the API's default).
    pub parallel_tool_calls: Option<bool>,
    /// The answer's format.
    pub response_format: ResponseFormat,
}

/// Generation options, in bkvy's own names; each adapter maps them to its API's fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatOptions {
    /// Upper bound on generated tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Top-k sampling (Anthropic, Gemini, Ollama; not sent to OpenAI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Vec<String>>,
    /// `true` switches thinking off, `false` leaves it on; absent lets bkvy decide
    /// (off for a `low`-tier model that supports thinking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_thinking: Option<bool>,
}

/// What one upstream call is asked to do, independent of the provider.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// The conversation, shared by every candidate a request tries.
    pub messages: std::sync::Arc<[ChatMessage]>,
    /// Generation options.
    pub options: ChatOptions,
    /// Whether thinking must be switched off for this call (already decided).
    pub disable_thinking: bool,
    /// Tools and answer format.
    pub tooling: std::sync::Arc<Tooling>,
}

/// Why generation stopped, normalised across providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// Natural end or a stop sequence.
    Stop,
    /// The token limit was reached.
    Length,
    /// A safety or content filter stopped it.
    ContentFilter,
    /// The model asked for a tool.
    ToolCalls,
    /// Anything else the provider reported.
    Other,
}

impl FinishReason {
    /// The snake_case name used in JSON and CSV.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::ContentFilter => "content_filter",
            Self::ToolCalls => "tool_calls",
            Self::Other => "other",
        }
    }
}

/// Token counts as reported by the provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Generated tokens (for Gemini, excluding thinking tokens).
    pub output_tokens: u64,
    /// Thinking/reasoning tokens where the provider reports them separately.
    #[serde(default)]
    pub thinking_tokens: u64,
}

impl Usage {
    /// input + output + thinking.
    pub fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens + self.thinking_tokens
    }
}

/// A provider's answer in bkvy's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    /// The generated text.
    pub content: String,
    /// Token counts.
    pub usage: Usage,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// The provider's own finish reason string, as sent (e.g. `MAX_TOKENS`, `end_turn`).
    pub raw_finish_reason: Option<String>,
    /// The tools the model asked to call, in order.
    pub tool_calls: Vec<ToolCall>,
}
