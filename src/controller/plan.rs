//! The controller's state machine: from a Channel and what was observed around it, the one step
//! to take now. Pure; the executors in `reconcile` carry the steps out.

use kube::ResourceExt;

use super::logic;
use super::secrets::{Credentials, TokenSecret};
use crate::crd::{Channel, ChannelStatus, DeletionPolicy};
use crate::reason::Reason;

/// What a reconcile observed besides the Channel itself.
#[derive(Debug)]
pub struct Observed {
    /// Why the spec is invalid, if it is.
    pub invalid: Option<String>,
    /// `namespace/name` of an older Channel with the same source and source channel id.
    pub duplicate_of: Option<String>,
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
    /// Disconnect at the provider, delete the derived token Secret, report `Disconnected`.
    Disconnect,
    /// Nothing to undo at the provider: delete the derived token Secret unless already settled, report
    /// `Disconnected`.
    Settle {
        /// Whether to look for a derived token Secret to delete.
        cleanup: bool,
    },
    /// The Channel is being deleted: disconnect at the provider if `disconnect`, delete the owned
    /// Secrets, let it go.
    Release {
        /// Whether the provider must be called.
        disconnect: bool,
    },
}

/// Whether the provider may hold a connection for this status: connected, or a connect was
/// started whose outcome is not known.
pub fn may_be_connected(status: &ChannelStatus) -> bool {
    status.connected || status.connected_with.is_some() || status.connect_attempted.is_some()
}

/// The step for `ch`.
pub fn plan(ch: &Channel, observed: &Observed) -> Step {
    let status = ch.status.clone().unwrap_or_default();
    if ch.metadata.deletion_timestamp.is_some() {
        let disconnect =
            ch.spec.deletion_policy == DeletionPolicy::Disconnect && may_be_connected(&status);
        if let (true, Err(message)) = (disconnect, &observed.provider_config) {
            // Undoing the connection needs the accounts it was made with: restore the
            // configuration, or set deletionPolicy Orphan to let the Channel go without a call.
            return stall(Reason::ProviderConfigMissing, message.clone());
        }
        return Step::Release { disconnect };
    }
    if let Some(message) = &observed.invalid {
        return stall(Reason::InvalidSpec, message.clone());
    }
    if let Some(owner) = &observed.duplicate_of {
        return stall(
            Reason::Duplicate,
            format!(
                "{} {} belongs to the older Channel {owner}; this Channel is not connected",
                ch.spec.source, ch.spec.source_channel_id
            ),
        );
    }
    if let Err(message) = &observed.provider_config {
        if ch.spec.connected || may_be_connected(&status) {
            return stall(Reason::ProviderConfigMissing, message.clone());
        }
    }
    if !ch.spec.connected {
        if may_be_connected(&status) {
            return Step::Disconnect;
        }
        let settled = status.observed_generation == ch.metadata.generation
            && ch
                .ready_condition()
                .is_some_and(|c| c.status == "True" && c.reason == Reason::Disconnected);
        return Step::Settle { cleanup: !settled };
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

fn stall(reason: Reason, message: String) -> Step {
    Step::Stall { reason, message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ChannelSpec, SecretKeyRef, Source};
    use crate::secret::Secret;
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
            duplicate_of: None,
            credentials: Ok(Some(Credentials {
                token: Secret::new("t"),
                version: "7".into(),
            })),
            token_secret: TokenSecret::Absent,
            recheck_due: false,
            provider_config: Ok(None),
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
        o.duplicate_of = Some("ns/older".into());
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
        assert_eq!(plan(&ch, &none()), Step::Release { disconnect: false });
        // Nothing to undo: settles without a configuration; a duplicate stays a duplicate.
        let mut ch = facebook();
        ch.spec.connected = false;
        assert_eq!(plan(&ch, &none()), Step::Settle { cleanup: true });
        let mut o = none();
        o.duplicate_of = Some("ns/older".into());
        assert!(matches!(
            plan(&facebook(), &o),
            Step::Stall {
                reason: Reason::Duplicate,
                ..
            }
        ));
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
        assert_eq!(plan(&ch, &observed()), Step::Settle { cleanup: true });
        ch.status = Some(ChannelStatus {
            connect_attempted: Some(FP.into()),
            ..Default::default()
        });
        assert_eq!(plan(&ch, &observed()), Step::Disconnect);
        let mut ch = connected(ch, FP);
        ch.spec.connected = false;
        assert_eq!(plan(&ch, &observed()), Step::Disconnect);
        // Settled: reported Disconnected for this generation.
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
        assert_eq!(plan(&ch, &observed()), Step::Settle { cleanup: false });
    }

    #[test]
    fn deletion_disconnects_only_with_the_disconnect_policy_and_a_possible_connection() {
        let mut ch = facebook();
        ch.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        assert_eq!(plan(&ch, &observed()), Step::Release { disconnect: false });
        ch.status = Some(ChannelStatus {
            connect_attempted: Some(FP.into()),
            ..Default::default()
        });
        assert_eq!(plan(&ch, &observed()), Step::Release { disconnect: true });
        ch.spec.deletion_policy = DeletionPolicy::Orphan;
        assert_eq!(plan(&ch, &observed()), Step::Release { disconnect: false });
    }
}
