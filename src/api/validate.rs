//! Validation of request values, before anything touches the cluster, by the rules of
//! [`crate::rules`] (the CRD's). Every failure is a 400 whose message names the field.

use super::error::ApiError;
use crate::rules::{self, MAX_NAME_LEN, MAX_URL_LEN};

/// What [`token`] accepts, as a regex: no white space and no control character.
pub const TOKEN_PATTERN: &str = r"^[^\s\x00-\x1f\x7f-\x9f]+$";
/// Longest access token, in characters.
pub const MAX_TOKEN_LEN: usize = 4096;

/// A `channel_id` field: a hyphenated UUID, returned lower-cased.
pub fn uuid(raw: &str) -> Result<String, ApiError> {
    crate::channel_id::parse_channel_id(raw.trim()).ok_or_else(|| {
        ApiError::bad_request(
            "channel_id must be a UUID, e.g. 625c0084-1043-5727-bfd9-40366ef08a64",
        )
    })
}

/// A required, non-blank string field (names, page ids, agent ids) without invisible or format
/// characters: [`rules::VISIBLE_TEXT_PATTERN`] says the same for the OpenAPI document.
pub fn required_text(field: &str, value: &str) -> Result<String, ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::bad_request(format!("{field} must not be empty")));
    }
    if value.chars().count() > MAX_NAME_LEN {
        return Err(ApiError::bad_request(format!(
            "{field} must be at most {MAX_NAME_LEN} characters long"
        )));
    }
    if !rules::is_visible_text(value) {
        return Err(ApiError::bad_request(format!(
            "{field} {}",
            rules::NAME_MESSAGE
        )));
    }
    Ok(value.to_owned())
}

/// An optional name: when given, non-blank.
pub fn optional_text(field: &str, value: Option<&str>) -> Result<Option<String>, ApiError> {
    value.map(|v| required_text(field, v)).transpose()
}

/// An optional `image_url`: when given, an absolute http(s) URL as the CRD takes it
/// ([`rules::HTTP_URL_PATTERN`], which the OpenAPI document states); empty means no image (what
/// Airy's own connect forms send when none is given).
pub fn image_url(value: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(raw) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if raw.chars().count() > MAX_URL_LEN {
        return Err(ApiError::bad_request(format!(
            "image_url must be at most {MAX_URL_LEN} characters long"
        )));
    }
    if !rules::is_http_url(raw) {
        return Err(ApiError::bad_request(
            "image_url must be an absolute http or https URL, without white space or invisible characters",
        ));
    }
    Ok(Some(raw.to_owned()))
}

/// A Facebook `page_id`: the numeric page id (it becomes a Graph API path segment).
pub fn page_id(raw: &str) -> Result<String, ApiError> {
    numeric_id("page_id", "Facebook page id", raw)
}

/// A numeric Meta id (`field` names it, `what` says what it is): it becomes a Graph API path
/// segment.
pub fn numeric_id(field: &str, what: &str, raw: &str) -> Result<String, ApiError> {
    if rules::is_numeric_id(raw) {
        Ok(raw.to_owned())
    } else {
        Err(ApiError::bad_request(format!(
            "{field} must be a numeric {what}, e.g. 1234567890"
        )))
    }
}

/// A `phone_number` in E.164 form.
pub fn phone_number(raw: &str) -> Result<String, ApiError> {
    if rules::is_e164(raw) {
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
    if raw.chars().count() > MAX_TOKEN_LEN
        || raw.chars().any(|c| c.is_whitespace() || c.is_control())
    {
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
            uuid("625C0084-1043-5727-BFD9-40366EF08A64").unwrap(),
            "625c0084-1043-5727-bfd9-40366ef08a64"
        );
        let e = uuid("nope").unwrap_err();
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
        assert_eq!(image_url(Some("")).unwrap(), None, "empty means no image");
        // What the document's pattern allows is taken (values a schema fuzzer sent).
        for good in [
            "https://C\u{1F600}C",
            "http://\u{BF}\u{D9}\u{DC}",
            "https://Qk;\u{A5}&h\u{CF}V\u{AE}S[2W",
            "https://例え.jp/画像.png",
        ] {
            assert_eq!(image_url(Some(good)).unwrap().as_deref(), Some(good));
        }
        for bad in [
            " ",
            "example.org/a.png",
            "/a.png",
            "ftp://example.org/a",
            "javascript:alert(1)",
            "http://",
            "http:///a",
            "http://exa mple.org",
            " http://example.org",
            "mailto:a@b.c",
            "http://exa\u{200B}mple.org",
            "https://example.org/\u{202E}gnp.exe",
            "https://example.org/a\u{3000}b",
            "https://example.org/\u{85}",
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
        assert_eq!(page_id("1234567890").unwrap(), "1234567890");
        for bad in [
            "",
            "fb-page-id-1",
            "a/b",
            "http://x",
            "1 2",
            "1?b",
            "..%2f",
            "..",
        ] {
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
