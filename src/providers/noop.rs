//! Google Business Messages and the website chat plugin: nothing to call (docs/providers.md).

use futures::future::BoxFuture;

use super::{ConnectOutcome, Provider, ProviderError};
use crate::crd::Channel;
use crate::secret::SecretString;

/// A provider with nothing to call: nothing to prove, no effect, nothing to re-check.
pub struct NoCall;

impl Provider for NoCall {
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
