//! Instagram accounts, messaged through the Facebook page linked to them (docs/providers.md).
//!
//! Instagram messaging webhooks come through the linked page's app subscription, so the calls
//! are the Facebook page's ([`super::facebook`]) on `spec.instagram.pageId`: exchange the page
//! token for a long-lived one, read the page (its page access token, kept in the Channel's
//! token Secret), subscribe the app to the page; disconnect removes the subscription.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::facebook::Facebook;
use super::{ConnectOutcome, Provider, ProviderError};
use crate::crd::Channel;
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
    fn connect<'a>(
        &'a self,
        channel: &'a Channel,
        credentials: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<ConnectOutcome, ProviderError>> {
        Box::pin(async move {
            self.facebook
                .connect_page(linked_page(channel)?, credentials)
                .await
        })
    }

    fn recover_token<'a>(
        &'a self,
        channel: &'a Channel,
        credentials: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<Option<SecretString>, ProviderError>> {
        Box::pin(async move {
            self.facebook
                .recover_page_token(linked_page(channel)?, credentials)
                .await
        })
    }

    fn disconnect<'a>(
        &'a self,
        channel: &'a Channel,
        stored_token: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            self.facebook
                .disconnect_page(linked_page(channel)?, stored_token)
                .await
        })
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
