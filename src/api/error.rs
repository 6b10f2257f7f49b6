//! Errors as the API answers them: a status code and `{"message": ...}`, and the body extractor
//! that turns every malformed request into such an error before a handler runs.

use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::DeserializeOwned;

/// The answer to a method an endpoint does not take: 405, naming the ones it does (`allow`).
pub fn method_not_allowed(allow: &'static str) -> Response {
    let mut resp = json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("method not allowed; use {allow}"),
    );
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What was wrong; becomes `{"message": ...}`.
    pub message: String,
}

impl ApiError {
    /// An error with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    /// 404 Not Found.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    /// 503: the Kubernetes API cannot be reached or fails.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_error(self.status, &self.message)
    }
}

/// A JSON response from bytes that already are JSON.
pub fn json_bytes(status: StatusCode, body: Bytes) -> Response {
    let mut resp = Response::new(axum::body::Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// `{"message": ...}` with a status.
pub fn json_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::to_vec(&serde_json::json!({ "message": message }))
        .expect("a string map serializes");
    json_bytes(status, Bytes::from(body))
}

/// A JSON request body of type `T`; a missing body is a 400.
pub struct JsonBody<T>(pub T);

/// A JSON request body of type `T`; a missing body counts as `{}` (`channels.list`).
pub struct OptionalJsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let (is_json, bytes) = read_body(req, state).await?;
        if is_blank(&bytes) {
            return Err(ApiError::bad_request(
                "the request body is missing; expected a JSON object",
            ));
        }
        check_json_content_type(is_json)?;
        parse_json(&bytes).map(JsonBody)
    }
}

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let (is_json, bytes) = read_body(req, state).await?;
        if is_blank(&bytes) {
            return Ok(OptionalJsonBody(T::default()));
        }
        check_json_content_type(is_json)?;
        parse_json(&bytes).map(OptionalJsonBody)
    }
}

fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

fn check_json_content_type(is_json: Option<bool>) -> Result<(), ApiError> {
    match is_json {
        Some(true) => Ok(()),
        Some(false) => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the Content-Type must be application/json",
        )),
        None => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the Content-Type header is missing; expected application/json",
        )),
    }
}

/// Reads the body (bounded by [`MAX_BODY_BYTES`]) and whether the content type is JSON
/// (`None` when there is no Content-Type header).
async fn read_body<S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<(Option<bool>, Bytes), ApiError> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| is_json_content_type(v.to_str().unwrap_or("")));
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > MAX_BODY_BYTES as u64 {
            return Err(too_large());
        }
    }
    let bytes = Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else if super::limits::is_body_timeout(&e) {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive in time (--body-read-timeout-seconds)",
            )
        } else {
            ApiError::new(e.status(), "the request body could not be read")
        }
    })?;
    Ok((is_json, bytes))
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the request body is larger than {} KiB",
            MAX_BODY_BYTES / 1024
        ),
    )
}

/// `application/json`, with parameters, or any `+json` type.
pub fn is_json_content_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((ty, sub)) = essence.split_once('/') else {
        return false;
    };
    ty.eq_ignore_ascii_case("application")
        && (sub.eq_ignore_ascii_case("json") || sub.to_ascii_lowercase().ends_with("+json"))
}

/// Deserializes, naming the offending field in the message.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde would also read a struct from a JSON array (by position); the API takes objects.
    if let Some(first) = bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        if *first != b'{' && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
            return Err(ApiError::bad_request(
                "the request body is invalid: expected a JSON object",
            ));
        }
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let what = match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                "the request body is not valid JSON"
            }
            _ => "the request body is invalid",
        };
        if path.is_empty() || path == "." {
            ApiError::bad_request(format!("{what}: {inner}"))
        } else {
            ApiError::bad_request(format!("{what}: field `{path}`: {inner}"))
        }
    })?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::model::{ChannelIdRequest, UpdateRequest};

    #[test]
    fn json_content_types() {
        assert!(is_json_content_type("application/json"));
        assert!(is_json_content_type("application/json; charset=utf-8"));
        assert!(is_json_content_type("Application/JSON"));
        assert!(is_json_content_type("application/merge-patch+json"));
        assert!(!is_json_content_type("text/plain"));
        assert!(!is_json_content_type("application/x-www-form-urlencoded"));
        assert!(!is_json_content_type(""));
    }

    #[test]
    fn parse_errors_name_the_field() {
        let e = parse_json::<ChannelIdRequest>(br#"{"channel_id": 5}"#).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("channel_id"), "{}", e.message);
        let e = parse_json::<ChannelIdRequest>(br#"{}"#).unwrap_err();
        assert!(
            e.message.contains("missing field `channel_id`"),
            "{}",
            e.message
        );
        let e = parse_json::<UpdateRequest>(br#"{"channel_id":"x","name":[1]}"#).unwrap_err();
        assert!(e.message.contains("name"), "{}", e.message);
        let e = parse_json::<ChannelIdRequest>(b"{\"channel_id\":").unwrap_err();
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
        // A struct is not read from an array.
        let e = parse_json::<ChannelIdRequest>(br#"["625c0084-1043-5727-bfd9-40366ef08a64"]"#)
            .unwrap_err();
        assert!(e.message.contains("JSON object"), "{}", e.message);
        // Unknown fields are ignored.
        let ok = parse_json::<ChannelIdRequest>(br#"{"channel_id":"a","extra":{"x":1}}"#).unwrap();
        assert_eq!(ok.channel_id, "a");
    }
}
