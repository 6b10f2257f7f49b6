//! Facebook pages through the Graph API, with the calls listed in docs/providers.md.
//!
//! Tokens travel only in query strings to the Graph API; error messages carry the HTTP status and
//! Facebook's own error message, scrubbed of every token, and never a URL.

use futures::future::BoxFuture;
use serde::Deserialize;

use super::{
    retry_after, send_json, url_with_segments, ConnectOutcome, Proof, Provider, ProviderArgs,
    ProviderError,
};
use crate::crd::Channel;
use crate::effects::{EffectKey, EffectKind, Origin};
use crate::secret::SecretString;

/// The page fields read at connect and resync.
pub const PAGE_FIELDS: &str =
    "id,name_with_location_descriptor,access_token,picture,is_webhooks_subscribed";

/// The webhook fields the app subscribes the page to.
pub const SUBSCRIBED_FIELDS: &str = "messages,messaging_postbacks,messaging_optins,message_deliveries,message_reads,messaging_payments,messaging_pre_checkouts,messaging_checkout_updates,messaging_account_linking,messaging_referrals,message_echoes,messaging_game_plays,standby,messaging_handovers,messaging_policy_enforcement,message_reactions,inbox_labels";

/// At most this many result pages of `/me/accounts` are followed by [`Facebook::managed_pages`].
const MAX_ACCOUNT_PAGES: usize = 100;

/// A page a Facebook user token can manage (`channels.facebook.explore`).
#[derive(Clone, Debug, PartialEq)]
pub struct ManagedPage {
    /// The page id.
    pub page_id: String,
    /// The page's name with its location descriptor (else its plain name).
    pub name: String,
    /// The page picture, when there is one.
    pub image_url: Option<String>,
}

#[derive(Deserialize)]
struct Accounts {
    #[serde(default)]
    data: Vec<Page>,
    paging: Option<Paging>,
}

#[derive(Deserialize)]
struct Paging {
    next: Option<String>,
}

/// The Facebook provider.
pub struct Facebook {
    http: reqwest::Client,
    graph_url: String,
    app_id: Option<String>,
    app_secret: Option<SecretString>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
}

#[derive(Deserialize, Default)]
struct Page {
    #[serde(default)]
    id: String,
    // Names from Graph lose their invisible and format characters here, before a status or an
    // answer shows them.
    #[serde(default, deserialize_with = "crate::rules::deserialize_visible_name")]
    name: Option<String>,
    #[serde(default, deserialize_with = "crate::rules::deserialize_visible_name")]
    name_with_location_descriptor: Option<String>,
    access_token: Option<String>,
    picture: Option<Picture>,
    is_webhooks_subscribed: Option<bool>,
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
    #[serde(rename = "type")]
    type_: Option<String>,
    code: Option<i64>,
    error_subcode: Option<i64>,
}

impl Facebook {
    /// Builds the provider from the flags.
    pub fn new(http: reqwest::Client, args: &ProviderArgs) -> Self {
        Facebook {
            http,
            graph_url: args.facebook_graph_url.trim_end_matches('/').to_owned(),
            app_id: args.facebook_app_id.clone().filter(|s| !s.is_empty()),
            app_secret: args.facebook_app_secret.clone().filter(|s| !s.is_empty()),
        }
    }

    /// The same provider (Graph URL, HTTP client) with another app: a provider configuration's.
    pub fn with_app(&self, app: Option<(String, SecretString)>) -> Self {
        let (app_id, app_secret) = match app {
            Some((id, secret)) => (Some(id), Some(secret)),
            None => (None, None),
        };
        Facebook {
            http: self.http.clone(),
            graph_url: self.graph_url.clone(),
            app_id: app_id.filter(|s| !s.is_empty()),
            app_secret: app_secret.filter(|s| !s.is_empty()),
        }
    }

    /// The Graph URL of `segments`, each percent-encoded (page ids come from Channels).
    pub(crate) fn url(&self, segments: &[&str]) -> Result<reqwest::Url, ProviderError> {
        url_with_segments(&self.graph_url, segments)
    }

