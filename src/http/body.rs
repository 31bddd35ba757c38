//! Reading request bodies with a size limit and turning JSON problems into precise 4xx
//! answers: a syntax error is a 400, JSON of the wrong shape is a 422, and both say where.

use actix_web::web;
use futures::StreamExt;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Reads the whole body, refusing more than `limit` bytes.
pub async fn read_limited(mut payload: web::Payload, limit: usize) -> Result<web::Bytes, ApiError> {
    let mut buf = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| match e {
            actix_web::error::PayloadError::Overflow => ApiError::PayloadTooLarge { limit },
            other => ApiError::MalformedJson(format!("could not read the body: {other}")),
        })?;
        if buf.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Parses JSON into `T`, classifying errors.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::MalformedJson("the request body is empty".into()));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => ApiError::Invalid(e.to_string()),
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::MalformedJson(e.to_string())
            }
        }
    })
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
}
