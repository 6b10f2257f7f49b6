//! The one rule set for Channel values. The CRD's patterns and CEL rules (`crate::crd`), the
//! controller's spec check ([`validate_spec`]) and the HTTP API's request checks
//! (`crate::api::validate`) are all built from these constants; each regex is compiled once.

use std::sync::LazyLock;

use regex::Regex;

use crate::crd::{ChannelSpec, Source};

/// E.164: a plus sign and up to 15 digits, no leading zero.
pub const E164_PATTERN: &str = r"^\+[1-9][0-9]{1,14}$";
/// Twilio's WhatsApp form of an E.164 number.
pub const WHATSAPP_PATTERN: &str = r"^whatsapp:\+[1-9][0-9]{1,14}$";
/// An absolute http(s) URL.
pub const HTTP_URL_PATTERN: &str = r"^https?://[^\s/?#]+([/?#][^\s]*)?$";
/// A numeric Meta id (Facebook page, Instagram account, WhatsApp phone number or business
/// account): digits only (it becomes a Graph API path segment).
pub const NUMERIC_ID_PATTERN: &str = r"^[0-9]{1,64}$";
/// A Facebook page id.
pub const FACEBOOK_PAGE_ID_PATTERN: &str = NUMERIC_ID_PATTERN;
/// A Kubernetes object name (DNS-1123 subdomain), as Secret names must be.
pub const SECRET_NAME_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// A channel id: a lower-case hyphenated UUID (`spec.channelId`).
pub const CHANNEL_ID_PATTERN: &str =
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";
/// The CEL transition rule on the spec keeping `channelId` as it was created: neither added,
/// removed nor changed (a rule on the optional field itself would not run when it is added or
/// removed).
pub const CEL_CHANNEL_ID_IMMUTABLE: &str = "has(self.channelId) == has(oldSelf.channelId) && (!has(self.channelId) || self.channelId == oldSelf.channelId)";
/// Why a change of `channelId` was refused.
pub const CHANNEL_ID_IMMUTABLE_MESSAGE: &str =
    "channelId is immutable: it is set when the Channel is created, or never";

/// The characters no name may contain, as the inside of a regex character class: bidirectional
/// controls (they reorder how a name is displayed, e.g. `Pay<U+202E>lapyap`) and zero-width and
/// other invisible format characters (they make different names look alike). Literal characters,
/// so the class reads the same in Rust, ECMA-262 (OpenAPI) and RE2 (the apiserver) regexes.
macro_rules! invisible_chars {
    () => {
        "\u{61C}\u{180E}\u{200B}-\u{200F}\u{202A}-\u{202E}\u{2060}-\u{2064}\u{2066}-\u{206F}\u{FEFF}"
    };
}
pub(crate) use invisible_chars;

/// A name: no bidirectional control or zero-width character (the CRD's `spec.name` pattern).
pub const NAME_PATTERN: &str = concat!("^[^", invisible_chars!(), "]*$");
/// Why a name was refused.
pub const NAME_MESSAGE: &str = "must not contain bidirectional control or zero-width characters";

/// Longest name or source channel id.
pub const MAX_NAME_LEN: usize = 1024;
/// Longest image URL.
pub const MAX_URL_LEN: usize = 2048;
/// Longest Secret name (DNS-1123 subdomain).
pub const MAX_SECRET_NAME_LEN: usize = 253;

/// What a `twilio.sms` source channel id must look like.
pub const SMS_MESSAGE: &str =
    "a twilio.sms sourceChannelId must be an E.164 number without spaces, e.g. +491234567";
/// What a `twilio.whatsapp` source channel id must look like.
pub const WHATSAPP_MESSAGE: &str = "a twilio.whatsapp sourceChannelId must be whatsapp: followed by an E.164 number, e.g. whatsapp:+491234567";
/// What a `facebook` source channel id must look like.
pub const FACEBOOK_MESSAGE: &str = "a facebook sourceChannelId must be the numeric page id";
/// What an `instagram` source channel id must look like.
pub const INSTAGRAM_MESSAGE: &str =
    "an instagram sourceChannelId must be the numeric Instagram account id";
