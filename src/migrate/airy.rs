//! Reading a running Airy Core's channels: `POST <url>/channels.list` with its API token, and the
//! list shapes its releases answer.
//!
//! | Airy Core release | one channel of `{"data": [...]}` |
//! |---|---|
//! | up to 0.8 | `id`, `source`, `source_channel_id`, `name`, `image_url` (connected channels only) |
//! | 0.9 | `id`, `source`, `source_channel_id`, `metadata: {name, image_url}` |
//! | 0.10 and later | the same and `connected` |
//! | 0.37 and later | Facebook and Instagram channels' `metadata` also hold `page_token` (the token given at connect) and `page_id`; Instagram's `account_id` |
//!
//! The chat plugin is `chat_plugin` up to 0.12 and `chatplugin` from 0.13. Unknown fields are
//! ignored; a channel that cannot be read is reported by its position, the rest are read.
//! Airy Core takes the token as `Authorization: Bearer <token>` and refuses a wrong one with 403
//! (401 where no token is configured to be accepted); an installation with a login page
//! redirects to it.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::secret::SecretString;

/// One channel as Airy Core lists it, whatever the release.
#[derive(Debug, Clone, PartialEq)]
pub struct AiryChannel {
    /// The channel id, as Airy Core answers it.
    pub id: String,
    /// The source, as Airy Core spells it (`chat_plugin` or `chatplugin` for the chat plugin).
    pub source: String,
    /// The channel's id at its source.
    pub source_channel_id: String,
    /// The name, when listed.
    pub name: Option<String>,
    /// The image, when listed.
    pub image_url: Option<String>,
    /// Whether Airy Core has it connected (releases before 0.10 list connected channels only).
    pub connected: bool,
    /// The token given at connect (`metadata.page_token`), when listed.
    pub page_token: Option<SecretString>,
    /// The Facebook page linked to an Instagram account (`metadata.page_id`), when listed.
    pub page_id: Option<String>,
}

/// A channel of the list that is not one (its position in the list, from 1, and why).
#[derive(Debug, Clone, PartialEq)]
pub struct Unreadable {
    /// Position in Airy Core's list, from 1.
    pub position: usize,
    /// Why it could not be read.
    pub why: String,
}

/// Why Airy Core's channels could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No answer: refused connection, DNS, TLS, timeout.
    #[error("cannot reach Airy Core at {url}: {cause}")]
    Unreachable { url: String, cause: String },
    /// 401, 403 or a redirect to a login page.
    #[error("Airy Core at {url} refused the token ({answer}); check --token, --token-file or AIRY_TOKEN")]
    Refused { url: String, answer: String },
    /// Any other answer than 200.
    #[error(
        "Airy Core at {url} answered HTTP {status} to channels.list; is --from the URL of its API?"
    )]
    Status { url: String, status: u16 },
    /// A 200 whose body is not `{"data": [...]}`.
    #[error("Airy Core at {url} answered channels.list with something that is not a channel list: {why}")]
    NotAList { url: String, why: String },
}

/// The URL `channels.list` is POSTed to, for an API base URL.
pub fn list_url(base: &url::Url) -> String {
    format!("{}/channels.list", base.as_str().trim_end_matches('/'))
}

/// Reads Airy Core's channels: the ones read, and the entries that are not channels.
pub async fn list(
    base: &url::Url,
    token: &SecretString,
    timeout: Duration,
) -> Result<(Vec<AiryChannel>, Vec<Unreadable>), FetchError> {
    let url = list_url(base);
    let client = reqwest::Client::builder()
        .timeout(timeout)
        // A redirect is an answer: a login page, or the wrong URL.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| FetchError::Unreachable {
            url: url.clone(),
            cause: e.to_string(),
        })?;
    let response = client
        .post(&url)
        .bearer_auth(token.expose())
        .header(reqwest::header::ACCEPT, "application/json")
        .json(&serde_json::json!({}))
        .send()
        .await
        .map_err(|e| FetchError::Unreachable {
            url: url.clone(),
            cause: cause_chain(&e),
        })?;
    let status = response.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(FetchError::Refused {
            url,
            answer: format!("HTTP {}", status.as_u16()),
        });
    }
    if status.is_redirection() {
        let to = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .unwrap_or_default();
        if to.contains("login") {
            return Err(FetchError::Refused {
                url,
                answer: format!("HTTP {}: a redirect to its login page", status.as_u16()),
            });
        }
    }
    if status != reqwest::StatusCode::OK {
        return Err(FetchError::Status {
            url,
            status: status.as_u16(),
        });
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| FetchError::Unreachable {
            url: url.clone(),
            cause: cause_chain(&e),
        })?;
    parse(&body).map_err(|why| FetchError::NotAList { url, why })
}

