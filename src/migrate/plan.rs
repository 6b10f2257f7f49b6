//! What migrate writes for each Airy Core channel: its Channel (source, source channel id, name,
//! image, connected state, the id pinned where it is not the deterministic one) and its
//! credentials Secret, or why it is skipped. Pure: no cluster, no Airy Core.

use std::collections::BTreeMap;
use std::collections::HashMap;

use kube::ResourceExt;
use serde_json::Value;

use super::airy::{AiryChannel, Unreadable};
use super::names::channel_name;
use super::{MIGRATED_FROM, MIGRATED_LABEL};
use crate::crd::{Channel, ChannelSpec, InstagramSpec, SecretKeyRef, Source};
use crate::naming::ChatPluginNaming;
use crate::ownership::{credentials_secret_name, PAGE_TOKEN_KEY};
use crate::rules;
use crate::secret::SecretString;

/// Where the Channels go and what they are compared with.
#[derive(Clone, Debug)]
pub struct Context {
    /// The namespace of the Channels and their Secrets.
    pub namespace: String,
    /// The installation's chat plugin naming (its deterministic chat plugin ids).
    pub naming: ChatPluginNaming,
    /// The Airy Core API the channels are read from, without credentials (an annotation).
    pub from: String,
}

/// The credentials of a planned Channel.
#[derive(Clone, Debug, PartialEq)]
pub enum Credentials {
    /// Airy Core listed the token: migrate writes it into this Secret.
    Write {
        /// The Secret's name (it follows the token, as the API's do).
        name: String,
        /// The token.
        token: SecretString,
    },
    /// Airy Core did not list the token: the Channel names this Secret, which its owner creates.
    Missing {
        /// The Secret's name.
        name: String,
    },
}

impl Credentials {
    /// The Secret's name.
    pub fn name(&self) -> &str {
        match self {
            Credentials::Write { name, .. } | Credentials::Missing { name } => name,
        }
    }
}

/// One channel, ready to write.
#[derive(Clone, Debug)]
pub struct Planned {
    /// `source source_channel_id (id)`, for the report.
    pub what: String,
    /// The Channel as migrate writes it (no status).
    pub channel: Channel,
    /// Its credentials Secret, for the sources that have one.
    pub credentials: Option<Credentials>,
    /// What of Airy Core's channel was not kept, and why.
    pub notes: Vec<String>,
}

impl Planned {
    /// Whether the Channel pins its id (`spec.channelId`).
    pub fn pinned(&self) -> bool {
        self.channel.spec.channel_id.is_some()
    }

    /// The Channel as applied (server-side apply) and printed: what migrate decides, nothing
    /// else (no status; no `deletionPolicy`, which stays the Channel owner's).
    pub fn applied(&self) -> Value {
        let mut v = serde_json::to_value(&self.channel).expect("a Channel serializes");
        if let Value::Object(m) = &mut v {
            m.remove("status");
        }
        if let Some(Value::Object(spec)) = v.get_mut("spec") {
            spec.remove("deletionPolicy");
        }
        v
    }
}

/// A channel of Airy Core's list that is not moved.
#[derive(Clone, Debug, PartialEq)]
pub struct Skipped {
    /// The channel (`source source_channel_id (id)`, or its position in the list).
    pub what: String,
    /// Why.
    pub why: String,
}

/// The sources channel-operator connects, as Airy Core spells them (both chat plugin names).
fn source_of(airy: &str) -> Option<Source> {
    crate::naming::parse_source(airy)
}

