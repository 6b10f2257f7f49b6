//! The controller's state machine: from a Channel and what was observed around it, the one step
//! to take now. Pure; the executors in `reconcile` carry the steps out.

use kube::ResourceExt;

use super::logic;
use super::secrets::{Credentials, TokenSecret};
use crate::channel_state::{may_be_connected, needs_provider};
use crate::claims::Holder;
use crate::crd::Channel;
use crate::reason::Reason;

/// What a reconcile observed besides the Channel itself.
#[derive(Debug)]
pub struct Observed {
    /// Why the spec is invalid, if it is.
    pub invalid: Option<String>,
    /// The claim of the Channel's source channel id (see `crate::claims`).
    pub claim: Claim,
    /// `(namespace, name)` of another Channel with the same source channel id that may hold a
    /// connection without a claim (connected before claims existed): while there is one, a
    /// Channel that holds no connection does not claim.
    pub rival: Option<(String, String)>,
    /// The credentials, when the provider needs them to connect: `Err` says why they are missing.
    pub credentials: Result<Option<Credentials>, String>,
    /// What lies at the name of the Channel's token Secret (`Absent` where none is used).
    pub token_secret: TokenSecret,
    /// Whether a connected channel is due for a re-check at its provider.
    pub recheck_due: bool,
    /// Whether the Channel has a usable provider configuration where a provider call needs one:
    /// `Err` says why not (then no provider may be called); `Ok(Some(config))` names a
    /// configuration resource (`None`: the flags' accounts, or none needed), part of the
    /// connection inputs.
    pub provider_config: Result<Option<String>, String>,
}

/// What the claim of a Channel's source channel id says.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// Not read (the Channel is invalid).
    NotRead,
    /// No claim: the first to create it owns the channel.
    Free,
    /// This Channel owns the channel.
    Ours(Holder),
    /// Another Channel that exists owns it (`namespace`, `name`; empty for a claim that names
    /// no Channel).
    Held(String, String),
    /// A claim whose owner no longer exists.
    Orphaned(Holder),
}

/// The one thing to do now.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Report a failure that retrying cannot fix; call no provider.
    Stall {
        /// The Ready reason.
        reason: Reason,
        /// What the user must fix.
        message: String,
    },
    /// Record the attempt, connect at the provider, keep its token, report `Connected`.
    Connect {
        /// The connection inputs.
        fingerprint: String,
    },
    /// Already connected with these inputs: re-check at the provider when due, report `Connected`.
    Confirm {
        /// The connection inputs.
        fingerprint: String,
        /// Whether to re-check at the provider.
        recheck: bool,
    },
    /// Create the claim; plan again as its owner, or look again when another was first.
    Claim,
    /// Delete the claim of an owner that no longer exists (guarded by its uid and
    /// resourceVersion), then create ours.
    Reclaim(Holder),
    /// Disconnect at the provider, delete the derived token Secret, report `Disconnected`.
    Disconnect,
    /// Nothing to undo at the provider: delete the derived token Secret unless `Disconnected`
    /// was already reported for this generation, report `Disconnected`.
    ReportDisconnected {
        /// Whether to look for a derived token Secret to delete.
        cleanup: bool,
    },
    /// The Channel is being deleted: disconnect at the provider if `disconnect`, delete the owned
    /// Secrets, delete the claim it holds, let it go.
    Release {
        /// Whether the provider must be called.
        disconnect: bool,
        /// The claim to delete after that.
        claim: Option<Holder>,
    },
}

