//! A Channel's pinned id (`spec.channelId`): the id Airy Core gave a channel where it is not the
//! deterministic one, kept when the channel moves here (`channel-operator migrate`).
//!
//! - The **effective id** of a Channel is `spec.channelId` when set, else its deterministic id
//!   ([`crate::channel_id`], under the installation's chat plugin naming). The API answers it in
//!   list, info, update and disconnect; the status reports it.
//! - Which ids a Channel may pin ([`check`]): a **chat plugin** any UUID (Airy Core draws its chat
//!   plugin ids at random since release 0.18, and several of its chat plugins may share one
//!   website name). Every other source is a resource at a provider, which must never have two
//!   ids: it may pin only an id Airy Core derives from its source and source channel id — the
//!   deterministic id, and for **Viber** also `SHA-1(account id)` as Airy Core computes Viber
//!   ids (without the source in front). Any other id is refused: the controller reports
//!   `InvalidSpec`, the API answers 400.
//! - The **claim** of a Channel (`crate::claims`) is named by [`claim_id`]: a pinned chat plugin
//!   id, else the naming-independent deterministic id. So a provider resource has one owner
//!   whatever the Channels pin, and chat plugins that share a website name each have their own.
//!
//! `spec.channelId` is set when the Channel is created, or never (a CEL rule of the CRD).

use crate::channel_id::channel_id_string;
use crate::crd::{Channel, ChannelSpec, Source};
use crate::naming::ChatPluginNaming;

/// The ids Airy Core derives for `source` and `source_channel_id` (other than a chat plugin's
/// random ones), in the order Airy Core's releases used them; lower-case.
pub fn derived_ids(source: Source, source_channel_id: &str) -> Vec<String> {
    let own = channel_id_string(source.as_str(), source_channel_id);
    match source {
        // Airy Core's Viber connector hashes the account id alone.
        Source::Viber => vec![own, channel_id_string("", source_channel_id)],
        // `chat_plugin` until release 0.12, `chatplugin` in 0.13 to 0.17.
        Source::ChatPlugin => vec![
            own,
            ChatPluginNaming::Chatplugin.id_of(source, source_channel_id),
        ],
        _ => vec![own],
    }
}

/// Whether `spec.channelId` (when set) is an id the Channel may pin; the message names the field.
pub fn check(spec: &ChannelSpec) -> Result<(), String> {
    let Some(id) = spec.channel_id.as_deref() else {
        return Ok(());
    };
    if crate::channel_id::parse_channel_id(id).as_deref() != Some(id) {
        return Err(format!(
            "spec.channelId must be a lower-case UUID, e.g. 625c0084-1043-5727-bfd9-40366ef08a64 (got {id:?})"
        ));
    }
    if spec.source == Source::ChatPlugin
        || derived_ids(spec.source, &spec.source_channel_id)
            .iter()
            .any(|d| d == id)
    {
        return Ok(());
    }
    Err(format!(
        "spec.channelId {id} is not an id of {} {}: only a chat plugin may pin another id than \
         the one derived from its source and source channel id ({}), so that one {} resource never \
         has two ids",
        spec.source,
        spec.source_channel_id,
        derived_ids(spec.source, &spec.source_channel_id).join(" or "),
        spec.source,
    ))
}

/// The effective id of `ch`: `spec.channelId` when set, else its deterministic id under `naming`.
pub fn effective_id(ch: &Channel, naming: ChatPluginNaming) -> String {
    match &ch.spec.channel_id {
        Some(id) => id.clone(),
        None => naming.id_of(ch.spec.source, &ch.spec.source_channel_id),
    }
}

/// The id a Channel's claim is named by: a chat plugin's pinned id, else the deterministic id
/// under the original naming (independent of the installation's chat plugin naming).
pub fn claim_id(spec: &ChannelSpec) -> String {
    match (&spec.channel_id, spec.source) {
        (Some(id), Source::ChatPlugin) => id.clone(),
        _ => channel_id_string(spec.source.as_str(), &spec.source_channel_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(source: Source, scid: &str, pin: Option<&str>) -> ChannelSpec {
        ChannelSpec {
            channel_id: pin.map(str::to_owned),
            ..ChannelSpec::new(source, scid)
        }
    }

    /// A random (v4) id, as Airy Core's later chat plugins have.
    const RANDOM: &str = "3f2b8c1e-9d4a-4e7b-a1c2-5d6e7f809a1b";

    #[test]
    fn a_chat_plugin_pins_any_uuid_and_is_claimed_by_it() {
        let s = spec(Source::ChatPlugin, "website-identifier-42", Some(RANDOM));
        assert_eq!(check(&s), Ok(()));
        assert_eq!(claim_id(&s), RANDOM);
        let ch = Channel::new("c", s);
        for naming in [ChatPluginNaming::ChatPlugin, ChatPluginNaming::Chatplugin] {
            assert_eq!(effective_id(&ch, naming), RANDOM);
        }
        // Unpinned: the deterministic ids of docs/channel-ids.md.
        let unpinned = Channel::new("d", spec(Source::ChatPlugin, "website-identifier-42", None));
        assert_eq!(
            effective_id(&unpinned, ChatPluginNaming::Chatplugin),
            "88b93949-a32f-502c-b56a-67c877c01ba5"
        );
        assert_eq!(
            claim_id(&unpinned.spec),
            "625c0084-1043-5727-bfd9-40366ef08a64"
        );
    }

    #[test]
    fn other_sources_pin_only_an_id_airy_derives() {
        let fb = "f405cad8-dd03-5275-be27-a660d4d64949";
        let own = channel_id_string("facebook", "1234567890");
        assert_eq!(
            check(&spec(Source::Facebook, "1234567890", Some(&own))),
            Ok(())
        );
        let e = check(&spec(Source::Facebook, "1234567890", Some(fb))).unwrap_err();
        assert!(e.contains("spec.channelId") && e.contains(&own), "{e}");
        let e = check(&spec(Source::Google, "gbm", Some(RANDOM))).unwrap_err();
        assert!(e.contains("two ids"), "{e}");
        // Viber: Airy Core's id is SHA-1 of the account id alone (computed independently:
        // Python's uuid of sha1(b"pa:5469875432398472639") with version 5 and the variant set).
        let viber = "pa:5469875432398472639";
        let airy = channel_id_string("", viber);
        assert_eq!(airy, "0441eb47-ce6b-5516-a766-123721f1f6a9");
        let s = spec(Source::Viber, viber, Some(&airy));
        assert_eq!(check(&s), Ok(()));
        // One owner of the bot whatever a Channel pins.
        assert_eq!(claim_id(&s), "e1ba047f-dda3-5514-ae02-b02d1601e612");
    }

    #[test]
    fn a_pinned_id_is_a_lower_case_uuid() {
        for bad in [
            "",
            "x",
            "3F2B8C1E-9D4A-4E7B-A1C2-5D6E7F809A1B",
            "../../claim",
        ] {
            let e = check(&spec(Source::ChatPlugin, "w", Some(bad))).unwrap_err();
            assert!(e.contains("lower-case UUID"), "{bad}: {e}");
        }
        assert_eq!(check(&spec(Source::ChatPlugin, "w", None)), Ok(()));
    }
}
