//! The adoption records migrate writes (`--state-namespace`, `--facebook-app-id`): for each
//! connected Facebook or Instagram channel whose page token Airy Core listed, a record in the
//! operator's state namespace vouching that Airy Core's Facebook app subscribed to the page
//! ([`crate::adoption`]). With it the controller adopts the Channel — `Ready` without a provider
//! call, the subscription recorded so that a later disconnect undoes it — instead of proving its
//! credentials and connecting it again.
//!
//! Written only for a Channel the controller has not connected yet (its status not connected, no
//! record of its own in the state namespace): once adopted, the record is the controller's, and a
//! later run writes nothing. Compared before written, so a second run moves no resourceVersion.
//! Needs, with the admin's kubeconfig: get, create and update of Secrets in the state namespace.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};

use super::plan::{Credentials, Planned};
use crate::adoption::{self, Adoption};
use crate::crd::{Channel, Source};
use crate::effects::{EffectKey, EffectKind};
use crate::naming::ChatPluginNaming;

/// What Airy Core made at the provider for `p`, with the Facebook app `app`: the page
/// subscription of a connected Facebook channel (its page) or Instagram channel (its linked
/// page), when Airy Core listed its token; else why nothing is vouched for.
pub fn effects(p: &Planned, app: Option<&str>) -> Result<Vec<EffectKey>, String> {
    let spec = &p.channel.spec;
    let page = match spec.source {
        Source::Facebook => spec.source_channel_id.as_str(),
        Source::Instagram => match &spec.instagram {
            Some(i) => i.page_id.as_str(),
            None => return Err("no linked page".into()),
        },
        // Nothing else of Airy Core's is made at a provider by its connect.
        _ => return Ok(Vec::new()),
    };
    if !spec.connected {
        return Ok(Vec::new());
    }
    if !matches!(p.credentials, Some(Credentials::Write { .. })) {
        return Err("Airy Core did not list its page token, which an undo needs".into());
    }
    let app = app.ok_or("--facebook-app-id (the Facebook app of Airy Core) was not given")?;
    Ok(vec![EffectKey::new(
        EffectKind::PageSubscription,
        page,
        app,
    )])
}

/// What `--apply` would write for `p` (in a dry run: the cluster is not read).
pub fn would_vouch(p: &Planned, app: Option<&str>) -> Vouched {
    match effects(p, app) {
        Ok(e) if e.is_empty() => Vouched::NotNeeded,
        Ok(_) => Vouched::Written,
        Err(why) => Vouched::Not(why),
    }
}

/// What became of an adoption record.
#[derive(Clone, Debug, PartialEq)]
pub enum Vouched {
    /// Written (created, or replaced one that said something else).
    Written,
    /// Already as planned.
    Unchanged,
    /// None needed: the Channel is connected by the controller already, or Airy Core made
    /// nothing at a provider for it.
    NotNeeded,
    /// None written: why (the controller connects the Channel with proof).
    Not(String),
}

/// Where and on whose word adoption records are written.
pub struct Vouching {
    /// The cluster of the current kubeconfig.
    pub client: Client,
    /// The operator's state namespace.
    pub state: String,
    /// The namespace of the Channels.
    pub namespace: String,
    /// The installation's chat plugin naming (the Channels' channel ids).
    pub naming: ChatPluginNaming,
    /// The Airy Core API the channels were read from.
    pub from: String,
    /// The Facebook app Airy Core subscribed its pages with.
    pub app: Option<String>,
}

