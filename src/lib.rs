//! channel-operator: a Kubernetes operator for messaging channels that serves the Airy Core
//! channels HTTP API.
//!
//! Where things are:
//! - [`crd`]: the `Channel` custom resource types (the CRD in `crds/` is generated from them);
//! - [`channel_state`]: what a Channel's state means (reported on a generation, connected, needs
//!   its provider, owned by a Channel, owner of its id), for the controller, metrics and API alike;
//! - [`provider_config`]: the `ProviderConfig` and `ClusterProviderConfig` resources, and which
//!   one a Channel uses;
//! - [`channel_id`]: deterministic channel ids, identical to Airy Core's;
//! - [`pinned_id`]: a Channel's pinned id (`spec.channelId`), its effective id and which ids it
//!   may pin;
//! - [`migrate`]: the `migrate` command moving a running Airy Core's channels onto Channels;
//!   [`adoption`]: the record an admin's `migrate` writes so the controller adopts what Airy Core
//!   made at the providers;
//! - [`claims`]: one owner per channel id, decided by the API server (a Lease per channel id);
//! - [`effects`]: what the operator does at a provider (a page subscribed, a webhook pointed),
//!   as its records hold it;
//! - [`controller`]: the reconcile loop; [`providers`]: Facebook, Instagram, WhatsApp, Viber,
//!   Twilio, Google, chat plugin;
//! - [`api`]: the channels HTTP API sidecar;
//! - [`runtime`]: the plumbing both run on: the shutdown signal, tracked watches, abort-on-drop
//!   tasks;
//! - [`secret`]: [`secret::SecretString`], a string that never prints itself, and redaction;
//! - [`ownership`]: the Secrets the two share, their names and labels, and who may write or
//!   delete each;
//! - [`rules`]: the one rule set for Channel values (patterns, CEL rules, the name rule);
//!   [`naming`]: the chat plugin's name in ids and answers; [`reason`]: the `Ready` reasons and
//!   the kstatus state of each;
//! - [`metrics`]: the controller's metrics and health endpoints; [`telemetry`]: logging;
//! - [`dev`]: the `dev` command wiring them together with the in-memory Kubernetes API server of
//!   the `kube-sandbox` package (feature `dev`, on by default; the production image is built
//!   without it).

pub mod adoption;
pub mod api;
pub mod channel_id;
pub mod channel_state;
pub mod claims;
pub mod controller;
pub mod crd;
#[cfg(feature = "dev")]
pub mod dev;
pub mod effects;
pub mod metrics;
pub mod migrate;
pub mod naming;
pub mod ownership;
pub mod pinned_id;
pub mod provider_config;
pub mod providers;
pub mod reason;
pub mod rules;
pub mod runtime;
pub mod secret;
pub mod telemetry;
