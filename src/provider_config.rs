//! Provider configurations as resources: which provider accounts (the Facebook app, the Twilio
//! account) a Channel's provider calls are made with, and who may use them.
//!
//! A namespaced `ProviderConfig` serves the Channels of its own namespace and reads its Secrets
//! there. A cluster-scoped `ClusterProviderConfig` reads its Secrets only in the operator's
//! namespace and serves only the namespaces it lists (`spec.namespaces`) or selects
//! (`spec.namespaceSelector`), none by default. The process flags define an implicit
//! `ClusterProviderConfig` named `default` that admits the operator's namespace and the ones of
//! `--default-provider-namespaces`; a real one named `default` replaces it. Which configuration a
//! Channel uses is decided by [`choose`] (docs/security.md).

// kube-derive's repeated `printcolumn(type_ = ...)` arguments look like duplicated attributes to clippy.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::core::SelectorExt;
use kube::{CustomResource, CustomResourceExt, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::crd::{SecretKeyRef, Source};

/// The name of the configuration a Channel without `spec.providerConfigRef` uses.
pub const DEFAULT_NAME: &str = "default";

/// A Facebook app: used by facebook, instagram and whatsapp Channels to exchange tokens.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FacebookApp {
    /// The app id (public: it is part of every Facebook login URL).
    #[schemars(length(min = 1))]
    pub app_id: String,
    /// The Secret key holding the app secret, in the configuration's Secret namespace.
    pub app_secret_ref: SecretKeyRef,
}

/// A Twilio account: used by twilio.sms and twilio.whatsapp Channels to point their numbers'
/// messaging webhooks at the platform.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TwilioAccount {
    /// The account SID (an identifier, part of every Twilio API URL).
    #[schemars(length(min = 1))]
    pub account_sid: String,
    /// The Secret key holding the account's auth token, in the configuration's Secret namespace.
    pub auth_token_ref: SecretKeyRef,
    /// The public URL the numbers' messaging webhooks are pointed at.
    #[schemars(length(min = 1), pattern(&*crate::rules::HTTP_URL_PATTERN))]
    pub webhook_url: String,
}

/// What a configuration's Ready condition reports.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderConfigStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready: True when every Secret key the configuration names exists and is not empty;
    /// False with reason InUse while it is being deleted and Channels still hold it.
    /// CredentialsHealthy: whether its accounts work at their providers (the Facebook app's
    /// credentials, the Twilio account's status); Unknown when they could not be checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The first Channels (namespace/name) connected through it: what it was used for at a
    /// provider is recorded for them and undone with its accounts. While any holds it, it
    /// carries the finalizer airy.co/in-use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holders: Vec<String>,
    /// How many Channels hold it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_count: Option<i64>,
}

/// The provider accounts of the Channels of this namespace that name it (or of all of them when
/// it is named `default`); its Secrets are read in this namespace only.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "airy.co",
    version = "v1alpha1",
    kind = "ProviderConfig",
    namespaced,
    category = "airy",
    status = "ProviderConfigStatus",
    doc = "The provider accounts (Facebook app, Twilio account) the Channels of this namespace connect with",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Credentials",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"CredentialsHealthy\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ProviderConfigSpec {
    /// The Facebook app (facebook, instagram, whatsapp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facebook: Option<FacebookApp>,
    /// The Twilio account (twilio.sms, twilio.whatsapp). Without it, Twilio numbers connect
    /// without a provider call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twilio: Option<TwilioAccount>,
}