    /// `next` (Graph's `paging.next`) when it is on the configured Graph API's origin (scheme,
    /// host, port): the user's token is never sent anywhere else. The error names neither URL.
    fn same_origin(&self, next: &str) -> Result<reqwest::Url, ProviderError> {
        let graph = reqwest::Url::parse(&self.graph_url).ok();
        match reqwest::Url::parse(next) {
            Ok(url) if graph.is_some_and(|g| g.origin() == url.origin()) => Ok(url),
            _ => Err(ProviderError::Failed(
                "facebook: listing the user's pages: Graph's paging.next leads off the configured Graph API origin (--facebook-graph-url); stopped without following it".into(),
            )),
        }
    }

    /// Sends a request and reads its JSON body, classifying every failure.
    pub(crate) async fn call<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ProviderError> {
        send_json("facebook", what, req, |answer| {
            let graph = serde_json::from_slice::<GraphErrorBody>(&answer.body)
                .ok()
                .and_then(|b| b.error);
            let message = answer.message(graph.as_ref().and_then(|g| g.message.clone()));
            let code = graph.as_ref().and_then(|g| g.code);
            let oauth = graph
                .as_ref()
                .and_then(|g| g.type_.as_deref())
                .is_some_and(|t| t == "OAuthException");
            // Graph's throttling codes: app (4), user (17), page (32), custom (613).
            let throttled = matches!(code, Some(4 | 17 | 32 | 613));
            let status = answer.status.as_u16();
            if let Some(expired) = token_rejected(graph.as_ref()) {
                // Whatever was being done: the token no longer works (README, token health).
                let subcode = graph.as_ref().and_then(|g| g.error_subcode);
                let why = crate::credentials_health::describe_rejection(subcode, None);
                ProviderError::TokenRejected {
                    message: format!("{message} ({why})"),
                    expired,
                }
            } else if status == 429 || throttled {
                ProviderError::RateLimited {
                    message,
                    retry_after: retry_after(&answer.headers),
                }
            } else if oauth && matches!(status, 400 | 401 | 403) {
                ProviderError::InvalidCredentials(message)
            } else {
                ProviderError::Failed(message)
            }
        })
        .await
    }

    /// Every page `/me/accounts` lists for a user token, in Graph order, following `paging.next`
    /// (spec 4.1, explore). Errors carry Facebook's status and message, never the token.
    pub async fn managed_pages(
        &self,
        auth_token: &SecretString,
    ) -> Result<Vec<ManagedPage>, ProviderError> {
        let listing = async {
            let mut pages = Vec::new();
            let mut request = self.http.get(self.url(&["me", "accounts"])?).query(&[
                ("fields", PAGE_FIELDS),
                ("access_token", auth_token.expose()),
            ]);
            for _ in 0..MAX_ACCOUNT_PAGES {
                let accounts: Accounts = self.call("listing the user's pages", request).await?;
                pages.extend(accounts.data.into_iter().map(|page| {
                    ManagedPage {
                        name: page
                            .name_with_location_descriptor
                            .or(page.name)
                            .unwrap_or_default(),
                        image_url: page.picture.and_then(|p| p.data).and_then(|d| d.url),
                        page_id: page.id,
                    }
                }));
                match accounts.paging.and_then(|p| p.next) {
                    Some(next) => request = self.http.get(self.same_origin(&next)?),
                    None => break,
                }
            }
            Ok(pages)
        };
        listing
            .await
            .map_err(|e: ProviderError| e.redacted(&[auth_token]))
    }

    async fn get_page(&self, page_id: &str, token: &SecretString) -> Result<Page, ProviderError> {
        self.call(
            "reading the page",
            self.http
                .get(self.url(&[page_id])?)
                .query(&[("fields", PAGE_FIELDS), ("access_token", token.expose())]),
        )
        .await
    }

    /// The HTTP client shared by the providers.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The app's id and secret, or why there are none.
    fn app(&self) -> Result<(&str, &SecretString), ProviderError> {
        match (&self.app_id, &self.app_secret) {
            (Some(id), Some(secret)) => Ok((id, secret)),
            _ => Err(ProviderError::CredentialsMissing(
                "facebook: the provider configuration has no app id and app secret (spec.facebook of a ProviderConfig; --facebook-app-id, --facebook-app-secret for the flags' default)".into(),
            )),
        }
    }

    /// The app's own access token (`app_id|app_secret`), for Graph calls about other tokens.
    pub(crate) fn app_token(&self) -> Result<SecretString, ProviderError> {
        let (id, secret) = self.app()?;
        Ok(SecretString::new(format!("{id}|{}", secret.expose())))
    }

