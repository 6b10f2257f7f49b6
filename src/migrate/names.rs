//! The names migrate gives Channels: `<source>-<source channel id>`, readable and stable.
//!
//! A name is a function of the channel alone (never of the other channels listed), so every run
//! gives a channel the same name:
//! - the source: `chatplugin`, `facebook`, `google`, `instagram`, `twilio-sms`,
//!   `twilio-whatsapp`, `viber`, `whatsapp`;
//! - then the source channel id in lower case, every other character than `a-z0-9` as `-`
//!   (runs of them as one, none at either end); a Twilio number without its `+` and
//!   `whatsapp:+` (the numbers' forms are fixed, so nothing is lost);
//! - then, where two channels could otherwise get one name, the first 8 hex digits of the
//!   channel id: when the source channel id lost characters on the way (`My Shop` and `my-shop`),
//!   for every chat plugin (Airy Core gives several chat plugins one website name), and when the
//!   name had to be shortened to [`MAX_LEN`] characters.
//!
//! The result is a DNS-1123 label of at most 63 characters, so the Secrets named after it
//! (`<name>-page-token-<10 hex>`, `<name>-facebook-token`) are valid too.

use crate::crd::Source;

/// Longest Channel name migrate gives.
pub const MAX_LEN: usize = 63;
/// Hex digits of the channel id that tell two channels apart.
const ID_DIGITS: usize = 8;

/// The name's first part for a source.
fn prefix(source: Source) -> &'static str {
    match source {
        Source::ChatPlugin => "chatplugin",
        Source::Facebook => "facebook",
        Source::Google => "google",
        Source::TwilioSms => "twilio-sms",
        Source::TwilioWhatsapp => "twilio-whatsapp",
        Source::Instagram => "instagram",
        Source::Whatsapp => "whatsapp",
        Source::Viber => "viber",
    }
}

/// `value` in lower case with every run of other characters than `a-z0-9` as one `-`, none at
/// either end.
fn sanitize(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_owned()
}

/// The readable part of the source channel id, and whether it is the id itself (nothing lost).
fn readable(source: Source, source_channel_id: &str) -> (String, bool) {
    let number = match source {
        Source::TwilioSms => source_channel_id.strip_prefix('+'),
        Source::TwilioWhatsapp => source_channel_id.strip_prefix("whatsapp:+"),
        _ => None,
    };
    match number {
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            (digits.to_owned(), true)
        }
        _ => {
            let s = sanitize(source_channel_id);
            let exact = s == source_channel_id;
            (s, exact)
        }
    }
}

/// The Channel name of `source`'s channel `source_channel_id` with id `id` (a lower-case UUID).
pub fn channel_name(source: Source, source_channel_id: &str, id: &str) -> String {
    let prefix = prefix(source);
    let (part, exact) = readable(source, source_channel_id);
    let tag: String = id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(ID_DIGITS)
        .collect();
    let plain = format!("{prefix}-{part}");
    if exact && source != Source::ChatPlugin && plain.len() <= MAX_LEN && !part.is_empty() {
        return plain;
    }
    // Room for `<prefix>-`, `-<tag>`.
    let room = MAX_LEN - prefix.len() - tag.len() - 2;
    let part = part[..part.len().min(room)].trim_end_matches('-');
    if part.is_empty() {
        format!("{prefix}-{tag}")
    } else {
        format!("{prefix}-{part}-{tag}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2b8c1e-9d4a-4e7b-a1c2-5d6e7f809a1b";

    fn is_label(s: &str) -> bool {
        s.len() <= 63 && crate::rules::is_namespace(s) // a DNS-1123 label
    }

    #[test]
    fn names_read_like_the_channel() {
        let cases = [
            (Source::Facebook, "1234567890", "facebook-1234567890"),
            (
                Source::Instagram,
                "17841400000000001",
                "instagram-17841400000000001",
            ),
            (Source::TwilioSms, "+491234567", "twilio-sms-491234567"),
            (
                Source::TwilioWhatsapp,
                "whatsapp:+491234567",
                "twilio-whatsapp-491234567",
            ),
            (Source::Google, "gbm-id", "google-gbm-id"),
            (
                Source::Whatsapp,
                "106540352242922",
                "whatsapp-106540352242922",
            ),
            (
                Source::Viber,
                "pa:5469875432398472639",
                "viber-pa-5469875432398472639-3f2b8c1e",
            ),
            (
                Source::ChatPlugin,
                "website-identifier-42",
                "chatplugin-website-identifier-42-3f2b8c1e",
            ),
            (
                Source::ChatPlugin,
                "My Shop — Kontakt!",
                "chatplugin-my-shop-kontakt-3f2b8c1e",
            ),
            (Source::ChatPlugin, "日本語", "chatplugin-3f2b8c1e"),
            (Source::Google, "Agent", "google-agent-3f2b8c1e"),
        ];
        for (source, scid, want) in cases {
            let name = channel_name(source, scid, ID);
            assert_eq!(name, want, "{source} {scid}");
            assert!(is_label(&name), "{name}");
        }
    }

    #[test]
    fn long_ids_are_shortened_and_tagged() {
        let scid = "a".repeat(300);
        let name = channel_name(Source::Google, &scid, ID);
        assert_eq!(name.len(), 63);
        assert!(name.ends_with("-3f2b8c1e") && is_label(&name), "{name}");
        // Cut where a '-' was: none left at the end of the readable part.
        let scid = format!("{}-{}", "b".repeat(43), "c".repeat(40));
        let name = channel_name(Source::Google, &scid, ID);
        assert!(is_label(&name) && !name.contains("--"), "{name}");
    }

    #[test]
    fn chat_plugins_sharing_a_website_name_get_their_own_names() {
        let other = "0a1b2c3d-0000-4000-8000-000000000000";
        assert_ne!(
            channel_name(Source::ChatPlugin, "shop", ID),
            channel_name(Source::ChatPlugin, "shop", other)
        );
        // A name the lost characters would give twice is told apart by the id too.
        assert_ne!(
            channel_name(Source::Google, "Shop", ID),
            channel_name(Source::Google, "shop", other)
        );
    }
}
