//! A string that never shows itself in `Debug` or `Display` output, for tokens and keys
//! ([`SecretString`]; not to be confused with the Kubernetes `Secret` object), and [`redact`],
//! which takes such values out of a message.

use std::fmt;
use std::str::FromStr;

/// A secret value (page token, auth token, API key, app secret). Its `Debug` and `Display`
/// print `<redacted>`, so it can sit in structs that are logged without leaking.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        SecretString(value.into())
    }

    /// The secret itself, for the one place that has to send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl FromStr for SecretString {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(SecretString(s.to_owned()))
    }
}

impl From<String> for SecretString {
    fn from(s: String) -> Self {
        SecretString(s)
    }
}

/// Replaces every occurrence of a (non-trivial) secret in `message` by `<redacted>`: the value
/// as is and in the encodings it travels in: percent-encoded (either hex case, form style with
/// `+` for a space, or encoded twice), JSON-escaped, and base64 (standard or URL-safe, alone or
/// inside a longer encoded value such as a basic-auth header).
pub fn redact(mut message: String, secrets: &[&SecretString]) -> String {
    for s in secrets {
        let value = s.expose();
        if value.len() < 4 {
            continue;
        }
        if let Some(re) = encoded_forms(value) {
            if re.is_match(&message) {
                message = re.replace_all(&message, "<redacted>").into_owned();
            }
        }
        for core in base64_cores(value.as_bytes()) {
            if message.contains(&core) {
                message = message.replace(&core, "<redacted>");
            }
        }
    }
    message
}

/// A regex matching `value` with each character as is, percent-encoded (once or twice) or
/// JSON-escaped.
fn encoded_forms(value: &str) -> Option<regex::Regex> {
    let mut pattern = String::new();
    for c in value.chars() {
        let mut forms = vec![regex::escape(&c.to_string())];
        let mut utf8 = [0u8; 4];
        let bytes = c.encode_utf8(&mut utf8).as_bytes();
        let hex: String = bytes.iter().map(|b| format!("%{b:02X}")).collect();
        forms.push(format!("(?i:{})", regex::escape(&hex)));
        forms.push(format!("(?i:{})", regex::escape(&hex.replace('%', "%25"))));
        if c == ' ' {
            forms.push(r"\+".to_owned());
        }
        let mut units = [0u16; 2];
        let escaped: String = c
            .encode_utf16(&mut units)
            .iter()
            .map(|u| format!("\\u{u:04X}"))
            .collect();
        forms.push(format!("(?i:{})", regex::escape(&escaped)));
        if matches!(c, '"' | '\\' | '/') {
            forms.push(regex::escape(&format!("\\{c}")));
        }
        pattern.push_str(&format!("(?:{})", forms.join("|")));
    }
    regex::Regex::new(&pattern).ok()
}

/// The parts of base64 encodings of `value` that depend on `value` alone, at each of the three
/// offsets it can have inside a longer encoded value, in both alphabets.
fn base64_cores(value: &[u8]) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    use base64::Engine;
    let mut cores = Vec::new();
    for offset in 0..3usize {
        let mut padded = vec![0u8; offset];
        padded.extend_from_slice(value);
        // Characters that mix bits of the unknown neighbours are left out.
        let skip = [0, 2, 3][offset];
        let tail = usize::from(padded.len() % 3 != 0);
        for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            let encoded = engine.encode(&padded);
            if encoded.len() >= skip + tail + 6 {
                cores.push(encoded[skip..encoded.len() - tail].to_owned());
            }
        }
    }
    cores.sort();
    cores.dedup();
    cores
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_covers_the_encoded_forms() {
        use base64::engine::general_purpose::{STANDARD, URL_SAFE};
        use base64::Engine;
        let token = "EAAB page/tok+en=\"x\\ü";
        let s = SecretString::new(token);
        let form: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
        let path = url::form_urlencoded::byte_serialize(token.as_bytes())
            .collect::<String>()
            .replace('+', "%20");
        let json = serde_json::to_string(token).unwrap();
        let json_ascii = json.replace('ü', "\\u00fc").replace('/', "\\/");
        let forms = [
            token.to_owned(),
            form.clone(),
            form.replace("%2F", "%2f").replace("%C3%BC", "%c3%bc"),
            path,
            form.replace('%', "%25"),
            json.trim_matches('"').to_owned(),
            json_ascii.trim_matches('"').to_owned(),
            STANDARD.encode(token),
            URL_SAFE.encode(token),
            STANDARD.encode(format!("AC1:{token}")),
            STANDARD.encode(format!("AC12:{token}")),
            STANDARD.encode(format!("AC123:{token}")),
        ];
        for f in forms {
            let out = crate::providers::redact(format!("error: access_token={f}&x=1"), &[&s]);
            assert!(out.starts_with("error: access_token="), "{out}");
            assert!(out.contains("<redacted>"), "{f} not redacted: {out}");
            assert!(!out.contains(&f), "{f} survived: {out}");
            assert!(out.ends_with("&x=1"), "{out}");
        }
        // Other text is left alone.
        assert_eq!(redact("nothing here".into(), &[&s]), "nothing here");
    }

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = SecretString::new("EAAB-page-token");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(format!("{s}"), "<redacted>");
        assert_eq!(s.expose(), "EAAB-page-token");
    }
}