/// What migrate writes for one Airy Core channel, or why it is skipped.
pub fn plan_one(ch: &AiryChannel, ctx: &Context) -> Result<Planned, String> {
    let source = source_of(&ch.source).ok_or_else(|| {
        format!(
            "source {:?} is not one channel-operator connects",
            ch.source
        )
    })?;
    let id = crate::channel_id::parse_channel_id(&ch.id)
        .ok_or_else(|| format!("its id {:?} is not a UUID", ch.id))?;
    let scid = &ch.source_channel_id;
    let deterministic = ctx.naming.id_of(source, scid);
    let pin = if id == deterministic {
        None
    } else if source == Source::ChatPlugin
        || crate::pinned_id::derived_ids(source, scid).contains(&id)
    {
        Some(id.clone())
    } else {
        return Err(format!(
            "Airy Core's id {id} is not derived from {source} {scid} ({deterministic}): one {source} \
             resource never has two ids, so it is not moved"
        ));
    };
    let name = channel_name(source, scid, &id);
    let mut notes = Vec::new();
    let display = ch.name.clone().filter(|n| {
        let ok = n.chars().count() <= rules::MAX_NAME_LEN && rules::is_visible_text(n);
        if !ok {
            notes.push(format!(
                "its name was not kept: it is longer than {} characters or has invisible characters",
                rules::MAX_NAME_LEN
            ));
        }
        ok
    });
    let image_url = ch.image_url.clone().filter(|u| {
        let ok = rules::is_http_url(u);
        if !ok {
            notes.push("its image was not kept: not an absolute http(s) URL".into());
        }
        ok
    });
    let credentials =
        rules::SOURCES_WITH_CREDENTIALS
            .contains(&source)
            .then(|| match &ch.page_token {
                Some(token) => Credentials::Write {
                    name: credentials_secret_name(&name, token.expose()),
                    token: token.clone(),
                },
                None => Credentials::Missing {
                    name: format!("{name}-credentials"),
                },
            });
    let instagram = match (source, &ch.page_id) {
        (Source::Instagram, Some(page)) => Some(InstagramSpec {
            page_id: page.clone(),
        }),
        (Source::Instagram, None) => {
            return Err(
                "Airy Core lists no linked Facebook page (metadata.page_id) for it \
                 (releases before 0.37 do not): declare it by hand with spec.instagram.pageId"
                    .into(),
            )
        }
        _ => None,
    };
    let spec = ChannelSpec {
        channel_id: pin,
        name: display,
        image_url,
        connected: ch.connected,
        credentials_secret_ref: credentials.as_ref().map(|c| SecretKeyRef {
            name: c.name().to_owned(),
            key: PAGE_TOKEN_KEY.to_owned(),
        }),
        instagram,
        ..ChannelSpec::new(source, scid.clone())
    };
    rules::validate_spec(&spec).map_err(|e| format!("channel-operator refuses it: {e}"))?;
    let mut channel = Channel::new(&name, spec);
    channel.metadata.namespace = Some(ctx.namespace.clone());
    channel.metadata.labels = Some(BTreeMap::from([(
        MIGRATED_LABEL.to_owned(),
        "true".to_owned(),
    )]));
    channel.metadata.annotations = Some(BTreeMap::from([(
        MIGRATED_FROM.to_owned(),
        ctx.from.clone(),
    )]));
    Ok(Planned {
        what: describe(ch),
        channel,
        credentials,
        notes,
    })
}

/// `source source_channel_id (id)`.
pub fn describe(ch: &AiryChannel) -> String {
    format!("{} {} ({})", ch.source, ch.source_channel_id, ch.id)
}

/// What migrate writes for each channel of Airy Core's list, in its order, and what it skips
/// (an entry that is no channel, a channel it refuses, one that would be a second Channel of a
/// name, id or provider resource already planned).
pub fn plan_all(
    channels: &[AiryChannel],
    unreadable: &[Unreadable],
    ctx: &Context,
) -> (Vec<Planned>, Vec<Skipped>) {
    let mut skipped: Vec<Skipped> = unreadable
        .iter()
        .map(|u| Skipped {
            what: format!("entry {} of the list", u.position),
            why: format!("not a channel: {}", u.why),
        })
        .collect();
    let mut planned: Vec<Planned> = Vec::with_capacity(channels.len());
    // Name, id and claim → the channel planned with it.
    let mut taken: HashMap<String, String> = HashMap::new();
    for ch in channels {
        let p = match plan_one(ch, ctx) {
            Ok(p) => p,
            Err(why) => {
                skipped.push(Skipped {
                    what: describe(ch),
                    why,
                });
                continue;
            }
        };
        let keys = [
            format!("name {}", p.channel.name_any()),
            format!("id {}", p.channel.channel_id(ctx.naming)),
            format!("claim {}", crate::claims::name(&p.channel)),
        ];
        if let Some(first) = keys.iter().find_map(|k| taken.get(k)) {
            skipped.push(Skipped {
                what: p.what,
                why: format!("Airy Core listed the same channel before: {first}"),
            });
            continue;
        }
        for k in keys {
            taken.insert(k, p.what.clone());
        }
        planned.push(p);
    }
    (planned, skipped)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
