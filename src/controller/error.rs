//! Why a reconcile failed, and what the retry policy and the status make of it.

use std::time::Duration;

use kube::runtime::finalizer::Error as FinalizerError;

use crate::providers::ProviderError;
use crate::reason::Reason;

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A provider call failed, or its inputs are missing.
    #[error("{0}")]
    Provider(#[from] ProviderError),
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A Secret the operator would write exists and is not this Channel's.
    #[error("{0}")]
    SecretConflict(String),
    /// The caches a decision needs are not filled yet; retried shortly.
    #[error("{0}")]
    NotSynced(String),
    /// The Channel has no usable provider configuration.
    #[error("{0}")]
    ProviderConfigMissing(String),
    /// Adding or removing the finalizer failed, or the wrapped reconcile did.
    #[error("{0}")]
    Finalizer(#[source] Box<FinalizerError<Error>>),
}

impl Error {
    fn inner(&self) -> &Error {
        match self {
            Error::Finalizer(f) => match f.as_ref() {
                FinalizerError::ApplyFailed(e) | FinalizerError::CleanupFailed(e) => e.inner(),
                _ => self,
            },
            _ => self,
        }
    }

    /// The Ready reason this error is reported and counted under.
    pub fn reason(&self) -> Reason {
        match self.inner() {
            Error::Provider(p) => p.reason(),
            Error::SecretConflict(_) => Reason::SecretConflict,
            Error::ProviderConfigMissing(_) => Reason::ProviderConfigMissing,
            _ => Reason::KubeError,
        }
    }

    /// The provider's `Retry-After`, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.inner() {
            Error::Provider(ProviderError::RateLimited { retry_after, .. }) => *retry_after,
            _ => None,
        }
    }
}
