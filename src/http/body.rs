//! Reading request bodies with a size limit, a time limit and a share of the in-flight
//! budget every body draws from ([`crate::budget`]), and turning JSON problems into
//! precise 4xx answers: a syntax error is a 400, JSON of the wrong shape is a 422, and
//! both say where. A type error names the field's path and the expected type but never
//! quotes the value sent: the message is answered to the caller and stored in the
//! statistics, and the value may be the caller's prompt.

use actix_web::http::header::CONTENT_LENGTH;
use actix_web::{web, HttpRequest};
use futures::StreamExt;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::WebState;
use crate::budget::{ByteBudget, Reservation};

/// A request body read whole, with its share of the in-flight budget
/// (`MAX_INFLIGHT_REQUEST_BYTES`), given back when the body is dropped.
#[derive(Debug)]
pub struct Body {
    bytes: web::Bytes,
    _held: Reservation,
}

impl std::ops::Deref for Body {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Reads the whole body, refusing more than `limits.max_request_bytes` (413), a body that
/// takes longer than `limits.body_timeout` to arrive (408: a client that announces a body
/// and then stalls would otherwise hold its connection forever), and a body the shared
/// in-flight budget cannot hold beside the bodies being read now (503 with `Retry-After`:
/// many large bodies at once would otherwise hold gigabytes between them).
///
/// The budget counts the memory the body takes, as it arrives: its buffer's capacity,
/// allocated once from `Content-Length` when the request gives one.
pub async fn read_limited(
    req: &HttpRequest,
    payload: web::Payload,
    web: &WebState,
) -> Result<Body, ApiError> {
    require_json(req)?;
    let limits = &web.limits;
    let read = read_all(req, payload, limits.max_request_bytes, &web.body_budget);
    actix_web::rt::time::timeout(limits.body_timeout, read)
        .await
        .unwrap_or(Err(ApiError::BodyTimeout(limits.body_timeout.as_secs())))
}

/// Refuses a body whose `Content-Type` is not `application/json` (parameters such as
/// `charset` allowed), or that has none. A web page on another site can send a "simple"
/// cross-site POST (`text/plain`, a form, or no type at all) without the browser asking
/// bkvy first; `application/json` it can only send after a CORS preflight, which bkvy
/// never grants. So requiring it keeps other sites' pages from spending the keys.
pub fn require_json(req: &HttpRequest) -> Result<(), ApiError> {
    let given = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let essence = given
        .as_deref()
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    if essence.is_some_and(|e| e.eq_ignore_ascii_case("application/json")) {
        return Ok(());
    }
    Err(ApiError::UnsupportedMediaType(match given {
        Some(v) => format!(
            "Content-Type {:?} is not accepted: send the body as application/json",
            v.chars().take(100).collect::<String>()
        ),
        None => "the Content-Type header is missing: send the body as application/json".into(),
    }))
}

/// The refusal of a body the in-flight budget cannot hold.
fn busy(budget: &ByteBudget) -> ApiError {
    ApiError::Unavailable {
        code: "server_busy",
        message: format!(
            "too many request bodies are being read at once (more than {} bytes between \
             them); retry shortly",
            budget.limit()
        ),
        retry_after_secs: Some(1),
    }
}

async fn read_all(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
    budget: &ByteBudget,
) -> Result<Body, ApiError> {
    let announced = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let mut held = budget.reservation();
    let mut buf = web::BytesMut::new();
    if let Some(n) = announced.and_then(|n| usize::try_from(n).ok()) {
        if !held.grow_to(n) {
            return Err(busy(budget));
        }
        buf.reserve(n);
    }
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| match e {
            actix_web::error::PayloadError::Overflow => ApiError::PayloadTooLarge { limit },
            other => ApiError::MalformedJson(format!("could not read the body: {other}")),
        })?;
        if buf.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        // Account for the buffer's growth before it grows.
        if buf.capacity() - buf.len() < chunk.len() {
            let grown = (buf.len() + chunk.len()).max(buf.capacity().saturating_mul(2));
            let grown = grown.min(limit).max(buf.len() + chunk.len());
            if !held.grow_to(grown) {
                return Err(busy(budget));
            }
            buf.reserve(grown - buf.len());
        }
        buf.extend_from_slice(&chunk);
        if !held.grow_to(buf.capacity()) {
            return Err(busy(budget));
        }
    }
    Ok(Body {
        bytes: buf.freeze(),
        _held: held,
    })
}