/// What a `whatsapp` source channel id must look like.
pub const WHATSAPP_CLOUD_MESSAGE: &str =
    "a whatsapp sourceChannelId must be the numeric phone number id";
/// Why an `instagram` Channel needs `spec.instagram`.
pub const INSTAGRAM_PAGE_MESSAGE: &str =
    "instagram.pageId is required for instagram channels (the Facebook page linked to the account)";
/// The sources whose Channels need `credentialsSecretRef`.
pub const SOURCES_WITH_CREDENTIALS: [Source; 4] = [
    Source::Facebook,
    Source::Instagram,
    Source::Whatsapp,
    Source::Viber,
];
/// Why those Channels need `credentialsSecretRef`.
pub const CREDENTIALS_MESSAGE: &str = "credentialsSecretRef is required for facebook, instagram, whatsapp and viber channels (the Secret holding the page, user or bot token)";

fn compiled(pattern: &str) -> Regex {
    Regex::new(pattern).expect("the rule patterns are valid regexes")
}

static E164: LazyLock<Regex> = LazyLock::new(|| compiled(E164_PATTERN));
static WHATSAPP: LazyLock<Regex> = LazyLock::new(|| compiled(WHATSAPP_PATTERN));
static HTTP_URL: LazyLock<Regex> = LazyLock::new(|| compiled(HTTP_URL_PATTERN));
static NUMERIC_ID: LazyLock<Regex> = LazyLock::new(|| compiled(NUMERIC_ID_PATTERN));
static SECRET_NAME: LazyLock<Regex> = LazyLock::new(|| compiled(SECRET_NAME_PATTERN));
static NAME: LazyLock<Regex> = LazyLock::new(|| compiled(NAME_PATTERN));

/// Whether `value` has no bidirectional control or zero-width character.
pub fn is_visible_text(value: &str) -> bool {
    NAME.is_match(value)
}

/// Whether `value` is an E.164 number.
pub fn is_e164(value: &str) -> bool {
    E164.is_match(value)
}

/// Whether `value` is an absolute http(s) URL the CRD accepts.
pub fn is_http_url(value: &str) -> bool {
    value.len() <= MAX_URL_LEN && HTTP_URL.is_match(value)
}

/// Whether `value` is a numeric Meta id (a Facebook page id, among others).
pub fn is_numeric_id(value: &str) -> bool {
    NUMERIC_ID.is_match(value)
}

/// Whether `value` is a namespace name (a DNS-1123 label).
pub fn is_namespace(value: &str) -> bool {
    value.len() <= 63 && !value.contains('.') && SECRET_NAME.is_match(value)
}

/// Whether `value` is a valid Secret name.
pub fn is_secret_name(value: &str) -> bool {
    value.len() <= MAX_SECRET_NAME_LEN && SECRET_NAME.is_match(value)
}

/// The source channel id pattern of a source, with the message naming it, where there is one.
pub fn source_channel_id_rule(source: Source) -> Option<(&'static str, &'static str)> {
    match source {
        Source::TwilioSms => Some((E164_PATTERN, SMS_MESSAGE)),
        Source::TwilioWhatsapp => Some((WHATSAPP_PATTERN, WHATSAPP_MESSAGE)),
        Source::Facebook => Some((FACEBOOK_PAGE_ID_PATTERN, FACEBOOK_MESSAGE)),
        Source::Instagram => Some((NUMERIC_ID_PATTERN, INSTAGRAM_MESSAGE)),
        Source::Whatsapp => Some((NUMERIC_ID_PATTERN, WHATSAPP_CLOUD_MESSAGE)),
        Source::ChatPlugin | Source::Google | Source::Viber => None,
    }
}

fn source_channel_id_ok(source: Source, value: &str) -> bool {
    match source {
        Source::TwilioSms => E164.is_match(value),
        Source::TwilioWhatsapp => WHATSAPP.is_match(value),
        Source::Facebook | Source::Instagram | Source::Whatsapp => NUMERIC_ID.is_match(value),
        Source::ChatPlugin | Source::Google | Source::Viber => true,
    }
}