/// Provider accounts shared with the namespaces listed or selected; its Secrets are read in the
/// operator's namespace only.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "airy.co",
    version = "v1alpha1",
    kind = "ClusterProviderConfig",
    category = "airy",
    status = "ProviderConfigStatus",
    doc = "Provider accounts (Facebook app, Twilio account) shared with the namespaces it admits; its Secrets live in the operator's namespace",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Credentials",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"CredentialsHealthy\")].reason"
    ),
    printcolumn(name = "Namespaces", type_ = "string", json_path = ".spec.namespaces"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterProviderConfigSpec {
    /// The Facebook app (facebook, instagram, whatsapp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facebook: Option<FacebookApp>,
    /// The Twilio account (twilio.sms, twilio.whatsapp). Without it, Twilio numbers connect
    /// without a provider call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twilio: Option<TwilioAccount>,
    /// The namespaces whose Channels may use this configuration. None by default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Namespaces selected by their labels may use this configuration too. Absent selects none;
    /// an empty selector selects every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
}

/// Which kind of configuration a Channel names.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum ProviderConfigKind {
    /// A `ProviderConfig` of the Channel's namespace.
    ProviderConfig,
    /// A `ClusterProviderConfig` that admits the Channel's namespace.
    ClusterProviderConfig,
}

/// The configuration a Channel's provider calls are made with.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderConfigRef {
    /// ProviderConfig (of the Channel's namespace) or ClusterProviderConfig.
    pub kind: ProviderConfigKind,
    /// Its name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// The accounts of a configuration, whatever its kind.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Accounts {
    /// The Facebook app.
    pub facebook: Option<FacebookApp>,
    /// The Twilio account.
    pub twilio: Option<TwilioAccount>,
}

impl ProviderConfig {
    /// Its accounts.
    pub fn accounts(&self) -> Accounts {
        Accounts {
            facebook: self.spec.facebook.clone(),
            twilio: self.spec.twilio.clone(),
        }
    }
}

impl ClusterProviderConfig {
    /// Its accounts.
    pub fn accounts(&self) -> Accounts {
        Accounts {
            facebook: self.spec.facebook.clone(),
            twilio: self.spec.twilio.clone(),
        }
    }

    /// Whether the Channels of `namespace` (with these labels, when known) may use it.
    pub fn admits(&self, namespace: &str, labels: Option<&BTreeMap<String, String>>) -> bool {
        self.spec.namespaces.iter().any(|n| n == namespace)
            || match (&self.spec.namespace_selector, labels) {
                // An invalid selector selects nothing.
                (Some(selector), Some(labels)) => kube::core::Selector::try_from(selector.clone())
                    .is_ok_and(|s| s.matches(labels)),
                _ => false,
            }
    }
}

/// Whether a Channel of `source` needs a provider configuration: every source whose provider is
/// called (the operator's accounts or URLs are used); not chat_plugin and google.
pub fn needs_provider_config(source: Source) -> bool {
    !matches!(source, Source::ChatPlugin | Source::Google)
}

/// The implicit cluster default defined by the process flags: whom it admits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlagsDefault {
    /// The operator's namespace (`POD_NAMESPACE`): always admitted.
    pub operator_namespace: String,
    /// More admitted namespaces (`--default-provider-namespaces`).
    pub namespaces: Vec<String>,
}

impl FlagsDefault {
    /// Whether the flags' configuration admits `namespace`.
    pub fn admits(&self, namespace: &str) -> bool {
        namespace == self.operator_namespace || self.namespaces.iter().any(|n| n == namespace)
    }
}

/// The configuration chosen for a Channel.
#[derive(Clone, Debug)]
pub enum Chosen {
    /// A `ProviderConfig` of the Channel's namespace.
    Namespaced(Arc<ProviderConfig>),
    /// A `ClusterProviderConfig` that admits the Channel's namespace.
    Cluster(Arc<ClusterProviderConfig>),
    /// The implicit default of the process flags.
    Flags,
}

impl Chosen {
    /// `ProviderConfig ns/name`, `ClusterProviderConfig name` or the flags' default, for messages.
    pub fn describe(&self) -> String {
        match self {
            Chosen::Namespaced(pc) => format!(
                "ProviderConfig {}/{}",
                pc.namespace().unwrap_or_default(),
                pc.name_any()
            ),
            Chosen::Cluster(cpc) => format!("ClusterProviderConfig {}", cpc.name_any()),
            Chosen::Flags => "the operator's default configuration (flags)".into(),
        }
    }
}