/// Parses a JSON object into `T`, classifying errors: 400 ([`ApiError::MalformedJson`])
/// exactly when the bytes are not well-formed JSON, 422 ([`ApiError::Invalid`]) for
/// well-formed JSON of the wrong shape (a non-object, wrong types, unknown fields).
///
/// Only a JSON object is accepted for `T`: serde's derived structs would also take a
/// positional array (`[null, "low", ...]`), which is not part of the API.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::MalformedJson("the request body is empty".into()));
    }
    // JSON is UTF-8 (RFC 8259). serde skips the strings of fields it ignores without
    // checking them, so a body with invalid bytes there would otherwise be accepted.
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(ApiError::MalformedJson(format!(
            "the request body is not valid UTF-8 (at byte {})",
            e.valid_up_to()
        )));
    }
    crate::json::from_bytes::<Object<T>>(bytes)
        .map(|o| o.0)
        .map_err(|e| classify(bytes, &e))
}

/// serde_json reports some type errors (e.g. a number where an enum is expected) as
/// syntax errors and some syntax errors (an unclosed `[` where a string is expected) as
/// type errors; whether the bytes are JSON at all decides.
fn classify(bytes: &[u8], e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    // `Value`, unlike `IgnoredAny`, also checks UTF-8 in strings and number ranges.
    if let Err(syntax) = serde_json::from_slice::<serde_json::Value>(bytes) {
        return ApiError::MalformedJson(syntax.to_string());
    }
    match e.classify() {
        Category::Data => ApiError::Invalid(data_error(bytes, e)),
        Category::Syntax | Category::Eof | Category::Io => ApiError::Invalid(format!(
            "a value of the wrong type at line {} column {}",
            e.line(),
            e.column()
        )),
    }
}

/// A type error in well-formed JSON, as the caller is told (and the statistics store):
/// the path of the field (`messages[0].content`), what was wrong and where, but never the
/// value sent. serde quotes a wrong string (`invalid type: string "my private prompt…"`),
/// character or enum variant; that quote is left out.
fn data_error(bytes: &[u8], e: &serde_json::Error) -> String {
    let full = e.to_string();
    let at = format!(" at line {} column {}", e.line(), e.column());
    let message = full.strip_suffix(&at).unwrap_or(&full);
    let message = without_values(message);
    let path = path_at(bytes, e.line(), e.column());
    if path.is_empty() {
        format!("{message}{at}")
    } else {
        format!("{path}: {message}{at}")
    }
}

/// Longest object key kept in a path, in characters.
const MAX_PATH_KEY_CHARS: usize = 64;

/// `message` without the values serde quotes from the input: a `"string"` (written
/// escaped, so its end is the first unescaped quote), a `character 'c'` and an `unknown
/// variant `v``. Field names and the expected values are kept.
fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find(['"', '\'', '`']) {
        let quote = rest[i..].chars().next().unwrap_or('"');
        let before = &rest[..i];
        let value = match quote {
            '"' => true,
            '\'' => before.ends_with("character "),
            _ => before.ends_with("unknown variant "),
        };
        let Some(len) = quoted_len(&rest[i..], quote).filter(|_| value) else {
            let step = i + quote.len_utf8();
            out.push_str(&rest[..step]);
            rest = &rest[step..];
            continue;
        };
        out.push_str(before.trim_end());
        rest = &rest[i + len..];
    }
    out.push_str(rest);
    out
}

