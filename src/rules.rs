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

/// The code points no name may contain, as the Unicode properties of a regex class: controls (Cc),
/// format characters (Cf: bidirectional controls such as U+202E, which reorder how a name is
/// displayed, zero-width characters, U+00AD, tag characters), line and paragraph separators (Zl,
/// Zp), private use (Co) and unassigned code points (Cn), the default-ignorable code points
/// (which render as nothing: U+034F, the Hangul fillers U+115F, U+1160, U+3164, U+FFA0, the
/// variation selectors U+FE00-U+FE0F and U+E0100-U+E01EF), and U+2800 BRAILLE PATTERN BLANK,
/// a symbol that renders as a blank. Such characters make different names look alike, or a name
/// look like nothing.
const HIDDEN_PROPERTIES: &str =
    r"\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Co}\p{Cn}\p{Default_Ignorable_Code_Point}\x{2800}";

/// The code points of a regex class, as sorted inclusive ranges, from the Unicode tables of
/// `regex-syntax` (the regex crate's).
fn class_ranges(class: &str) -> Vec<(char, char)> {
    let hir = regex_syntax::Parser::new()
        .parse(class)
        .expect("the class is a valid regex");
    match hir.kind() {
        regex_syntax::hir::HirKind::Class(regex_syntax::hir::Class::Unicode(c)) => {
            c.ranges().iter().map(|r| (r.start(), r.end())).collect()
        }
        other => panic!("{class} is not a Unicode class: {other:?}"),
    }
}

/// [`HIDDEN_PROPERTIES`] as ranges: the one table the Rust check and both rendered patterns use.
static HIDDEN: LazyLock<Vec<(char, char)>> =
    LazyLock::new(|| class_ranges(&format!("[{HIDDEN_PROPERTIES}]")));