    /// Exchanges a (page or user) token for a long-lived one with the app's id and secret.
    /// Changes nothing at Facebook. The long-lived token is added to `derived`.
    pub(crate) async fn long_lived_token(
        &self,
        token: &SecretString,
        what: &str,
        derived: &mut Vec<SecretString>,
    ) -> Result<SecretString, ProviderError> {
        let (app_id, app_secret) = self.app()?;
        let exchanged: TokenResponse = self
            .call(
                &format!("exchanging the {what} for a long-lived token"),
                self.http
                    .get(self.url(&["oauth", "access_token"])?)
                    .query(&[
                        ("grant_type", "fb_exchange_token"),
                        ("client_id", app_id),
                        ("client_secret", app_secret.expose()),
                        ("fb_exchange_token", token.expose()),
                    ]),
            )
            .await?;
        let long_lived = SecretString::new(
            exchanged
                .access_token
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    ProviderError::Failed(format!(
                        "facebook: exchanging the {what}: the response has no access_token"
                    ))
                })?,
        );
        derived.push(long_lived.clone());
        Ok(long_lived)
    }

    /// Exchanges the page token for a long-lived one and reads the page with it: the page and its
    /// page access token. Changes nothing at Facebook. Every token obtained on the way is added to
    /// `derived`, so that the caller can scrub it from an error too (Graph may echo a request, its
    /// token included, in an error).
    async fn page_access(
        &self,
        page_id: &str,
        credentials: Option<&SecretString>,
        derived: &mut Vec<SecretString>,
    ) -> Result<(Page, SecretString), ProviderError> {
        let page_token = credentials.filter(|t| !t.is_empty()).ok_or_else(|| {
            ProviderError::CredentialsMissing(
                "facebook: the page token (credentialsSecretRef) is missing or empty".into(),
            )
        })?;
        let long_lived = self
            .long_lived_token(page_token, "page token", derived)
            .await?;
        let page = self.get_page(page_id, &long_lived).await?;
        let page_access = SecretString::new(page.access_token.clone().filter(|t| !t.is_empty()).ok_or_else(
            || {
                ProviderError::InvalidCredentials(
                    "facebook: reading the page: the response has no page access_token (does the token manage this page?)".into(),
                )
            },
        )?);
        derived.push(page_access.clone());
        Ok((page, page_access))
    }

    /// The error without the page token, the app secret or a token derived from them.
    pub(crate) fn scrubbed(
        &self,
        e: ProviderError,
        credentials: Option<&SecretString>,
        derived: &[SecretString],
    ) -> ProviderError {
        let mut secrets: Vec<&SecretString> = credentials.into_iter().collect();
        secrets.extend(self.app_secret.as_ref());
        secrets.extend(derived.iter());
        e.redacted(&secrets)
    }

    /// Shows that the page token works for `page_id` (read-only): exchanges it for a long-lived
    /// one with the app and reads the page with it. The proof keeps the page access token (for
    /// re-checks and, copied into the record, for the undo) and whether the app is subscribed
    /// to the page already.
    pub(crate) async fn prove_page(
        &self,
        page_id: &str,
        credentials: Option<&SecretString>,
    ) -> Result<Proof, ProviderError> {
        let mut derived = Vec::new();
        let (page, page_access) = self
            .page_access(page_id, credentials, &mut derived)
            .await
            .map_err(|e| self.scrubbed(e, credentials, &derived))?;
        derived.extend(credentials.cloned());
        Ok(Proof {
            outcome: ConnectOutcome {
                page_name: page.name_with_location_descriptor,
                page_image_url: page.picture.and_then(|p| p.data).and_then(|d| d.url),
                token: Some(page_access.clone()),
                ..Default::default()
            },
            undo: Some(page_access),
            already: page.is_webhooks_subscribed == Some(true),
            handle: None,
            secrets: derived,
        })
    }

    /// The app's id, when one is configured.
    pub(crate) fn app_id(&self) -> Option<&str> {
        self.app_id.as_deref()
    }

    /// The app's subscription to `page_id` (the effect of a facebook or instagram Channel).
    pub(crate) fn page_effect(&self, page_id: &str) -> Vec<EffectKey> {
        self.app_id()
            .map(|app| EffectKey::new(EffectKind::PageSubscription, page_id, app))
            .into_iter()
            .collect()
    }

    /// Subscribes the app to the page's messaging webhooks with the proof's page access token,
    /// unless the proof found it subscribed already (e.g. a connect cut off before it was
    /// recorded): then it is `Found`.
    pub(crate) async fn subscribe_page(&self, proof: &Proof) -> Result<Origin, ProviderError> {
        if proof.already {
            return Ok(Origin::Found);
        }
        let token = proof.outcome.token.as_ref().ok_or_else(|| {
            ProviderError::CredentialsMissing("facebook: no page access token was obtained".into())
        })?;
        let result: Result<serde_json::Value, _> = self
            .call(
                "subscribing the app to the page",
                self.http
                    .post(self.url(&["me", "subscribed_apps"])?)
                    .query(&[
                        ("access_token", token.expose()),
                        ("subscribed_fields", SUBSCRIBED_FIELDS),
                    ]),
            )
            .await;
        result
            .map(|_| Origin::Made)
            .map_err(|e| self.scrubbed(e, None, &proof.secrets))
    }

    /// Removes the app's subscription to the page with the recorded page access token.
    pub(crate) async fn unsubscribe_page(
        &self,
        page_id: &str,
        token: Option<&SecretString>,
    ) -> Result<(), ProviderError> {
        let token = token.filter(|t| !t.is_empty()).ok_or_else(|| {
            ProviderError::CredentialsMissing(
                "facebook: the recorded page access token is missing, so the page subscription cannot be removed (set deletionPolicy: Orphan to skip)".into(),
            )
        })?;
        let result: Result<serde_json::Value, _> = self
            .call(
                "removing the app's page subscription",
                self.http
                    .delete(self.url(&[page_id, "subscribed_apps"])?)
                    .query(&[("access_token", token.expose())]),
            )
            .await;
        result.map(|_| ()).map_err(|e| e.redacted(&[token]))
    }

    /// Reads the page again with the stored page access token: its name and picture.
    pub(crate) async fn recheck_page(
        &self,
        page_id: &str,
        stored_token: Option<&SecretString>,
    ) -> Result<ConnectOutcome, ProviderError> {
        let Some(token) = stored_token.filter(|t| !t.is_empty()) else {
            return Err(ProviderError::CredentialsMissing(
                "facebook: the stored page access token is missing".into(),
            ));
        };
        let page = self
            .get_page(page_id, token)
            .await
            .map_err(|e| e.redacted(&[token]))?;
        Ok(ConnectOutcome {
            page_name: page.name_with_location_descriptor,
            page_image_url: page.picture.and_then(|p| p.data).and_then(|d| d.url),
            ..Default::default()
        })
    }
}