/// What [`choose`] looks configurations up in.
pub struct Candidates<'a> {
    /// The `ProviderConfig` of the Channel's namespace with this name.
    pub namespaced: &'a (dyn Fn(&str) -> Option<Arc<ProviderConfig>> + Sync),
    /// The `ClusterProviderConfig` with this name.
    pub cluster: &'a (dyn Fn(&str) -> Option<Arc<ClusterProviderConfig>> + Sync),
    /// The labels of the Channel's namespace, when known (for `namespaceSelector`).
    pub namespace_labels: Option<&'a BTreeMap<String, String>>,
    /// The flags' default.
    pub flags: &'a FlagsDefault,
}

/// The configuration a Channel of `namespace` naming `reference` uses, or why it has none.
///
/// Named: that `ProviderConfig` of the namespace, or that `ClusterProviderConfig` if it admits
/// the namespace (`default` being the flags' one while no real one has that name). Not named:
/// the namespace's `ProviderConfig` `default`, else the `ClusterProviderConfig` `default` if it
/// admits the namespace, else the flags' default if it admits the namespace. A real
/// `ClusterProviderConfig` named `default` replaces the flags' default entirely.
pub fn choose(
    namespace: &str,
    reference: Option<&ProviderConfigRef>,
    c: &Candidates<'_>,
) -> Result<Chosen, String> {
    // A ClusterProviderConfig that exists but does not admit the namespace is reported in the
    // words of one that does not exist: a tenant's status must not tell which cluster
    // configurations there are.
    let cluster = |name: &str| -> Result<Chosen, String> {
        match (c.cluster)(name) {
            Some(cpc) if cpc.admits(namespace, c.namespace_labels) => Ok(Chosen::Cluster(cpc)),
            None if name == DEFAULT_NAME && c.flags.admits(namespace) => Ok(Chosen::Flags),
            _ if name == DEFAULT_NAME => Err(format!(
                "no provider configuration admits namespace {namespace}: create a ProviderConfig named {DEFAULT_NAME} in it, or have a ClusterProviderConfig admit it"
            )),
            _ => Err(format!(
                "no ClusterProviderConfig named {name} admits namespace {namespace} (it does not exist, or its spec.namespaces and spec.namespaceSelector leave the namespace out)"
            )),
        }
    };
    match reference {
        Some(r) if r.kind == ProviderConfigKind::ProviderConfig => (c.namespaced)(&r.name)
            .map(Chosen::Namespaced)
            .ok_or_else(|| {
                format!(
                    "the ProviderConfig {namespace}/{} named by spec.providerConfigRef does not exist",
                    r.name
                )
            }),
        Some(r) => cluster(&r.name),
        None => match (c.namespaced)(DEFAULT_NAME) {
            Some(pc) => Ok(Chosen::Namespaced(pc)),
            None => cluster(DEFAULT_NAME),
        },
    }
}

/// The two configuration CRDs.
pub fn crds(
) -> [k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition; 2]
{
    [ProviderConfig::crd(), ClusterProviderConfig::crd()]
}

