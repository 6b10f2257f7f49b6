//! Validation of request values, before anything touches the cluster. Every failure is a 400
//! whose message names the field.

use std::sync::LazyLock;

use regex::Regex;

use super::error::ApiError;
use crate::crd::{E164_PATTERN, HTTP_URL_PATTERN};

static HTTP_URL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(HTTP_URL_PATTERN).expect("valid regex"));
static E164: LazyLock<Regex> = LazyLock::new(|| Regex::new(E164_PATTERN).expect("valid regex"));

/// Longest accepted name or identifier (the CRD's limit).
pub const MAX_NAME_LEN: usize = 1024;
/// Longest accepted image URL (the CRD's limit).
pub const MAX_URL_LEN: usize = 2048;

/// A `channel_id`: a hyphenated UUID, returned lower-cased.
pub fn channel_id(raw: &str) -> Result<String, ApiError> {
    crate::channel_id::parse_channel_id(raw.trim()).ok_or_else(|| {
        ApiError::bad_request(
            "channel_id must be a UUID, e.g. 625c0084-1043-5727-bfd9-40366ef08a64",
        )
    })
}

/// A required, non-blank string field (names, page ids, agent ids).
pub fn required_text(field: &str, value: &str) -> Result<String, ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::bad_request(format!("{field} must not be empty")));
    }
    if value.chars().count() > MAX_NAME_LEN {
        return Err(ApiError::bad_request(format!(
            "{field} must be at most {MAX_NAME_LEN} characters long"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(value.to_owned())
}

/// An optional name: when given, non-blank.
pub fn optional_text(field: &str, value: Option<&str>) -> Result<Option<String>, ApiError> {
    value.map(|v| required_text(field, v)).transpose()
}

/// An optional `image_url`: when given, an absolute http(s) URL.
pub fn image_url(value: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(raw) = value else { return Ok(None) };
    let bad = || ApiError::bad_request("image_url must be an absolute http or https URL");
    if raw.len() > MAX_URL_LEN {
        return Err(ApiError::bad_request(format!(
            "image_url must be at most {MAX_URL_LEN} characters long"
        )));
    }
    // The CRD's pattern forbids whitespace anywhere; url would silently strip it.
    if raw.is_empty() || raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let parsed = url::Url::parse(raw).map_err(|_| bad())?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad());
    }
    // Also what the CRD accepts (url normalizes e.g. `http:///a` into a host).
    if !HTTP_URL.is_match(raw) {
        return Err(bad());
    }
    Ok(Some(raw.to_owned()))
}

/// A Facebook `page_id`: it becomes a Graph API path segment, so letters, digits, `-`, `_`, `.`.
pub fn page_id(raw: &str) -> Result<String, ApiError> {
    let value = required_text("page_id", raw)?;
    if value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && value.chars().any(|c| c.is_ascii_alphanumeric())
    {
        Ok(value)
    } else {
        Err(ApiError::bad_request(
            "page_id must be a Facebook page id (letters, digits, '-', '_', '.')",
        ))
    }
}

/// A `phone_number` in E.164 form.
pub fn phone_number(raw: &str) -> Result<String, ApiError> {
    if E164.is_match(raw) {
        Ok(raw.to_owned())
    } else {
        Err(ApiError::bad_request(
            "phone_number must be an E.164 number without spaces, e.g. +491234567",
        ))
    }
}

/// A Facebook `page_token` or `auth_token`: non-blank, and safe to put into a URL query.
pub fn token(field: &str, raw: &str) -> Result<String, ApiError> {
    if raw.trim().is_empty() {
        return Err(ApiError::bad_request(format!("{field} must not be empty")));
    }
    if raw.len() > 4096 || raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ApiError::bad_request(format!(
            "{field} is not a valid access token"
        )));
    }
    Ok(raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_ids() {
        assert_eq!(
            channel_id("625C0084-1043-5727-BFD9-40366EF08A64").unwrap(),
            "625c0084-1043-5727-bfd9-40366ef08a64"
        );
        let e = channel_id("nope").unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("channel_id"));
    }

    #[test]
    fn image_urls() {
        assert_eq!(
            image_url(Some("http://example.org/plugin_icon.jpeg")).unwrap(),
            Some("http://example.org/plugin_icon.jpeg".into())
        );
        assert!(image_url(Some("https://x.io")).is_ok());
        assert_eq!(image_url(None).unwrap(), None);
        for bad in [
            "",
            "example.org/a.png",
            "/a.png",
            "ftp://example.org/a",
            "javascript:alert(1)",
            "http://",
            "http:///a",
            "http://exa mple.org",
            " http://example.org",
            "mailto:a@b.c",
        ] {
            let e = image_url(Some(bad)).unwrap_err();
            assert!(e.message.contains("image_url"), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn names() {
        assert!(required_text("name", "a").is_ok());
        for bad in ["", "   ", "a\u{0}b"] {
            assert!(required_text("name", bad)
                .unwrap_err()
                .message
                .starts_with("name "));
        }
        assert!(required_text("name", &"x".repeat(1025)).is_err());
    }

    #[test]
    fn page_ids() {
        assert_eq!(page_id("fb-page-id-1").unwrap(), "fb-page-id-1");
        assert!(page_id("1234567890").is_ok());
        for bad in ["", "a/b", "http://x", "a b", "a?b", "..%2f", ".."] {
            assert!(
                page_id(bad).unwrap_err().message.contains("page_id"),
                "{bad}"
            );
        }
    }

    #[test]
    fn phone_numbers() {
        assert!(phone_number("+491234567").is_ok());
        for bad in [
            "+49 123 4567",
            "491234567",
            "+0123",
            "+",
            "+1234567890123456",
            "whatsapp:+491234567",
        ] {
            assert!(
                phone_number(bad)
                    .unwrap_err()
                    .message
                    .contains("phone_number"),
                "{bad}"
            );
        }
    }
}