/// The length in bytes of the quoted text at the start of `s` (quotes included), where
/// `\` escapes the next character; `None` if it is not closed.
fn quoted_len(s: &str, quote: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        match c {
            _ if escaped => escaped = false,
            '\\' if quote != '`' => escaped = true,
            c if c == quote => return Some(i + c.len_utf8()),
            _ => {}
        }
    }
    None
}

/// Where a position of serde_json's (1-based line, byte column) is in well-formed JSON:
/// the path of the value that ends there (`messages[0].content`), empty at the top.
fn path_at(bytes: &[u8], line: usize, column: usize) -> String {
    enum Frame {
        Object { key: Option<String>, want_key: bool },
        Array(usize),
    }
    let line_start = if line <= 1 {
        0
    } else {
        bytes
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'\n')
            .nth(line - 2)
            .map_or(bytes.len(), |(i, _)| i + 1)
    };
    let end = (line_start + column).min(bytes.len());
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < end {
        match bytes[i] {
            b'{' => stack.push(Frame::Object {
                key: None,
                want_key: true,
            }),
            b'[' => stack.push(Frame::Array(0)),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::Object { key, want_key }) => {
                    *key = None;
                    *want_key = true;
                }
                Some(Frame::Array(index)) => *index += 1,
                None => {}
            },
            b':' => {
                if let Some(Frame::Object { want_key, .. }) = stack.last_mut() {
                    *want_key = false;
                }
            }
            b'"' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                if let Some(Frame::Object {
                    key,
                    want_key: true,
                }) = stack.last_mut()
                {
                    let raw = bytes.get(start..=i).unwrap_or_default();
                    *key = serde_json::from_slice::<String>(raw)
                        .ok()
                        .map(|k| k.chars().take(MAX_PATH_KEY_CHARS).collect());
                }
            }
            _ => {}
        }
        i += 1;
    }
    let mut path = String::new();
    for frame in &stack {
        match frame {
            Frame::Object { key: Some(k), .. } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
            }
            Frame::Object { key: None, .. } => break,
            Frame::Array(index) => path.push_str(&format!("[{index}]")),
        }
    }
    path
}