/// Whether `c` is one of the invisible or format characters no name may contain.
pub fn is_hidden(c: char) -> bool {
    HIDDEN
        .binary_search_by(|&(start, end)| {
            if end < c {
                std::cmp::Ordering::Less
            } else if start > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// The ranges to write into a pattern: a range ending at U+D7FF and one starting at U+E000 are
/// written as one. The surrogates between them are no characters (no string holds them), so the
/// class means the same; written apart, the regex crate's negated class (`[^...]`, which the
/// sandbox evaluates) wrongly matched U+D7FF and U+E000, which Go's regexp refuses.
fn pattern_ranges(ranges: &[(char, char)]) -> Vec<(char, char)> {
    let mut out: Vec<(char, char)> = Vec::with_capacity(ranges.len());
    for &(start, end) in ranges {
        match out.last_mut() {
            Some(last) if last.1 == '\u{D7FF}' && start == '\u{E000}' => last.1 = end,
            _ => out.push((start, end)),
        }
    }
    out
}

/// The inside of a regex class with these ranges, escaped as `\x{HHHH}`: the syntax Go's
/// regexp (RE2, the apiserver's) and Rust's regex share.
fn escaped_class(ranges: &[(char, char)]) -> String {
    let hex = |c: char| format!("\\x{{{:04X}}}", u32::from(c));
    pattern_ranges(ranges)
        .iter()
        .map(|&(a, b)| {
            if a == b {
                hex(a)
            } else {
                format!("{}-{}", hex(a), hex(b))
            }
        })
        .collect()
}

/// The inside of a regex class with these ranges, as literal characters, and `\xHH` below
/// U+0100: the syntax ECMA-262 (with the `u` flag, as OpenAPI tools compile patterns), Python
/// and Rust share.
fn literal_class(ranges: &[(char, char)]) -> String {
    let one = |c: char| {
        if u32::from(c) < 0x100 {
            format!("\\x{:02X}", u32::from(c))
        } else {
            c.to_string()
        }
    };
    pattern_ranges(ranges)
        .iter()
        .map(|&(a, b)| {
            if a == b {
                one(a)
            } else {
                format!("{}-{}", one(a), one(b))
            }
        })
        .collect()
}

/// A name: no invisible or format character ([`is_hidden`]). The CRD's pattern of `spec.name`
/// and `spec.sourceChannelId`, in the syntax of the apiserver's regexes (RE2) and the sandbox's.
pub static NAME_PATTERN: LazyLock<String> =
    LazyLock::new(|| format!("^[^{}]*$", escaped_class(&HIDDEN)));

/// A name that is not blank, as the HTTP API takes it: no invisible or format character, and at
/// least one character that is not white space. In the syntax of OpenAPI documents (ECMA-262
/// with the `u` flag), which Python's regexes read alike: the hidden characters are refused by a
/// negative lookahead (`.` matches neither `\n` nor the other line terminators, all of them
/// hidden). A lookahead rather than `[^...]` classes because schema fuzzers (hypothesis, under
/// schemathesis) enumerate every code point of a class they generate from, and skip lookaheads.
pub static VISIBLE_TEXT_PATTERN: LazyLock<String> = LazyLock::new(|| {
    let hidden = literal_class(&HIDDEN);
    let blank = literal_class(&class_ranges(&format!(
        r"[\p{{White_Space}}--[{HIDDEN_PROPERTIES}]]"
    )));
    format!("^(?!.*[{hidden}]).*[^{blank}].*$")
});

/// An absolute http(s) URL: `http://` or `https://`, a host (and port) up to the first `/`, `?`
/// or `#`, then anything; no white space and no invisible or format character anywhere. The
/// CRD's pattern (`spec.imageUrl`, a ProviderConfig's webhook URL) in the syntax of the
/// apiserver's regexes (RE2) and the sandbox's; what the HTTP API takes for `image_url` too
/// ([`HTTP_URL_DOC_PATTERN`] is the same for the OpenAPI document).
pub static HTTP_URL_PATTERN: LazyLock<String> = LazyLock::new(|| {
    let excluded = escaped_class(&URL_EXCLUDED);
    format!("^https?://[^{excluded}/?#]+([/?#][^{excluded}]*)?$")
});

/// [`HTTP_URL_PATTERN`] in the syntax of OpenAPI documents (ECMA-262 with the `u` flag), which
/// Python's regexes read alike; the excluded characters in a lookahead, as in
/// [`VISIBLE_TEXT_PATTERN`].
pub static HTTP_URL_DOC_PATTERN: LazyLock<String> = LazyLock::new(|| {
    let excluded = literal_class(&URL_EXCLUDED);
    format!("^(?!.*[{excluded}])https?://[^/?#]+([/?#].*)?$")
});

/// What no URL contains: white space and the characters no name contains.
static URL_EXCLUDED: LazyLock<Vec<(char, char)>> =
    LazyLock::new(|| class_ranges(&format!(r"[\p{{White_Space}}{HIDDEN_PROPERTIES}]")));

/// Why a name was refused.
pub const NAME_MESSAGE: &str = "must not contain invisible or format characters (control, format, separator, private-use, unassigned or default-ignorable code points)";

/// `value` without its invisible or format characters: a name from a provider (a page name, a
/// Viber account name, a WhatsApp verified name), before it reaches a status or an answer.
/// `None` when nothing visible is left.
pub fn visible_name(value: &str) -> Option<String> {
    let kept: String = value.chars().filter(|c| !is_hidden(*c)).collect();
    (!kept.trim().is_empty()).then_some(kept)
}

/// [`visible_name`] as a serde `deserialize_with` for an optional name in a provider's answer.
pub fn deserialize_visible_name<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let name: Option<String> = serde::Deserialize::deserialize(deserializer)?;
    Ok(name.as_deref().and_then(visible_name))
}

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
static HTTP_URL: LazyLock<Regex> = LazyLock::new(|| compiled(&HTTP_URL_PATTERN));
static NUMERIC_ID: LazyLock<Regex> = LazyLock::new(|| compiled(NUMERIC_ID_PATTERN));
static SECRET_NAME: LazyLock<Regex> = LazyLock::new(|| compiled(SECRET_NAME_PATTERN));

/// Whether `value` has no invisible or format character ([`is_hidden`]).
pub fn is_visible_text(value: &str) -> bool {
    !value.chars().any(is_hidden)
}

/// Whether `value` is an E.164 number.
pub fn is_e164(value: &str) -> bool {
    E164.is_match(value)
}

/// Whether `value` is an absolute http(s) URL the CRD accepts ([`HTTP_URL_PATTERN`], at most
/// [`MAX_URL_LEN`] characters as the CRD counts them).
pub fn is_http_url(value: &str) -> bool {
    value.chars().count() <= MAX_URL_LEN && HTTP_URL.is_match(value)
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
    if !is_visible_text(scid) {
        return Err(format!("spec.sourceChannelId {NAME_MESSAGE}"));
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
            // The ones the issue found passing.
            "a\u{00AD}b",
            "a\u{034F}b",
            "a\u{2028}b",
            "\u{3164}",
            "x\u{FE0F}",
            "\u{2800}",
            "\u{115F}x",
            "x\u{E0041}",
        ] {
            s.name = Some(bad.into());
            let e = validate_spec(&s).expect_err(bad);
            assert!(e.contains("spec.name"), "{e}");
        }
        s.name = Some("Поддержка 日本 שלום".into());
        assert!(validate_spec(&s).is_ok());
        s.source_channel_id = "site\u{200B}".into();
        let e = validate_spec(&s).unwrap_err();
        assert!(e.contains("spec.sourceChannelId"), "{e}");
    }

    #[test]
    fn the_hidden_characters_are_the_issues_list() {
        for c in [
            '\u{115F}',
            '\u{1160}',
            '\u{3164}',
            '\u{FFA0}',
            '\u{2800}',
            '\u{FE00}',
            '\u{FE0F}',
            '\u{E0100}',
            '\u{E01EF}',
            '\u{E0000}',
            '\u{E007F}',
            '\u{2028}',
            '\u{2029}',
            '\u{E000}',
            '\u{10FFFD}',
            '\u{0378}',
            '\u{FFFF}',
            '\u{0000}',
            '\u{009F}',
            '\u{D7FF}',
        ] {
            assert!(is_hidden(c), "U+{:04X}", u32::from(c));
        }
        for c in [
            'a',
            ' ',
            'é',
            '\u{0301}',
            '日',
            '\u{1F600}',
            '\u{00A0}',
            '\u{2764}',
        ] {
            assert!(!is_hidden(c), "U+{:04X}", u32::from(c));
        }
    }

    /// The CRD's pattern, compiled as the sandbox compiles it, refuses exactly the code points
    /// the Rust rule refuses, alone and inside a name. (It is a negated class of `\x{..}`
    /// ranges, which Go's regexp reads alike.)
    #[test]
    fn the_crd_pattern_agrees_with_the_rule_on_every_code_point() {
        assert!(NAME_PATTERN.is_ascii(), "the CRD pattern is ASCII escapes");
        let crd = Regex::new(&NAME_PATTERN).unwrap();
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            assert_eq!(
                crd.is_match(&c.to_string()),
                !is_hidden(c),
                "U+{:04X}",
                u32::from(c)
            );
            assert_eq!(crd.is_match(&format!("ab{c}cd")), !is_hidden(c));
        }
    }

    #[test]
    fn provider_names_lose_their_hidden_characters() {
        assert_eq!(
            visible_name("Pay\u{202E}lapyap\u{200B} Shop").as_deref(),
            Some("Paylapyap Shop")
        );
        assert_eq!(visible_name("\u{3164}\u{200B}"), None);
        assert_eq!(visible_name("   "), None);
        let parsed: Option<String> =
            deserialize_visible_name(&serde_json::json!("Shop\u{FE0F}\u{E0041}")).unwrap();
        assert_eq!(parsed.as_deref(), Some("Shop"));
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