/// The step for `ch`.
pub fn plan(ch: &Channel, observed: &Observed) -> Step {
    let status = ch.status.clone().unwrap_or_default();
    if ch.metadata.deletion_timestamp.is_some() {
        let disconnect = needs_provider(ch);
        if let (true, Err(message)) = (disconnect, &observed.provider_config) {
            // Undoing the connection needs the accounts it was made with: restore the
            // configuration, or set deletionPolicy Orphan to let the Channel go without a call.
            return stall(Reason::ProviderConfigMissing, message.clone());
        }
        return Step::Release {
            disconnect,
            claim: match &observed.claim {
                Claim::Ours(h) => Some(h.clone()),
                _ => None,
            },
        };
    }
    if let Some(message) = &observed.invalid {
        return stall(Reason::InvalidSpec, message.clone());
    }
    // Claiming is needed to connect, and to undo a connection made before claims existed.
    let wants = needs_provider(ch);
    if let (true, Err(message)) = (wants, &observed.provider_config) {
        // Before any claim: a namespace no configuration admits claims no channel id either.
        return stall(Reason::ProviderConfigMissing, message.clone());
    }
    match (&observed.claim, &observed.rival) {
        (Claim::Held(ns, name), _) => return duplicate(ch, ns, name),
        (Claim::Free | Claim::Orphaned(_), Some((ns, name))) if !may_be_connected(&status) => {
            return duplicate(ch, ns, name)
        }
        (Claim::Free, _) if wants => return Step::Claim,
        (Claim::Orphaned(h), _) if wants => return Step::Reclaim(h.clone()),
        _ => {}
    }
    if !ch.spec.connected {
        if may_be_connected(&status) {
            return Step::Disconnect;
        }
        let reported = ch
            .verdict_at(ch.metadata.generation.unwrap_or(0))
            .is_some_and(|c| c.status == "True" && c.reason == Reason::Disconnected);
        return Step::ReportDisconnected { cleanup: !reported };
    }
    let version = match &observed.credentials {
        Err(message) => return stall(Reason::CredentialsMissing, message.clone()),
        Ok(c) => c.as_ref().map(|c| c.version.as_str()),
    };
    if let TokenSecret::Foreign = observed.token_secret {
        return stall(
            Reason::SecretConflict,
            super::secrets::conflict_message(
                ch,
                &super::secrets::token_secret_name(&ch.name_any()),
            ),
        );
    }
    let mut fingerprint = logic::fingerprint(&ch.spec, version);
    if let Ok(Some(config)) = &observed.provider_config {
        // Connected with other accounts: connect again with this configuration's.
        fingerprint.push_str(&format!(";config={config}"));
    }
    if status.connected && status.connected_with.as_deref() == Some(fingerprint.as_str()) {
        Step::Confirm {
            fingerprint,
            recheck: observed.recheck_due,
        }
    } else {
        Step::Connect { fingerprint }
    }
}

/// The Duplicate stall: the message names the owner only when it is in the Channel's namespace.
fn duplicate(ch: &Channel, ns: &str, name: &str) -> Step {
    let owner = if !name.is_empty() && ch.namespace().as_deref() == Some(ns) {
        format!("the Channel {ns}/{name}")
    } else {
        "a Channel of another namespace".to_owned()
    };
    stall(
        Reason::Duplicate,
        format!(
            "{} {} is claimed by {owner}; this Channel is not connected",
            ch.spec.source, ch.spec.source_channel_id
        ),
    )
}

