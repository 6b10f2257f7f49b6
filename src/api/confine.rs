//! The API answers about its own namespaces only: a message it relays from a Channel's status
//! (written by the controller, which sees every namespace) loses the `namespace/name` of any
//! Channel the API does not serve.

use std::sync::LazyLock;

use regex::Regex;

/// `Channel <namespace>/<name>` as the controller's messages write it.
static CHANNEL_REF: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"Channel ([a-z0-9][-a-z0-9]*)/([a-z0-9](?:[-a-z0-9.]*[a-z0-9])?)")
        .expect("a valid regex")
});

/// `message` with each Channel reference for which `visible(namespace, name)` is false replaced
/// by words that name nothing.
pub fn channel_refs(message: &str, visible: impl Fn(&str, &str) -> bool) -> String {
    CHANNEL_REF
        .replace_all(message, |c: &regex::Captures| {
            if visible(&c[1], &c[2]) {
                c[0].to_owned()
            } else {
                "Channel outside the API's namespaces".to_owned()
            }
        })
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_channels_are_not_named() {
        let m = "chat_plugin x belongs to the older Channel attacker/hidden-owner-15001; this Channel is not connected";
        let out = channel_refs(m, |ns, _| ns == "default");
        assert_eq!(out, "chat_plugin x belongs to the older Channel outside the API's namespaces; this Channel is not connected");
        let own = m.replace("attacker/", "default/");
        assert_eq!(channel_refs(&own, |ns, _| ns == "default"), own);
    }
}
