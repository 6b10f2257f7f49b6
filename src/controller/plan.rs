//! The controller's state machine: from a Channel and what was observed around it, the one step
//! to take now. Pure; the executors in `reconcile`, `connect` and `undo` carry the steps out.
//!
//! What the Channel did at its provider is its record's (`record`), never its current spec's:
//! a disconnect and a deletion undo the recorded effects, a spec or configuration that no longer
//! makes a recorded effect (a move to another account) undoes it first, and only then connects.

use kube::ResourceExt;

use super::logic;
use super::provider_configs::UsedConfig;
use super::record::Record;
use super::secrets::Credentials;
use crate::channel_state::may_be_connected;
use crate::claims::Holder;
use crate::crd::{Channel, DeletionPolicy};
use crate::effects::{Effect, EffectKey};
use crate::providers::Proof;
use crate::reason::Reason;
use crate::secret::SecretString;

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
    /// Whether a connected channel is due for a re-check at its provider.
    pub recheck_due: bool,
    /// The Channel's provider configuration, where a step needs one (to connect, or to undo a
    /// connection an older version made without a record): `Err` says why it has none (then no
    /// provider may be called for it); `Ok(None)`: the flags' accounts, or none needed.
    pub provider_config: Result<Option<UsedConfig>, String>,
    /// The Channel's record in the state namespace (what it did at its provider).
    pub record: Option<Record>,
    /// The effects a connect with the chosen configuration makes (known only where the
    /// configuration was).
    pub wanted: Vec<EffectKey>,
    /// The Channel may hold a connection an older version made, which no record describes
    /// (its status says connected or a connect attempted, and its source calls out).
    pub legacy: bool,
    /// The token such a version kept in the Channel's namespace (`<channel>-facebook-token`).
    pub legacy_token: Option<SecretString>,
    /// What proving the credentials at the provider obtained in this reconcile (before the
    /// claim), for the connect to reuse.
    pub proof: Option<Proof>,
    /// The adoption record vouching for a Channel migrate moved from Airy Core, when it
    /// matches (`adopt`): it stands in for the proof, and the Channel is adopted, not connected.
    pub adoption: Option<super::adopt::Vouched>,
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

/// What becomes of the recorded effects when a Channel goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Undo {
    /// Undone at the provider (deletionPolicy Disconnect), each by its last holder.
    Provider,
    /// Released without a provider call (deletionPolicy Orphan): they stay at the provider.
    Orphan,
    /// Nothing recorded, nothing possibly made.
    Nothing,
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
    /// Prove the credentials (unless this reconcile did), record the effects, make the ones
    /// nobody holds yet, keep the token, report `Connected`.
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
    /// Connected by an older version, with these inputs, and not recorded: record its effects as
    /// found (no provider call) and its token, then as `Confirm`.
    Adopt {
        /// The connection inputs.
        fingerprint: String,
    },
    /// Moved from Airy Core with an adoption record that matches: record what Airy Core made as
    /// adopted (no provider call), report `Connected`.
    AdoptMigrated {
        /// The connection inputs.
        fingerprint: String,
    },
    /// Prove the credentials where the source has something to prove, then create the claim;
    /// plan again as its owner, or look again when another was first.
    Claim,
    /// Prove the credentials, delete the claim of an owner that no longer exists (guarded by its
    /// uid and resourceVersion), then create ours.
    Reclaim(Holder),
    /// Undo these recorded effects at the accounts they were made with: the spec or the
    /// configuration no longer makes them (a move). Then plan again.
    Move(Vec<Effect>),
    /// Undo every recorded effect (or, without a record, the connection an older version made),
    /// delete the record, report `Disconnected`.
    Disconnect,
    /// Nothing to undo at the provider: report `Disconnected`.
    ReportDisconnected,
    /// The Channel is being deleted: undo or release its recorded effects, delete its record,
    /// its Secrets and the claim it holds, let it go.
    Release {
        /// What becomes of the recorded effects.
        undo: Undo,
        /// The claim to delete after that.
        claim: Option<Holder>,
    },
}

