//! Viber bot accounts through the Viber REST API (docs/providers.md).
//!
//! The bot's auth token travels only in the `X-Viber-Auth-Token` header. The proof reads the
//! account (`POST /pa/get_account_info`; a declared source channel id must be the account's id),
//! the effect points its webhook at the configured URL (`POST /pa/set_webhook`), and the undo
//! clears it (`url: ""`) with the record's copy of the token. Viber answers most failures with HTTP 200 and a non-zero `status`; both
//! kinds are classified, and no message carries the token.

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;

use super::{send_json, ConnectOutcome, Proof, Provider, ProviderArgs, ProviderError};
use crate::crd::Channel;
use crate::effects::{EffectKey, EffectKind, Origin};
use crate::secret::SecretString;

/// Viber's `status` for an invalid auth token.
const INVALID_AUTH_TOKEN: i64 = 2;
/// Viber's `status` for too many requests.
const TOO_MANY_REQUESTS: i64 = 12;

/// The Viber provider.
pub struct Viber {
    http: reqwest::Client,
    api_url: String,
    webhook_url: Option<String>,
}

/// A Viber account as `get_account_info` reports it.
#[derive(Deserialize, Debug, Clone, PartialEq)]
pub struct Account {
    /// The account id (the channel's source channel id).
    pub id: String,
    /// The account's name, without invisible or format characters.
    #[serde(default, deserialize_with = "crate::rules::deserialize_visible_name")]
    pub name: Option<String>,
    /// The account's icon.
    #[serde(default)]
    pub icon: Option<String>,
}

/// Every Viber answer carries a status (0 = ok) and a message.
#[derive(Deserialize)]
struct Answer<T> {
    status: i64,
    #[serde(default)]
    status_message: Option<String>,
    #[serde(flatten)]
    body: Option<T>,
}

#[derive(Deserialize)]
struct Nothing {}

impl Viber {
    /// Builds the provider from the flags.
    pub fn new(http: reqwest::Client, args: &ProviderArgs) -> Self {
        Viber {
            http,
            api_url: args.viber_api_url.trim_end_matches('/').to_owned(),
            webhook_url: args.viber_webhook_url.clone().filter(|u| !u.is_empty()),
        }
    }

    /// Calls `/pa/{method}` with the token and a JSON body; a non-zero Viber status is an error.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        what: &str,
        token: &SecretString,
        body: serde_json::Value,
    ) -> Result<T, ProviderError> {
        let request = self
            .http
            .post(format!("{}/pa/{method}", self.api_url))
            .header("X-Viber-Auth-Token", token.expose())
            .json(&body);
        let answer: Answer<T> = send_json("viber", what, request, |answer| answer.by_status(None))
            .await
            .map_err(|e| e.redacted(&[token]))?;
        let message = || {
            let text = answer.status_message.clone().unwrap_or_default();
            super::redact(
                format!("viber: {what}: status {}: {text}", answer.status),
                &[token],
            )
        };
        match answer.status {
            0 => answer.body.ok_or_else(|| {
                ProviderError::Failed(format!("viber: {what}: unexpected response body"))
            }),
            INVALID_AUTH_TOKEN => Err(ProviderError::InvalidCredentials(message())),
            TOO_MANY_REQUESTS => Err(ProviderError::RateLimited {
                message: message(),
                retry_after: None,
            }),
            _ => Err(ProviderError::Failed(message())),
        }
    }

    /// Reads the account the token belongs to (changes nothing at Viber).
    pub async fn account(&self, token: &SecretString) -> Result<Account, ProviderError> {
        self.call("get_account_info", "reading the account", token, json!({}))
            .await
    }

    async fn set_webhook(
        &self,
        token: &SecretString,
        url: &str,
        what: &str,
    ) -> Result<(), ProviderError> {
        let body = if url.is_empty() {
            json!({"url": ""})
        } else {
            json!({"url": url, "send_name": true, "send_photo": true})
        };
        let _: Nothing = self.call("set_webhook", what, token, body).await?;
        Ok(())
    }
}

fn token_of(credentials: Option<&SecretString>, what: &str) -> Result<SecretString, ProviderError> {
    credentials
        .filter(|t| !t.is_empty())
        .cloned()
        .ok_or_else(|| {
            ProviderError::CredentialsMissing(format!("viber: {what} is missing or empty"))
        })
}

/// The account, checked against the Channel's declared id.
fn checked(channel: &Channel, account: Account) -> Result<Account, ProviderError> {
    if account.id != channel.spec.source_channel_id {
        return Err(ProviderError::InvalidCredentials(format!(
            "viber: the auth token belongs to the account {:?}, not to the declared sourceChannelId {:?}",
            account.id, channel.spec.source_channel_id
        )));
    }
    Ok(account)
}

impl Provider for Viber {
    fn proves(&self) -> bool {
        true
    }

    fn prove<'a>(
        &'a self,
        channel: &'a Channel,
        credentials: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<Proof, ProviderError>> {
        Box::pin(async move {
            let token = token_of(credentials, "the bot's auth token (credentialsSecretRef)")?;
            if self.webhook_url.is_none() {
                return Err(ProviderError::CredentialsMissing(
                    "viber: the operator has no webhook URL (--viber-webhook-url)".into(),
                ));
            }
            let account = checked(channel, self.account(&token).await?)?;
            Ok(Proof {
                outcome: ConnectOutcome {
                    page_name: account.name,
                    page_image_url: account.icon,
                    // A copy, like Facebook's page access token: re-checks and the undo work
                    // after the credentials Secret is gone.
                    token: Some(token.clone()),
                    ..Default::default()
                },
                undo: Some(token.clone()),
                secrets: vec![token],
                ..Default::default()
            })
        })
    }

    fn effects(&self, channel: &Channel) -> Vec<EffectKey> {
        let id = &channel.spec.source_channel_id;
        vec![EffectKey::new(EffectKind::BotWebhook, id, id)]
    }

    fn make<'a>(
        &'a self,
        _channel: &'a Channel,
        _effect: &'a EffectKey,
        proof: &'a Proof,
    ) -> BoxFuture<'a, Result<Origin, ProviderError>> {
        Box::pin(async move {
            let token = token_of(proof.outcome.token.as_ref(), "the bot's auth token")?;
            let Some(webhook) = &self.webhook_url else {
                return Err(ProviderError::CredentialsMissing(
                    "viber: the operator has no webhook URL (--viber-webhook-url)".into(),
                ));
            };
            self.set_webhook(&token, webhook, "setting the webhook")
                .await
                .map(|()| Origin::Made)
        })
    }

    fn undo<'a>(
        &'a self,
        _effect: &'a EffectKey,
        credential: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            let token = token_of(
                credential,
                "the recorded auth token (needed to clear the webhook; set deletionPolicy: Orphan to skip)",
            )?;
            self.set_webhook(&token, "", "clearing the webhook").await
        })
    }

    fn recheck<'a>(
        &'a self,
        channel: &'a Channel,
        stored_token: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<ConnectOutcome, ProviderError>> {
        Box::pin(async move {
            let token = token_of(stored_token, "the stored auth token")?;
            let account = checked(channel, self.account(&token).await?)?;
            Ok(ConnectOutcome {
                page_name: account.name,
                page_image_url: account.icon,
                ..Default::default()
            })
        })
    }

    fn needs_credentials(&self) -> bool {
        true
    }
}