/// Whether Graph's error says the token no longer works (OAuth error 190, or 102 "API
/// session"): `Some(expired)`, expired being subcode 463.
fn token_rejected(error: Option<&GraphError>) -> Option<bool> {
    use crate::credentials_health::{EXPIRED, OAUTH_INVALID_TOKEN};
    let error = error?;
    matches!(error.code, Some(OAUTH_INVALID_TOKEN | 102))
        .then_some(error.error_subcode == Some(EXPIRED))
}

impl Provider for Facebook {
    fn proves(&self) -> bool {
        true
    }

    fn prove<'a>(
        &'a self,
        channel: &'a Channel,
        credentials: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<Proof, ProviderError>> {
        Box::pin(self.prove_page(&channel.spec.source_channel_id, credentials))
    }

    fn effects(&self, channel: &Channel) -> Vec<EffectKey> {
        self.page_effect(&channel.spec.source_channel_id)
    }

    fn make<'a>(
        &'a self,
        _channel: &'a Channel,
        _effect: &'a EffectKey,
        proof: &'a Proof,
    ) -> BoxFuture<'a, Result<Origin, ProviderError>> {
        Box::pin(self.subscribe_page(proof))
    }

    fn undo<'a>(
        &'a self,
        effect: &'a EffectKey,
        credential: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(self.unsubscribe_page(&effect.resource, credential))
    }

    fn recheck<'a>(
        &'a self,
        channel: &'a Channel,
        stored_token: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<ConnectOutcome, ProviderError>> {
        Box::pin(self.recheck_page(&channel.spec.source_channel_id, stored_token))
    }

    fn needs_credentials(&self) -> bool {
        true
    }
}