/// The two configuration CRDs as YAML, exactly as `channel-operator crd --provider-configs`
/// prints them and `crds/provider-config.yaml` holds them.
pub fn crds_yaml() -> String {
    let mut out = String::from(
        "# Generated by `channel-operator crd --provider-configs` from src/provider_config.rs. Do not edit by hand.\n",
    );
    let docs: Vec<String> = crds()
        .iter()
        .map(|crd| serde_yaml::to_string(crd).expect("CRD serializes to YAML"))
        .collect();
    out.push_str(&docs.join("---\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pc(ns: &str, name: &str) -> Arc<ProviderConfig> {
        let mut pc = ProviderConfig::new(name, ProviderConfigSpec::default());
        pc.metadata.namespace = Some(ns.into());
        Arc::new(pc)
    }

    fn cpc(
        name: &str,
        namespaces: &[&str],
        selector: Option<LabelSelector>,
    ) -> Arc<ClusterProviderConfig> {
        Arc::new(ClusterProviderConfig::new(
            name,
            ClusterProviderConfigSpec {
                namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
                namespace_selector: selector,
                ..Default::default()
            },
        ))
    }

    fn flags() -> FlagsDefault {
        FlagsDefault {
            operator_namespace: "op".into(),
            namespaces: vec!["listed".into()],
        }
    }

    fn pick(
        ns: &str,
        r: Option<ProviderConfigRef>,
        pcs: &[Arc<ProviderConfig>],
        cpcs: &[Arc<ClusterProviderConfig>],
        labels: Option<&BTreeMap<String, String>>,
    ) -> Result<String, String> {
        let f = flags();
        let namespaced = |n: &str| {
            pcs.iter()
                .find(|p| p.name_any() == n && p.namespace().as_deref() == Some(ns))
                .cloned()
        };
        let cluster = |n: &str| cpcs.iter().find(|p| p.name_any() == n).cloned();
        choose(
            ns,
            r.as_ref(),
            &Candidates {
                namespaced: &namespaced,
                cluster: &cluster,
                namespace_labels: labels,
                flags: &f,
            },
        )
        .map(|c| c.describe())
    }

    #[test]
    fn the_flags_default_admits_the_operator_namespace_and_the_listed_ones_only() {
        let flags = "the operator's default configuration (flags)";
        assert_eq!(pick("op", None, &[], &[], None).unwrap(), flags);
        assert_eq!(pick("listed", None, &[], &[], None).unwrap(), flags);
        let err = pick("attacker", None, &[], &[], None).unwrap_err();
        assert!(
            err.contains("no provider configuration admits namespace attacker"),
            "{err}"
        );
    }

    #[test]
    fn a_namespace_default_wins_and_a_named_one_must_exist() {
        let pcs = [pc("t", "default"), pc("t", "other"), pc("u", "x")];
        assert_eq!(
            pick("t", None, &pcs, &[], None).unwrap(),
            "ProviderConfig t/default"
        );
        let named = ProviderConfigRef {
            kind: ProviderConfigKind::ProviderConfig,
            name: "other".into(),
        };
        assert_eq!(
            pick("t", Some(named), &pcs, &[], None).unwrap(),
            "ProviderConfig t/other"
        );
        // Another namespace's ProviderConfig is never found.
        let foreign = ProviderConfigRef {
            kind: ProviderConfigKind::ProviderConfig,
            name: "x".into(),
        };
        assert!(pick("t", Some(foreign), &pcs, &[], None).is_err());
    }

    #[test]
    fn a_cluster_config_admits_only_listed_or_selected_namespaces_and_replaces_the_flags() {
        let cpcs = [cpc("default", &["team-a"], None)];
        assert_eq!(
            pick("team-a", None, &[], &cpcs, None).unwrap(),
            "ClusterProviderConfig default"
        );
        assert!(pick("team-b", None, &[], &cpcs, None).is_err());
        // The real default replaces the flags' one, even for the operator's namespace.
        assert!(pick("op", None, &[], &cpcs, None).is_err());
        let selector = LabelSelector {
            match_labels: Some([("tier".to_string(), "paid".to_string())].into()),
            ..Default::default()
        };
        let cpcs = [cpc("shared", &[], Some(selector))];
        let r = ProviderConfigRef {
            kind: ProviderConfigKind::ClusterProviderConfig,
            name: "shared".into(),
        };
        let paid: BTreeMap<String, String> = [("tier".to_string(), "paid".to_string())].into();
        let free: BTreeMap<String, String> = [("tier".to_string(), "free".to_string())].into();
        assert_eq!(
            pick("p", Some(r.clone()), &[], &cpcs, Some(&paid)).unwrap(),
            "ClusterProviderConfig shared"
        );
        assert!(pick("p", Some(r.clone()), &[], &cpcs, Some(&free)).is_err());
        assert!(pick("p", Some(r), &[], &cpcs, None).is_err());
    }

    #[test]
    fn only_sources_with_provider_calls_need_a_configuration() {
        let needing: Vec<Source> = Source::ALL
            .into_iter()
            .filter(|s| needs_provider_config(*s))
            .collect();
        assert!(!needing.contains(&Source::ChatPlugin) && !needing.contains(&Source::Google));
        assert_eq!(needing.len(), Source::ALL.len() - 2);
    }
}