impl Vouching {
    /// Writes the adoption record of the planned Channel `p` (as the cluster has it now).
    pub async fn write(&self, p: &Planned) -> Vouched {
        let effects = match (
            would_vouch(p, self.app.as_deref()),
            effects(p, self.app.as_deref()),
        ) {
            (Vouched::Written, Ok(e)) => e,
            (other, _) => return other,
        };
        let Some(Credentials::Write { token, .. }) = &p.credentials else {
            return Vouched::NotNeeded;
        };
        let (client, state, namespace) = (&self.client, self.state.as_str(), &self.namespace);
        let failed = |what: &str, e: kube::Error| Vouched::Not(format!("{what} failed: {e}"));
        let channels: Api<Channel> = Api::namespaced(client.clone(), namespace);
        let channel = match channels.get_opt(&p.channel.name_any()).await {
            Ok(Some(c)) => c,
            Ok(None) => return Vouched::Not("the Channel is not in the cluster".into()),
            Err(e) => return failed("reading the Channel", e),
        };
        let uid = channel.uid().unwrap_or_default();
        let secrets: Api<Secret> = Api::namespaced(client.clone(), state);
        if channel.status.as_ref().is_some_and(|s| s.connected) {
            return Vouched::NotNeeded;
        }
        match secrets
            .get_opt(&crate::controller::record_name(&channel))
            .await
        {
            Ok(Some(_)) => return Vouched::NotNeeded,
            Ok(None) => {}
            Err(e) => return failed(&format!("reading the state namespace {state}"), e),
        }
        let record = adoption::Record {
            uid: uid.clone(),
            adoption: Adoption {
                namespace: namespace.to_owned(),
                name: channel.name_any(),
                source: channel.spec.source,
                source_channel_id: channel.spec.source_channel_id.clone(),
                channel_id: channel.channel_id(self.naming),
                from: self.from.clone(),
                effects,
            },
            token: token.clone(),
        };
        let mut wanted = record.to_secret(state);
        let pp = PostParams {
            field_manager: Some(super::FIELD_MANAGER.to_owned()),
            ..Default::default()
        };
        match secrets.get_opt(&adoption::name(&uid)).await {
            Err(e) => failed("reading the adoption record", e),
            Ok(None) => match secrets.create(&pp, &wanted).await {
                Ok(_) => Vouched::Written,
                Err(e) => failed("creating the adoption record", e),
            },
            Ok(Some(s)) if adoption::Record::from_secret(&s).as_ref() == Ok(&record) => {
                Vouched::Unchanged
            }
            Ok(Some(s)) => {
                wanted.metadata.resource_version = s.metadata.resource_version;
                match secrets.replace(&adoption::name(&uid), &pp, &wanted).await {
                    Ok(_) => Vouched::Written,
                    Err(e) => failed("updating the adoption record", e),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel_id::channel_id_string;
    use crate::migrate::airy::AiryChannel;
    use crate::migrate::plan::{plan_one, Context};
    use crate::secret::SecretString;

    fn planned(source: &str, token: bool, connected: bool) -> Planned {
        let ch = AiryChannel {
            id: channel_id_string(source, "1784"),
            source: source.into(),
            source_channel_id: "1784".into(),
            name: None,
            image_url: None,
            connected,
            page_token: token.then(|| SecretString::new("EAA-airy")),
            page_id: Some("1001".into()),
        };
        let ctx = Context {
            namespace: "airy".into(),
            naming: Default::default(),
            from: "https://airy.example.org".into(),
        };
        plan_one(&ch, &ctx).unwrap()
    }

    #[test]
    fn airy_core_vouches_for_the_page_subscriptions_its_app_made() {
        let page = |p: &str| vec![EffectKey::new(EffectKind::PageSubscription, p, "app")];
        // Facebook: its page; Instagram: its linked page.
        assert_eq!(
            effects(&planned("facebook", true, true), Some("app")),
            Ok(page("1784"))
        );
        assert_eq!(
            effects(&planned("instagram", true, true), Some("app")),
            Ok(page("1001"))
        );
        // Nothing made: not connected, or a source Airy Core's connect calls no provider for.
        assert_eq!(
            effects(&planned("facebook", true, false), Some("app")),
            Ok(vec![])
        );
        assert_eq!(
            effects(&planned("google", false, true), Some("app")),
            Ok(vec![])
        );
        // Made, but not vouched for: no token to undo it with, or no app named.
        let no_token = effects(&planned("facebook", false, true), Some("app")).unwrap_err();
        assert!(no_token.contains("page token"), "{no_token}");
        let no_app = effects(&planned("instagram", true, true), None).unwrap_err();
        assert!(no_app.contains("--facebook-app-id"), "{no_app}");
    }
}