/// A `T` that may only be written as a JSON object (never as a positional array).
/// Use it with `#[serde(deserialize_with)]` for nested structs; [`parse_json`] uses it
/// for the top level.
#[derive(Debug)]
pub struct Object<T>(pub T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for ObjectVisitor<T> {
            type Value = Object<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Object)
            }
        }
        d.deserialize_map(ObjectVisitor(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        a: u32,
    }

    #[test]
    fn invalid_utf8_is_malformed_even_where_serde_would_not_look() {
        // `x` is a field the type ignores: serde skips its string unchecked.
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Lenient {
            a: u32,
        }
        let e = parse_json::<Lenient>(b"{\"a\": 1, \"x\": \"\x83\"}").unwrap_err();
        assert!(matches!(e, ApiError::MalformedJson(_)), "{e:?}");
        assert!(parse_json::<Lenient>("{\"a\": 1, \"x\": \"h\u{e9}\"}".as_bytes()).is_ok());
    }

    #[test]
    fn syntax_is_400_shape_is_422() {
        assert!(matches!(
            parse_json::<T>(b"{\"a\": "),
            Err(ApiError::MalformedJson(_))
        ));
        assert!(matches!(
            parse_json::<T>(b"  "),
            Err(ApiError::MalformedJson(_))
        ));
        assert!(matches!(
            parse_json::<T>(b"\xff\xfe"),
            Err(ApiError::MalformedJson(_))
        ));
        match parse_json::<T>(b"{\"a\": \"x\"}") {
            Err(ApiError::Invalid(m)) => assert!(m.contains("invalid type"), "{m}"),
            other => panic!("{other:?}"),
        }
        match parse_json::<T>(b"{\"a\": 1, \"b\": 2}") {
            Err(ApiError::Invalid(m)) => assert!(m.contains("unknown field `b`"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Message {
        role: Role,
        content: u32,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Conversation {
        model: String,
        messages: Vec<Message>,
    }

    #[test]
    fn a_type_error_names_the_field_and_never_quotes_the_value() {
        let body = "{\"model\": \"m\",\n \"messages\": [{\"role\": \"user\", \"content\": 1},\n  {\"role\": \"user\", \"content\": \"my \\\"private\\\" prompt\"}]}";
        match parse_json::<Conversation>(body.as_bytes()) {
            Err(ApiError::Invalid(m)) => {
                assert!(!m.contains("private"), "{m}");
                assert!(
                    m.starts_with(
                        "messages[1].content: invalid type: string, expected u32 at line 3"
                    ),
                    "{m}"
                );
            }
            other => panic!("{other:?}"),
        }
        let body =
            b"{\"model\": \"m\", \"messages\": [{\"role\": \"my private role\", \"content\": 1}]}";
        match parse_json::<Conversation>(body) {
            Err(ApiError::Invalid(m)) => {
                assert!(!m.contains("private"), "{m}");
                assert!(
                    m.starts_with("messages[0].role: unknown variant, expected `user`"),
                    "{m}"
                );
            }
            other => panic!("{other:?}"),
        }
        // Missing fields name the object they are missing from.
        match parse_json::<Conversation>(
            b"{\"model\": \"m\", \"messages\": [{\"role\": \"user\"}]}",
        ) {
            Err(ApiError::Invalid(m)) => {
                assert!(m.starts_with("messages[0]: missing field `content`"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn values_are_left_out_of_messages_but_names_kept() {
        assert_eq!(
            without_values("invalid type: string \"a \\\"b\\\" c\", expected u32"),
            "invalid type: string, expected u32"
        );
        assert_eq!(
            without_values("invalid value: character 'x', expected a digit"),
            "invalid value: character, expected a digit"
        );
        assert_eq!(
            without_values("unknown field `b`, expected `a`"),
            "unknown field `b`, expected `a`"
        );
        assert_eq!(without_values("it's \"open"), "it's \"open");
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "lowercase")]
    #[allow(dead_code)]
    enum Role {
        User,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct WithEnum {
        role: Role,
    }

    #[test]
    fn well_formed_json_of_the_wrong_type_is_422() {
        // serde_json calls a number where an enum belongs a syntax error.
        match parse_json::<WithEnum>(b"{\"role\": 1}") {
            Err(ApiError::Invalid(m)) => assert!(m.contains("line 1 column"), "{m}"),
            other => panic!("{other:?}"),
        }
        // ...and an unclosed array where a value is expected a type error.
        assert!(matches!(
            parse_json::<T>(&[b'['; 1000]),
            Err(ApiError::MalformedJson(_))
        ));
        assert!(matches!(
            parse_json::<T>(b"{\"a\": [[[[[[[["),
            Err(ApiError::MalformedJson(_))
        ));
    }

    #[test]
    fn only_objects_not_positional_arrays() {
        assert!(matches!(parse_json::<T>(b"{\"a\": 1}"), Ok(T { a: 1 })));
        match parse_json::<T>(b"[1]") {
            Err(ApiError::Invalid(m)) => assert!(m.contains("a JSON object"), "{m}"),
            other => panic!("{other:?}"),
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Outer {
            #[serde(deserialize_with = "inner")]
            t: T,
        }
        fn inner<'de, D: serde::Deserializer<'de>>(d: D) -> Result<T, D::Error> {
            <Object<T> as serde::Deserialize>::deserialize(d).map(|o| o.0)
        }
        assert!(parse_json::<Outer>(b"{\"t\": {\"a\": 2}}").is_ok());
        match parse_json::<Outer>(b"{\"t\": [2]}") {
            Err(ApiError::Invalid(m)) => assert!(m.contains("line 1 column"), "{m}"),
            other => panic!("{other:?}"),
        }
        // Errors inside keep serde's words and a position.
        match parse_json::<Outer>(b"{\"t\": {\"a\": 1, \"x\": 1}}") {
            Err(ApiError::Invalid(m)) => {
                assert!(
                    m.contains("unknown field `x`") && m.contains("line 1"),
                    "{m}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
