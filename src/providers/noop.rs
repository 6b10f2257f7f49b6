//! Google Business Messages and the website chat plugin: nothing to call (docs/providers.md).

use futures::future::BoxFuture;

use super::{ConnectOutcome, Provider, ProviderError};
use crate::crd::Channel;
use crate::secret::SecretString;

/// A provider with nothing to call: connecting and disconnecting succeed at once.
pub struct NoCall;

impl Provider for NoCall {
    fn connect<'a>(
        &'a self,
        _channel: &'a Channel,
        _credentials: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<ConnectOutcome, ProviderError>> {
        Box::pin(async { Ok(ConnectOutcome::default()) })
    }

    fn disconnect<'a>(
        &'a self,
        _channel: &'a Channel,
        _stored_token: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async { Ok(()) })
    }

    fn recheck<'a>(
        &'a self,
        _channel: &'a Channel,
        _stored_token: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<ConnectOutcome, ProviderError>> {
        Box::pin(async { Ok(ConnectOutcome::default()) })
    }

    fn calls_out(&self) -> bool {
        false
    }
}