/// The CEL rule on the spec that checks `sourceChannelId` for `source` (for the CRD).
pub fn cel_source_channel_id(source: Source) -> String {
    let (pattern, _) = source_channel_id_rule(source).expect("a source with a pattern");
    // A CEL single-quoted string: backslashes are escaped.
    format!(
        "self.source != '{}' || self.sourceChannelId.matches('{}')",
        source.as_str(),
        pattern.replace('\\', "\\\\")
    )
}

/// The CEL rule on the spec that requires `credentialsSecretRef` for
/// [`SOURCES_WITH_CREDENTIALS`] (for the CRD).
pub fn cel_credentials_required() -> String {
    let sources: Vec<String> = SOURCES_WITH_CREDENTIALS
        .iter()
        .map(|s| format!("'{s}'"))
        .collect();
    format!(
        "!(self.source in [{}]) || has(self.credentialsSecretRef)",
        sources.join(", ")
    )
}

/// Checks a Channel spec against every rule the CRD declares, for clusters (or objects stored
/// earlier) that did not enforce them. The message names the field.
pub fn validate_spec(spec: &ChannelSpec) -> Result<(), String> {
    let scid = &spec.source_channel_id;
    if scid.is_empty() {
        return Err("spec.sourceChannelId must not be empty".into());
    }
    if scid.chars().count() > MAX_NAME_LEN {
        return Err(format!(
            "spec.sourceChannelId must be at most {MAX_NAME_LEN} characters"
        ));
    }
    if !source_channel_id_ok(spec.source, scid) {
        let (_, message) = source_channel_id_rule(spec.source).expect("a failed pattern");
        return Err(format!("spec.sourceChannelId: {message}"));
    }
    if let Some(name) = &spec.name {
        if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
            return Err(format!(
                "spec.name must be 1 to {MAX_NAME_LEN} characters long"
            ));
        }
        if !is_visible_text(name) {
            return Err(format!("spec.name {NAME_MESSAGE}"));
        }
    }
    if let Some(url) = &spec.image_url {
        if !is_http_url(url) {
            return Err(format!(
                "spec.imageUrl must be an absolute http(s) URL of at most {MAX_URL_LEN} characters"
            ));
        }
    }
    if SOURCES_WITH_CREDENTIALS.contains(&spec.source) && spec.credentials_secret_ref.is_none() {
        return Err(format!("spec.{CREDENTIALS_MESSAGE}"));
    }
    match (&spec.instagram, spec.source) {
        (None, Source::Instagram) => return Err(format!("spec.{INSTAGRAM_PAGE_MESSAGE}")),
        (Some(i), _) if !is_numeric_id(&i.page_id) => {
            return Err("spec.instagram.pageId must be the numeric Facebook page id".into())
        }
        _ => {}
    }
    if let Some(waba) = spec
        .whatsapp
        .as_ref()
        .and_then(|w| w.business_account_id.as_ref())
    {
        if !is_numeric_id(waba) {
            return Err(
                "spec.whatsapp.businessAccountId must be the numeric business account id".into(),
            );
        }
    }
    crate::pinned_id::check(spec)?;
    if let Some(r) = &spec.credentials_secret_ref {
        if !is_secret_name(&r.name) {
            return Err("spec.credentialsSecretRef.name must be a Secret name (lower-case letters, digits, '-' and '.')".into());
        }
        if r.key.is_empty() {
            return Err("spec.credentialsSecretRef.key must not be empty".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::SecretKeyRef;

    #[test]
    fn names_refuse_invisible_characters() {
        let mut s = spec(Source::ChatPlugin, "site");
        for bad in [
            "Pay\u{202E}lapyap",
            "a\u{200B}b",
            "\u{2066}x\u{2069}",
            "x\u{FEFF}",
            "\u{61C}x",
        ] {
            s.name = Some(bad.into());
            let e = validate_spec(&s).expect_err(bad);
            assert!(e.contains("spec.name"), "{e}");
        }
        s.name = Some("Поддержка 日本 שלום".into());
        assert!(validate_spec(&s).is_ok());
    }

    fn spec(source: Source, scid: &str) -> ChannelSpec {
        ChannelSpec::new(source, scid)
    }

    #[test]
    fn validation_names_the_field() {
        assert!(validate_spec(&spec(Source::TwilioSms, "+491234567")).is_ok());
        let e = validate_spec(&spec(Source::TwilioSms, "+49 123")).unwrap_err();
        assert!(e.contains("spec.sourceChannelId"), "{e}");
        assert!(validate_spec(&spec(Source::TwilioWhatsapp, "whatsapp:+491234567")).is_ok());
        assert!(validate_spec(&spec(Source::TwilioWhatsapp, "+491234567")).is_err());
        let e = validate_spec(&spec(Source::Facebook, "1")).unwrap_err();
        assert!(e.contains("spec.credentialsSecretRef"), "{e}");
        let mut s = spec(Source::Facebook, "1");
        s.credentials_secret_ref = Some(SecretKeyRef {
            name: "s".into(),
            key: "k".into(),
        });
        assert!(validate_spec(&s).is_ok());
        s.source_channel_id = "../../other/path?x=1#".into();
        assert!(validate_spec(&s).unwrap_err().contains("numeric page id"));
        s.source_channel_id = "1".into();
        s.credentials_secret_ref.as_mut().unwrap().name = "../other".into();
        assert!(validate_spec(&s)
            .unwrap_err()
            .contains("spec.credentialsSecretRef.name"));
        s.credentials_secret_ref.as_mut().unwrap().name = "s".into();
        s.image_url = Some("ftp://x".into());
        assert!(validate_spec(&s).unwrap_err().contains("spec.imageUrl"));
        s.image_url = Some("https://example.org/a.png".into());
        s.name = Some(String::new());
        assert!(validate_spec(&s).unwrap_err().contains("spec.name"));
    }

    #[test]
    fn the_later_sources_need_their_ids_and_credentials() {
        let token = Some(SecretKeyRef {
            name: "s".into(),
            key: "k".into(),
        });
        let mut ig = spec(Source::Instagram, "17841400000000001");
        ig.credentials_secret_ref = token.clone();
        assert!(validate_spec(&ig)
            .unwrap_err()
            .contains("spec.instagram.pageId"));
        ig.instagram = Some(crate::crd::InstagramSpec {
            page_id: "x/../1".into(),
        });
        assert!(validate_spec(&ig)
            .unwrap_err()
            .contains("spec.instagram.pageId"));
        ig.instagram = Some(crate::crd::InstagramSpec {
            page_id: "100000000001".into(),
        });
        assert!(validate_spec(&ig).is_ok());
        ig.source_channel_id = "my_account".into();
        assert!(validate_spec(&ig)
            .unwrap_err()
            .contains("Instagram account id"));
        let mut wa = spec(Source::Whatsapp, "106540352242922");
        assert!(validate_spec(&wa)
            .unwrap_err()
            .contains("credentialsSecretRef"));
        wa.credentials_secret_ref = token.clone();
        assert!(validate_spec(&wa).is_ok());
        wa.whatsapp = Some(crate::crd::WhatsappSpec {
            business_account_id: Some("waba?x".into()),
        });
        assert!(validate_spec(&wa)
            .unwrap_err()
            .contains("businessAccountId"));
        wa.source_channel_id = "+491234567".into();
        wa.whatsapp = None;
        assert!(validate_spec(&wa).unwrap_err().contains("phone number id"));
        let mut viber = spec(Source::Viber, "pa:5469875432398472639");
        assert!(validate_spec(&viber)
            .unwrap_err()
            .contains("credentialsSecretRef"));
        viber.credentials_secret_ref = token;
        assert!(validate_spec(&viber).is_ok());
        assert_eq!(
            cel_credentials_required(),
            "!(self.source in ['facebook', 'instagram', 'whatsapp', 'viber']) || has(self.credentialsSecretRef)"
        );
    }

    #[test]
    fn cel_rules_carry_the_patterns() {
        assert_eq!(
            cel_source_channel_id(Source::TwilioSms),
            r"self.source != 'twilio.sms' || self.sourceChannelId.matches('^\\+[1-9][0-9]{1,14}$')"
        );
    }

    #[test]
    fn secret_names() {
        assert!(is_secret_name("a-b.c1"));
        for bad in ["", "A", "-a", "a-", "../x", "a/b", &"a".repeat(254)] {
            assert!(!is_secret_name(bad), "{bad}");
        }
    }
}
