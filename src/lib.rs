//! channel-operator: a Kubernetes operator for messaging channels that serves the Airy Core
//! channels HTTP API.
//!
//! Where things are:
//! - [`crd`]: the `Channel` custom resource types (the CRD in `crds/` is generated from them);
//! - [`channel_id`]: deterministic channel ids, identical to Airy Core's;
//! - [`controller`]: the reconcile loop; [`providers`]: Facebook, Twilio, Google, chat plugin;
//! - [`api`]: the channels HTTP API sidecar;
//! - [`sandbox`]: the in-memory Kubernetes API server used by tests and `channel-operator dev`;
//! - [`dev`]: the `dev` command wiring them together.

pub mod api;
pub mod channel_id;
pub mod controller;
pub mod crd;
pub mod dev;
pub mod metrics;
pub mod providers;
pub mod sandbox;
pub mod secret;
pub mod telemetry;

/// Selects ring as the process-wide rustls crypto provider.
///
/// kube enables rustls with ring while reqwest and jsonwebtoken bring aws-lc-rs, so rustls cannot
/// pick a default on its own and building a `kube::Client` would panic. Every entry point (the
/// binary, `sandbox::Sandbox::client`, `api::run`, `controller::run`) calls this first; calling it
/// again is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
