//! WhatsApp Cloud API numbers through the Graph API (docs/providers.md).
//!
//! The proof exchanges the user token for a long-lived one (kept in the Channel's record) and
//! reads the number (`GET /{phone-number-id}`). When the Channel names its WhatsApp Business
//! Account, the effect is the app's subscription to it (`POST /{waba-id}/subscribed_apps`), shared
//! by every Channel of the account connected with the app and undone (`DELETE`) once the last one
//! goes; without a business account there is nothing to undo, as in Airy Core, which leaves
//! webhooks to the user. Errors are classified as Facebook's ([`Facebook::call`]) and scrubbed of
//! every token.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde::Deserialize;

use super::facebook::Facebook;
use super::{ConnectOutcome, Proof, Provider, ProviderError};
use crate::crd::Channel;
use crate::effects::{EffectKey, EffectKind, Origin};
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

    async fn prove_number(
        &self,
        channel: &Channel,
        credentials: Option<&SecretString>,
        derived: &mut Vec<SecretString>,
    ) -> Result<Proof, ProviderError> {
        let token = self.long_lived(credentials, derived).await?;
        let number = self.read_number(channel, &token).await?;
        let mut secrets = derived.clone();
        secrets.extend(credentials.cloned());
        Ok(Proof {
            outcome: outcome(number, Some(token.clone())),
            undo: Some(token),
            secrets,
            ..Default::default()
        })
    }

    /// Subscribes the app to the business account with the proof's long-lived token.
    async fn subscribe(&self, waba: &str, proof: &Proof) -> Result<Origin, ProviderError> {
        let token = proof.outcome.token.as_ref().ok_or_else(|| {
            ProviderError::CredentialsMissing("whatsapp: no long-lived token was obtained".into())
        })?;
        let result: Result<serde_json::Value, _> = self
            .graph
            .call(
                "subscribing the app to the WhatsApp Business Account",
                self.graph
                    .http()
                    .post(self.graph.url(&[waba, "subscribed_apps"])?)
                    .query(&[("access_token", token.expose())]),
            )
            .await;
        result
            .map(|_| Origin::Made)
            .map_err(|e| self.graph.scrubbed(e, None, &proof.secrets))
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
    fn proves(&self) -> bool {
        true
    }

    fn prove<'a>(
        &'a self,
        channel: &'a Channel,
        credentials: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<Proof, ProviderError>> {
        Box::pin(async move {
            let mut derived = Vec::new();
            self.prove_number(channel, credentials, &mut derived)
                .await
                .map_err(|e| self.graph.scrubbed(e, credentials, &derived))
        })
    }

    fn effects(&self, channel: &Channel) -> Vec<EffectKey> {
        match (business_account(channel), self.graph.app_id()) {
            (Some(waba), Some(app)) => vec![EffectKey::new(
                EffectKind::BusinessAccountSubscription,
                waba,
                app,
            )],
            _ => Vec::new(),
        }
    }

    fn make<'a>(
        &'a self,
        _channel: &'a Channel,
        effect: &'a EffectKey,
        proof: &'a Proof,
    ) -> BoxFuture<'a, Result<Origin, ProviderError>> {
        Box::pin(self.subscribe(&effect.resource, proof))
    }

    fn undo<'a>(
        &'a self,
        effect: &'a EffectKey,
        credential: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            let token = credential.filter(|t| !t.is_empty()).ok_or_else(|| {
                ProviderError::CredentialsMissing(
                    "whatsapp: the recorded token is missing, so the business account subscription cannot be removed (set deletionPolicy: Orphan to skip)".into(),
                )
            })?;
            let result: Result<serde_json::Value, _> = self
                .graph
                .call(
                    "removing the app's WhatsApp Business Account subscription",
                    self.graph
                        .http()
                        .delete(self.graph.url(&[&effect.resource, "subscribed_apps"])?)
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
}
