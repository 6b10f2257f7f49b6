//! Instagram accounts, messaged through the Facebook page linked to them (docs/providers.md).
//!
//! Instagram messaging webhooks come through the linked page's app subscription, so the calls
//! are the Facebook page's ([`super::facebook`]) on `spec.instagram.pageId`: the proof exchanges
//! the page token for a long-lived one and reads the page (its page access token, kept in the
//! Channel's record), the effect is the app's subscription to the page — the same one a Facebook
//! Channel of that page holds with the same app, so the two share it.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::facebook::Facebook;
use super::{ConnectOutcome, Proof, Provider, ProviderError};
use crate::crd::Channel;
use crate::effects::{EffectKey, Origin};
use crate::secret::SecretString;

/// The Instagram provider: the Facebook page flow on the linked page.
pub struct Instagram {
    facebook: Arc<Facebook>,
}

impl Instagram {
    /// Builds the provider over the Facebook one (its Graph URL, app id and secret).
    pub fn new(facebook: Arc<Facebook>) -> Self {
        Instagram { facebook }
    }
}

/// The linked page of an Instagram Channel (the CRD requires it; checked again here for objects
/// stored before the rule).
fn linked_page(channel: &Channel) -> Result<&str, ProviderError> {
    channel
        .spec
        .instagram
        .as_ref()
        .map(|i| i.page_id.as_str())
        .ok_or_else(|| {
            ProviderError::CredentialsMissing(
                "instagram: spec.instagram.pageId (the Facebook page linked to the account) is missing"
                    .into(),
            )
        })
}

impl Provider for Instagram {
    fn proves(&self) -> bool {
        true
    }

    fn prove<'a>(
        &'a self,
        channel: &'a Channel,
        credentials: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<Proof, ProviderError>> {
        Box::pin(async move {
            self.facebook
                .prove_page(linked_page(channel)?, credentials)
                .await
        })
    }

    fn effects(&self, channel: &Channel) -> Vec<EffectKey> {
        linked_page(channel)
            .map(|page| self.facebook.page_effect(page))
            .unwrap_or_default()
    }

    fn make<'a>(
        &'a self,
        _channel: &'a Channel,
        _effect: &'a EffectKey,
        proof: &'a Proof,
    ) -> BoxFuture<'a, Result<Origin, ProviderError>> {
        Box::pin(self.facebook.subscribe_page(proof))
    }

    fn undo<'a>(
        &'a self,
        effect: &'a EffectKey,
        credential: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        self.facebook.undo(effect, credential)
    }

    fn recheck<'a>(
        &'a self,
        channel: &'a Channel,
        stored_token: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<ConnectOutcome, ProviderError>> {
        Box::pin(async move {
            self.facebook
                .recheck_page(linked_page(channel)?, stored_token)
                .await
        })
    }

    fn needs_credentials(&self) -> bool {
        true
    }
}
