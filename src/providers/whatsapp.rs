//! WhatsApp Cloud API numbers through the Graph API (docs/providers.md).
//!
//! Connect exchanges the user token for a long-lived one (kept in the Channel's token Secret),
//! reads the number (`GET /{phone-number-id}`) and, when the Channel names its WhatsApp Business
//! Account, subscribes the app to it (`POST /{waba-id}/subscribed_apps`). Disconnect removes that
//! subscription (the controller skips it while another Channel of the account remains); without a
//! business account there is nothing to undo, as in Airy Core, which leaves webhooks to the user.
//! Errors are classified as Facebook's ([`Facebook::call`]) and scrubbed of every token.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde::Deserialize;

use super::facebook::Facebook;
use super::{ConnectOutcome, Provider, ProviderError};
use crate::crd::Channel;
use crate::secret::SecretString;

/// The number fields read at connect and re-check.
pub const NUMBER_FIELDS: &str = "display_phone_number,verified_name,quality_rating";

/// The WhatsApp Cloud API provider.
pub struct Whatsapp {
    graph: Arc<Facebook>,
}

#[derive(Deserialize)]
struct Number {
    display_phone_number: Option<String>,
    /// Without invisible or format characters.
    #[serde(default, deserialize_with = "crate::rules::deserialize_visible_name")]
    verified_name: Option<String>,
    quality_rating: Option<String>,
}

fn business_account(channel: &Channel) -> Option<&str> {
    channel
        .spec
        .whatsapp
        .as_ref()
        .and_then(|w| w.business_account_id.as_deref())
}

impl Whatsapp {
    /// Builds the provider over the Graph client of the Facebook one (its URL, app id and secret).
    pub fn new(graph: Arc<Facebook>) -> Self {
        Whatsapp { graph }
    }

    async fn read_number(
        &self,
        channel: &Channel,
        token: &SecretString,
    ) -> Result<Number, ProviderError> {
        self.graph
            .call(
                "reading the WhatsApp number",
                self.graph
                    .http()
                    .get(self.graph.url(&[&channel.spec.source_channel_id])?)
                    .query(&[("fields", NUMBER_FIELDS), ("access_token", token.expose())]),
            )
            .await
    }

    async fn long_lived(
        &self,
        credentials: Option<&SecretString>,
        derived: &mut Vec<SecretString>,
    ) -> Result<SecretString, ProviderError> {
        let user_token = credentials.filter(|t| !t.is_empty()).ok_or_else(|| {
            ProviderError::CredentialsMissing(
                "whatsapp: the user token (credentialsSecretRef) is missing or empty".into(),
            )
        })?;
        self.graph
            .long_lived_token(user_token, "user token", derived)
            .await
    }

    async fn connect_inner(
        &self,
        channel: &Channel,
        credentials: Option<&SecretString>,
        derived: &mut Vec<SecretString>,
    ) -> Result<ConnectOutcome, ProviderError> {
        let token = self.long_lived(credentials, derived).await?;
        let number = self.read_number(channel, &token).await?;
        if let Some(waba) = business_account(channel) {
            let _: serde_json::Value = self
                .graph
                .call(
                    "subscribing the app to the WhatsApp Business Account",
                    self.graph
                        .http()
                        .post(self.graph.url(&[waba, "subscribed_apps"])?)
                        .query(&[("access_token", token.expose())]),
                )
                .await?;
        }
        Ok(outcome(number, Some(token)))
    }
}

fn outcome(number: Number, token: Option<SecretString>) -> ConnectOutcome {
    ConnectOutcome {
        display_phone_number: number.display_phone_number,
        verified_name: number.verified_name,
        quality_rating: number.quality_rating,
        token,
        ..Default::default()
    }
}

impl Provider for Whatsapp {
    fn connect<'a>(
        &'a self,
        channel: &'a Channel,
        credentials: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<ConnectOutcome, ProviderError>> {
        Box::pin(async move {
            let mut derived = Vec::new();
            self.connect_inner(channel, credentials, &mut derived)
                .await
                .map_err(|e| self.graph.scrubbed(e, credentials, &derived))
        })
    }

    fn recover_token<'a>(
        &'a self,
        _channel: &'a Channel,
        credentials: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<Option<SecretString>, ProviderError>> {
        Box::pin(async move {
            let mut derived = Vec::new();
            self.long_lived(credentials, &mut derived)
                .await
                .map(Some)
                .map_err(|e| self.graph.scrubbed(e, credentials, &derived))
        })
    }

    fn disconnect<'a>(
        &'a self,
        channel: &'a Channel,
        stored_token: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            let Some(waba) = business_account(channel) else {
                return Ok(());
            };
            let token = stored_token.filter(|t| !t.is_empty()).ok_or_else(|| {
                ProviderError::CredentialsMissing(
                    "whatsapp: the stored token is missing, so the business account subscription cannot be removed (set deletionPolicy: Orphan to skip)".into(),
                )
            })?;
            let result: Result<serde_json::Value, _> = self
                .graph
                .call(
                    "removing the app's WhatsApp Business Account subscription",
                    self.graph
                        .http()
                        .delete(self.graph.url(&[waba, "subscribed_apps"])?)
                        .query(&[("access_token", token.expose())]),
                )
                .await;
            result.map(|_| ()).map_err(|e| e.redacted(&[token]))
        })
    }

    fn recheck<'a>(
        &'a self,
        channel: &'a Channel,
        stored_token: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<ConnectOutcome, ProviderError>> {
        Box::pin(async move {
            let Some(token) = stored_token.filter(|t| !t.is_empty()) else {
                return Err(ProviderError::CredentialsMissing(
                    "whatsapp: the stored token is missing".into(),
                ));
            };
            let number = self
                .read_number(channel, token)
                .await
                .map_err(|e| e.redacted(&[token]))?;
            Ok(outcome(number, None))
        })
    }

    fn needs_credentials(&self) -> bool {
        true
    }

    fn shared_resource(&self, channel: &Channel) -> Option<String> {
        business_account(channel).map(str::to_owned)
    }
}