fn stall(reason: Reason, message: String) -> Step {
    Step::Stall { reason, message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ChannelSpec, ChannelStatus, DeletionPolicy, SecretKeyRef, Source};
    use crate::secret::SecretString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn facebook() -> Channel {
        let mut ch = Channel::new(
            "shop",
            ChannelSpec {
                credentials_secret_ref: Some(SecretKeyRef {
                    name: "tok".into(),
                    key: "page_token".into(),
                }),
                ..ChannelSpec::new(Source::Facebook, "page-1")
            },
        );
        ch.metadata.namespace = Some("ns".into());
        ch.metadata.uid = Some("uid-1".into());
        ch.metadata.generation = Some(1);
        ch
    }

    fn observed() -> Observed {
        Observed {
            invalid: None,
            claim: Claim::Ours(holder()),
            rival: None,
            credentials: Ok(Some(Credentials {
                token: SecretString::new("t"),
                version: "7".into(),
            })),
            token_secret: TokenSecret::Absent,
            recheck_due: false,
            provider_config: Ok(None),
        }
    }

    fn holder() -> Holder {
        Holder {
            namespace: "ns".into(),
            name: "shop".into(),
            uid: "uid-1".into(),
            claim_uid: "claim-uid".into(),
            claim_version: "3".into(),
        }
    }

    const FP: &str = "facebook/page-1;secret=tok/page_token@7";

    fn connected(mut ch: Channel, with: &str) -> Channel {
        ch.status = Some(ChannelStatus {
            connected: true,
            connected_with: Some(with.into()),
            ..Default::default()
        });
        ch
    }

    #[test]
    fn a_new_channel_connects_and_a_connected_one_is_only_confirmed() {
        let ch = facebook();
        assert_eq!(
            plan(&ch, &observed()),
            Step::Connect {
                fingerprint: FP.into()
            }
        );
        let ch = connected(ch, FP);
        let mut o = observed();
        o.recheck_due = true;
        assert_eq!(
            plan(&ch, &o),
            Step::Confirm {
                fingerprint: FP.into(),
                recheck: true
            }
        );
        // New credentials (another Secret version): connect again.
        let ch = connected(facebook(), "facebook/page-1;secret=tok/page_token@6");
        assert!(matches!(plan(&ch, &observed()), Step::Connect { .. }));
    }

    #[test]
    fn failures_that_retrying_cannot_fix_stall_in_a_fixed_order() {
        let ch = facebook();
        let mut o = observed();
        o.token_secret = TokenSecret::Foreign;
        let Step::Stall { reason, message } = plan(&ch, &o) else {
            panic!("no stall")
        };
        assert_eq!(reason, Reason::SecretConflict);
        assert!(message.contains("ns/shop-facebook-token"), "{message}");
        o.credentials = Err("no Secret".into());
        assert_eq!(
            plan(&ch, &o),
            stall(Reason::CredentialsMissing, "no Secret".into())
        );
        o.claim = Claim::Held("ns".into(), "older".into());
        assert!(matches!(
            plan(&ch, &o),
            Step::Stall {
                reason: Reason::Duplicate,
                ..
            }
        ));
        o.invalid = Some("spec.name must not be empty".into());
        assert_eq!(
            plan(&ch, &o),
            stall(Reason::InvalidSpec, "spec.name must not be empty".into())
        );
    }

    #[test]
    fn without_a_usable_provider_configuration_no_step_calls_a_provider() {
        let none = || {
            let mut o = observed();
            o.provider_config = Err("no provider configuration admits namespace ns".into());
            o
        };
        let stalled = stall(
            Reason::ProviderConfigMissing,
            "no provider configuration admits namespace ns".into(),
        );
        assert_eq!(plan(&facebook(), &none()), stalled);
        // Disconnecting a connected channel, or deleting it, needs the accounts too.
        let mut ch = connected(facebook(), FP);
        ch.spec.connected = false;
        assert_eq!(plan(&ch, &none()), stalled);
        ch.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        assert_eq!(plan(&ch, &none()), stalled);
        ch.spec.deletion_policy = DeletionPolicy::Orphan;
        assert!(matches!(
            plan(&ch, &none()),
            Step::Release {
                disconnect: false,
                ..
            }
        ));
        // Nothing to undo: reports Disconnected without a configuration.
        let mut ch = facebook();
        ch.spec.connected = false;
        assert_eq!(
            plan(&ch, &none()),
            Step::ReportDisconnected { cleanup: true }
        );
        // No claim is taken for a Channel that may not call its provider.
        let mut o = none();
        o.claim = Claim::Free;
        assert_eq!(plan(&facebook(), &o), stalled);
    }

    #[test]
    fn another_configuration_means_connecting_again() {
        let mut o = observed();
        o.provider_config = Ok(Some("ProviderConfig/ns/default".into()));
        let fp = format!("{FP};config=ProviderConfig/ns/default");
        assert_eq!(
            plan(&facebook(), &o),
            Step::Connect {
                fingerprint: fp.clone()
            }
        );
        // Connected with the flags' accounts (no config in the inputs): connect again.
        assert!(matches!(
            plan(&connected(facebook(), FP), &o),
            Step::Connect { .. }
        ));
        assert!(matches!(
            plan(&connected(facebook(), &fp), &o),
            Step::Confirm { .. }
        ));
    }

    #[test]
    fn disconnecting_calls_the_provider_when_a_connect_may_have_happened() {
        let mut ch = facebook();
        ch.spec.connected = false;
        assert_eq!(
            plan(&ch, &observed()),
            Step::ReportDisconnected { cleanup: true }
        );
        ch.status = Some(ChannelStatus {
            connect_attempted: Some(FP.into()),
            ..Default::default()
        });
        assert_eq!(plan(&ch, &observed()), Step::Disconnect);
        let mut ch = connected(ch, FP);
        ch.spec.connected = false;
        assert_eq!(plan(&ch, &observed()), Step::Disconnect);
        // Disconnected already reported for this generation.
        let mut ch = facebook();
        ch.spec.connected = false;
        ch.status = Some(ChannelStatus {
            observed_generation: Some(1),
            conditions: super::super::status::conditions(
                &[],
                Reason::Disconnected,
                "",
                Some(1),
                &Time(k8s_openapi::jiff::Timestamp::now()),
            ),
            ..Default::default()
        });
        assert_eq!(
            plan(&ch, &observed()),
            Step::ReportDisconnected { cleanup: false }
        );
    }

    #[test]
    fn deletion_disconnects_only_with_the_disconnect_policy_and_a_possible_connection() {
        let mut ch = facebook();
        ch.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        let release = |disconnect| Step::Release {
            disconnect,
            claim: Some(holder()),
        };
        assert_eq!(plan(&ch, &observed()), release(false));
        ch.status = Some(ChannelStatus {
            connect_attempted: Some(FP.into()),
            ..Default::default()
        });
        assert_eq!(plan(&ch, &observed()), release(true));
        ch.spec.deletion_policy = DeletionPolicy::Orphan;
        assert_eq!(plan(&ch, &observed()), release(false));
    }

    #[test]
    fn the_first_claim_owns_the_channel_and_a_connection_is_never_demoted_for_a_rival() {
        let ch = facebook();
        let mut o = observed();
        o.claim = Claim::Free;
        assert_eq!(plan(&ch, &o), Step::Claim);
        o.claim = Claim::Orphaned(holder());
        assert_eq!(plan(&ch, &o), Step::Reclaim(holder()));
        // Held by another: Duplicate, naming only an owner of the Channel's own namespace.
        o.claim = Claim::Held("other-tenant".into(), "theirs".into());
        let Step::Stall { reason, message } = plan(&ch, &o) else {
            panic!("no stall")
        };
        assert_eq!(reason, Reason::Duplicate);
        assert!(!message.contains("other-tenant"), "{message}");
        o.claim = Claim::Held("ns".into(), "older".into());
        assert!(
            matches!(plan(&ch, &o), Step::Stall { message, .. } if message.contains("ns/older"))
        );
        // A rival connected before claims existed: a new Channel waits, a connected one claims.
        o.claim = Claim::Free;
        o.rival = Some(("ns".into(), "legacy".into()));
        assert!(matches!(
            plan(&ch, &o),
            Step::Stall {
                reason: Reason::Duplicate,
                ..
            }
        ));
        assert_eq!(plan(&connected(facebook(), FP), &o), Step::Claim);
        // Nothing to connect nor undo: no claim needed.
        let mut off = facebook();
        off.spec.connected = false;
        o.rival = None;
        assert_eq!(plan(&off, &o), Step::ReportDisconnected { cleanup: true });
    }
}
