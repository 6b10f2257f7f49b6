//! `channels.facebook.explore`: the pages a Facebook user token can manage, from the Graph API.
//!
//! The token is sent to the Graph API only; it never appears in a log line or an answer (Facebook
//! echoes request URLs in some errors, so messages are built from Facebook's error text alone and
//! scrubbed of the token).

use std::time::Duration;

use serde::Deserialize;

use super::model::ExplorePage;

/// The fields requested for each page (spec 4.1).
pub const PAGE_FIELDS: &str =
    "id,name_with_location_descriptor,access_token,picture,is_webhooks_subscribed";
/// At most this many pages of results are followed.
const MAX_PAGES: usize = 100;

/// A Graph API client for explore.
#[derive(Clone, Debug)]
pub struct Graph {
    http: reqwest::Client,
    base: String,
}

/// Why explore failed.
#[derive(Debug, thiserror::Error)]
pub enum ExploreError {
    /// Facebook answered with an error status.
    #[error("Facebook Graph API answered {status}: {message}")]
    Provider {
        /// HTTP status.
        status: u16,
        /// Facebook's error message.
        message: String,
    },
    /// Facebook could not be reached or answered something unreadable.
    #[error("Facebook Graph API request failed: {0}")]
    Transport(String),
}

#[derive(Deserialize)]
struct Accounts {
    #[serde(default)]
    data: Vec<Page>,
    #[serde(default)]
    paging: Option<Paging>,
}

#[derive(Deserialize)]
struct Paging {
    #[serde(default)]
    next: Option<String>,
}

#[derive(Deserialize)]
struct Page {
    id: String,
    #[serde(default)]
    name_with_location_descriptor: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    picture: Option<Picture>,
}

#[derive(Deserialize)]
struct Picture {
    data: Option<PictureData>,
}

#[derive(Deserialize)]
struct PictureData {
    url: Option<String>,
}

#[derive(Deserialize)]
struct GraphErrorBody {
    error: Option<GraphError>,
}

#[derive(Deserialize)]
struct GraphError {
    message: Option<String>,
}

impl Graph {
    /// A client for the Graph API at `base` (including its version).
    pub fn new(base: &str, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Graph {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// All pages of `/me/accounts`, following `paging.next`, with `connected` from `is_connected`
    /// (given a page id).
    pub async fn explore(
        &self,
        auth_token: &str,
        is_connected: impl Fn(&str) -> bool,
    ) -> Result<Vec<ExplorePage>, ExploreError> {
        let scrub = |s: String| s.replace(auth_token, "<redacted>");
        let mut pages = Vec::new();
        let mut next = Some(
            reqwest::Url::parse_with_params(
                &format!("{}/me/accounts", self.base),
                &[("fields", PAGE_FIELDS), ("access_token", auth_token)],
            )
            .map_err(|e| ExploreError::Transport(format!("bad Graph API URL: {e}")))?,
        );
        let mut followed = 0;
        while let Some(url) = next.take() {
            followed += 1;
            if followed > MAX_PAGES {
                break;
            }
            let resp = self
                .http
                .get(url)
                .send()
                .await
                .map_err(|e| ExploreError::Transport(scrub(e.without_url().to_string())))?;
            let status = resp.status();
            let body = resp
                .bytes()
                .await
                .map_err(|e| ExploreError::Transport(scrub(e.without_url().to_string())))?;
            if !status.is_success() {
                let message = serde_json::from_slice::<GraphErrorBody>(&body)
                    .ok()
                    .and_then(|b| b.error)
                    .and_then(|e| e.message)
                    .unwrap_or_else(|| "no error message".to_owned());
                return Err(ExploreError::Provider {
                    status: status.as_u16(),
                    message: scrub(message),
                });
            }
            let accounts: Accounts = serde_json::from_slice(&body).map_err(|e| {
                ExploreError::Transport(format!("unreadable Graph API answer: {e}"))
            })?;
            for p in accounts.data {
                let connected = is_connected(&p.id);
                pages.push(ExplorePage {
                    name: p
                        .name_with_location_descriptor
                        .or(p.name)
                        .unwrap_or_default(),
                    image_url: p.picture.and_then(|p| p.data).and_then(|d| d.url),
                    connected,
                    page_id: p.id,
                });
            }
            next = match accounts.paging.and_then(|p| p.next) {
                Some(n) => Some(reqwest::Url::parse(&n).map_err(|e| {
                    ExploreError::Transport(format!("bad paging.next URL from the Graph API: {e}"))
                })?),
                None => None,
            };
        }
        Ok(pages)
    }
}