/// The error and its causes, one after the other (reqwest's own message is only the outermost).
fn cause_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A channel of any release's list (see the module docs); camelCase keys are read too.
#[derive(Deserialize)]
struct Raw {
    id: String,
    source: String,
    #[serde(alias = "sourceChannelId")]
    source_channel_id: String,
    #[serde(default)]
    connected: Option<bool>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default, alias = "imageUrl")]
    image_url: Option<String>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
}

/// A string of the metadata under any of `keys`; empty strings count as absent.
fn meta(metadata: Option<&Map<String, Value>>, keys: &[&str]) -> Option<String> {
    let m = metadata?;
    keys.iter()
        .find_map(|k| m.get(*k).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Parses a `channels.list` answer.
pub fn parse(body: &[u8]) -> Result<(Vec<AiryChannel>, Vec<Unreadable>), String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON ({e})"))?;
    let items = v
        .get("data")
        .and_then(Value::as_array)
        .ok_or("no \"data\" array")?;
    let mut channels = Vec::with_capacity(items.len());
    let mut unreadable = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match Raw::deserialize(item) {
            Ok(raw) => {
                let md = raw.metadata.as_ref();
                channels.push(AiryChannel {
                    name: meta(md, &["name"]).or(raw.name.filter(|n| !n.is_empty())),
                    image_url: meta(md, &["image_url", "imageUrl"])
                        .or(raw.image_url.filter(|u| !u.is_empty())),
                    page_token: meta(md, &["page_token", "pageToken"]).map(SecretString::new),
                    page_id: meta(md, &["page_id", "pageId"]),
                    connected: raw.connected.unwrap_or(true),
                    id: raw.id,
                    source: raw.source,
                    source_channel_id: raw.source_channel_id,
                });
            }
            Err(e) => unreadable.push(Unreadable {
                position: i + 1,
                why: e.to_string(),
            }),
        }
    }
    Ok((channels, unreadable))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_release_shape_is_read() {
        let body = br#"{"data": [
            {"id": "a", "name": "Old page", "source": "facebook", "source_channel_id": "1", "image_url": "https://x/1.png"},
            {"id": "b", "source": "chat_plugin", "source_channel_id": "web", "metadata": {"name": "web"}},
            {"id": "c", "source": "chatplugin", "source_channel_id": "web", "connected": false, "metadata": {"name": "web 2", "image_url": ""}},
            {"id": "d", "source": "instagram", "source_channel_id": "17", "connected": true,
             "metadata": {"name": "IG", "page_id": "42", "page_token": "EAAtok", "account_id": "17", "user_data": {"x": 1}}},
            {"id": "e", "source": "facebook"},
            {"id": "f", "source": "google", "sourceChannelId": "gbm", "metadata": {"name": 5}, "extra": [1]}
        ]}"#;
        let (channels, unreadable) = parse(body).unwrap();
        assert_eq!(channels.len(), 5);
        let old = &channels[0];
        assert_eq!(
            (old.name.as_deref(), old.image_url.as_deref(), old.connected),
            (Some("Old page"), Some("https://x/1.png"), true)
        );
        assert_eq!(channels[1].name.as_deref(), Some("web"));
        assert!(!channels[2].connected);
        assert_eq!(channels[2].image_url, None, "an empty image is no image");
        let ig = &channels[3];
        assert_eq!(ig.page_id.as_deref(), Some("42"));
        assert_eq!(
            ig.page_token.as_ref().map(SecretString::expose),
            Some("EAAtok")
        );
        assert!(
            !format!("{ig:?}").contains("EAAtok"),
            "Debug hides the token"
        );
        assert_eq!(channels[4].source_channel_id, "gbm");
        assert_eq!(channels[4].name, None, "a name that is not a string");
        assert_eq!(unreadable.len(), 1);
        assert_eq!(unreadable[0].position, 5);
        assert!(
            unreadable[0].why.contains("source_channel_id"),
            "{unreadable:?}"
        );
    }

    #[test]
    fn a_body_that_is_no_list_is_refused() {
        assert!(parse(b"<html>login</html>")
            .unwrap_err()
            .contains("not JSON"));
        assert!(parse(br#"{"channels": []}"#).unwrap_err().contains("data"));
        assert_eq!(parse(br#"{"data": []}"#).unwrap().0, vec![]);
    }

    #[test]
    fn the_list_is_posted_below_the_base_url() {
        for base in ["https://airy.example.org", "https://airy.example.org/"] {
            let u = url::Url::parse(base).unwrap();
            assert_eq!(list_url(&u), "https://airy.example.org/channels.list");
        }
        let u = url::Url::parse("https://example.org/airy/api/").unwrap();
        assert_eq!(list_url(&u), "https://example.org/airy/api/channels.list");
    }
}