/// The step for `ch`.
pub fn plan(ch: &Channel, observed: &Observed) -> Step {
    let status = ch.status.clone().unwrap_or_default();
    let recorded = observed.record.is_some();
    if ch.metadata.deletion_timestamp.is_some() {
        let undo = match ch.spec.deletion_policy {
            DeletionPolicy::Disconnect if recorded || observed.legacy => Undo::Provider,
            DeletionPolicy::Orphan if recorded => Undo::Orphan,
            _ => Undo::Nothing,
        };
        if let (Undo::Provider, false, Err(message)) = (undo, recorded, &observed.provider_config) {
            // A connection an older version made names no account anywhere but in the spec's
            // configuration: restore it, or set deletionPolicy Orphan to let the Channel go.
            return stall(Reason::ProviderConfigMissing, message.clone());
        }
        return Step::Release {
            undo,
            claim: match &observed.claim {
                Claim::Ours(h) => Some(h.clone()),
                _ => None,
            },
        };
    }
    if let Some(message) = &observed.invalid {
        return stall(Reason::InvalidSpec, message.clone());
    }
    if !ch.spec.connected {
        return match (recorded, observed.legacy, &observed.provider_config) {
            (true, _, _) => Step::Disconnect,
            (false, true, Err(message)) => stall(Reason::ProviderConfigMissing, message.clone()),
            (false, true, Ok(_)) => Step::Disconnect,
            (false, false, _) => Step::ReportDisconnected,
        };
    }
    // Before any claim: a namespace no configuration admits claims no channel id either.
    let used = match &observed.provider_config {
        Err(message) => return stall(Reason::ProviderConfigMissing, message.clone()),
        Ok(used) => used.as_ref(),
    };
    let moved: Vec<Effect> = observed
        .record
        .iter()
        .flat_map(|r| &r.effects)
        .filter(|e| !observed.wanted.contains(&e.key))
        .cloned()
        .collect();
    if !moved.is_empty() {
        return Step::Move(moved);
    }
    match (&observed.claim, &observed.rival) {
        (Claim::Held(ns, name), _) => return duplicate(ch, ns, name),
        (Claim::Free | Claim::Orphaned(_), Some((ns, name))) if !may_be_connected(&status) => {
            return duplicate(ch, ns, name)
        }
        _ => {}
    }
    // Credentials that cannot be used hold nothing: no claim is taken without them.
    let version = match &observed.credentials {
        Err(message) => return stall(Reason::CredentialsMissing, message.clone()),
        Ok(c) => c.as_ref().map(|c| c.version.as_str()),
    };
    if let Some(used) = used.filter(|u| u.deleting) {
        let recorded_through = observed
            .record
            .as_ref()
            .and_then(|r| r.config())
            .is_some_and(|c| c.uid == used.reference.uid);
        if !recorded_through {
            return stall(
                Reason::ProviderConfigMissing,
                format!(
                    "the {} is being deleted: it admits no new connect (its Channels can still be disconnected, deleted or moved)",
                    used.reference.describe()
                ),
            );
        }
    }
    match &observed.claim {
        Claim::Free => return Step::Claim,
        Claim::Orphaned(h) => return Step::Reclaim(h.clone()),
        _ => {}
    }
    let mut fingerprint = logic::fingerprint(&ch.spec, version);
    if let Some(key) = used.and_then(|u| u.reference.key()) {
        // Connected with other accounts: connect again with this configuration's.
        fingerprint.push_str(&format!(";config={key}"));
    }
    if status.connected && status.connected_with.as_deref() == Some(fingerprint.as_str()) {
        if observed.legacy {
            return Step::Adopt { fingerprint };
        }
        Step::Confirm {
            fingerprint,
            recheck: observed.recheck_due,
        }
    } else if observed.adoption.is_some() {
        Step::AdoptMigrated { fingerprint }
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
    use crate::effects::{ConfigRef, EffectKind};
    use crate::provider_config::ProviderConfigKind;
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

    fn page(app: &str) -> EffectKey {
        EffectKey::new(EffectKind::PageSubscription, "page-1", app)
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
            recheck_due: false,
            provider_config: Ok(None),
            record: None,
            wanted: vec![page("app")],
            legacy: false,
            legacy_token: None,
            proof: None,
            adoption: None,
        }
    }

    /// A record of the page's subscription with `app` through `config`.
    fn record(app: &str, config: ConfigRef) -> Record {
        let effect = Effect {
            key: page(app),
            config,
        };
        Record::next(None, vec![effect], Some(SecretString::new("pa")), None)
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

    fn config(name: &str, deleting: bool) -> UsedConfig {
        UsedConfig {
            reference: ConfigRef {
                kind: Some(ProviderConfigKind::ProviderConfig),
                namespace: "ns".into(),
                name: name.into(),
                uid: format!("uid-{name}"),
            },
            deleting,
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

    fn deleted(mut ch: Channel) -> Channel {
        ch.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
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
        o.record = Some(record("app", ConfigRef::flags()));
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
        // Connected by an older version, which kept no record: recorded as found.
        let mut o = observed();
        o.legacy = true;
        assert_eq!(
            plan(&connected(facebook(), FP), &o),
            Step::Adopt {
                fingerprint: FP.into()
            }
        );
    }

    #[test]
    fn failures_that_retrying_cannot_fix_stall_in_a_fixed_order() {
        let ch = facebook();
        let mut o = observed();
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
    fn no_claim_is_taken_without_usable_credentials_or_configuration() {
        let mut o = observed();
        o.claim = Claim::Free;
        o.credentials = Err("no Secret".into());
        assert_eq!(
            plan(&facebook(), &o),
            stall(Reason::CredentialsMissing, "no Secret".into())
        );
        o.claim = Claim::Orphaned(holder());
        assert!(matches!(plan(&facebook(), &o), Step::Stall { .. }));
        o.provider_config = Err("no provider configuration admits namespace ns".into());
        assert_eq!(
            plan(&facebook(), &o),
            stall(
                Reason::ProviderConfigMissing,
                "no provider configuration admits namespace ns".into()
            )
        );
    }

    #[test]
    fn undos_work_from_the_record_without_a_configuration() {
        let none = || {
            let mut o = observed();
            o.provider_config = Err("no provider configuration admits namespace ns".into());
            o.wanted = vec![];
            o
        };
        let stalled = stall(
            Reason::ProviderConfigMissing,
            "no provider configuration admits namespace ns".into(),
        );
        assert_eq!(plan(&facebook(), &none()), stalled);
        // A recorded connection is disconnected and deleted without one.
        let mut o = none();
        o.record = Some(record("app", ConfigRef::flags()));
        let mut ch = connected(facebook(), FP);
        ch.spec.connected = false;
        assert_eq!(plan(&ch, &o), Step::Disconnect);
        let ch = deleted(ch);
        assert!(matches!(
            plan(&ch, &o),
            Step::Release {
                undo: Undo::Provider,
                ..
            }
        ));
        // An older version's connection, recorded nowhere, needs the configuration's accounts.
        let mut o = none();
        o.legacy = true;
        let mut ch = connected(facebook(), FP);
        ch.spec.connected = false;
        assert_eq!(plan(&ch, &o), stalled);
        assert_eq!(plan(&deleted(ch.clone()), &o), stalled);
        ch.spec.deletion_policy = DeletionPolicy::Orphan;
        assert!(matches!(
            plan(&deleted(ch), &o),
            Step::Release {
                undo: Undo::Nothing,
                ..
            }
        ));
        // Nothing to undo: reports Disconnected without a configuration.
        let mut ch = facebook();
        ch.spec.connected = false;
        assert_eq!(plan(&ch, &none()), Step::ReportDisconnected);
    }

    #[test]
    fn a_move_undoes_at_the_old_account_before_connecting_with_the_new() {
        let mut o = observed();
        o.provider_config = Ok(Some(config("two", false)));
        o.wanted = vec![page("app-b")];
        o.record = Some(record("app-a", config("one", false).reference));
        let ch = connected(facebook(), &format!("{FP};config=ProviderConfig/ns/one"));
        let Step::Move(moved) = plan(&ch, &o) else {
            panic!("no move")
        };
        assert_eq!(moved.len(), 1);
        assert_eq!(moved[0].key, page("app-a"));
        // Undone: the record holds nothing more; connect with the new configuration.
        o.record = Some(o.record.unwrap().with_effects(vec![]));
        assert_eq!(
            plan(&ch, &o),
            Step::Connect {
                fingerprint: format!("{FP};config=ProviderConfig/ns/two")
            }
        );
        // The same app in another configuration: nothing to undo, the record is rewritten.
        o.record = Some(record("app-b", config("one", false).reference));
        assert!(matches!(plan(&ch, &o), Step::Connect { .. }));
    }

    #[test]
    fn a_configuration_being_deleted_admits_no_new_connect_but_keeps_its_own() {
        let mut o = observed();
        o.provider_config = Ok(Some(config("one", true)));
        let Step::Stall { reason, message } = plan(&facebook(), &o) else {
            panic!("no stall")
        };
        assert_eq!(reason, Reason::ProviderConfigMissing);
        assert!(
            message.contains("ProviderConfig ns/one is being deleted"),
            "{message}"
        );
        let fp = format!("{FP};config=ProviderConfig/ns/one");
        o.record = Some(record("app", config("one", true).reference));
        assert_eq!(
            plan(&connected(facebook(), &fp), &o),
            Step::Confirm {
                fingerprint: fp,
                recheck: false
            }
        );
    }

    #[test]
    fn deletion_undoes_with_the_disconnect_policy_and_releases_with_orphan() {
        let ch = deleted(facebook());
        let release = |undo| Step::Release {
            undo,
            claim: Some(holder()),
        };
        assert_eq!(plan(&ch, &observed()), release(Undo::Nothing));
        let mut o = observed();
        o.record = Some(record("app", ConfigRef::flags()));
        assert_eq!(plan(&ch, &o), release(Undo::Provider));
        let mut orphan = ch;
        orphan.spec.deletion_policy = DeletionPolicy::Orphan;
        assert_eq!(plan(&orphan, &o), release(Undo::Orphan));
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
        assert_eq!(plan(&off, &o), Step::ReportDisconnected);
    }
}
