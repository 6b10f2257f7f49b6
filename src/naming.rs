//! The chat plugin's name in channel ids and API answers, a setting of the installation.
//!
//! The original channels API calls the chat plugin source `chat_plugin` (the default here). From
//! March 2021 Airy Core calls it `chatplugin`, derives its chat plugin channel ids from that name
//! and every later client compares `source` with it. With `--chatplugin-naming chatplugin` (on the
//! controller and the API alike) chat plugin channels get the later ids and the API answers
//! `"source": "chatplugin"`; the Channel resource keeps `source: chat_plugin` either way, and the
//! API's list filter and disconnect paths accept both names. Every other source is unaffected.

use crate::crd::Source;

/// The later name of the chat plugin source.
pub const CHATPLUGIN: &str = "chatplugin";

/// How chat plugin channels are named.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChatPluginNaming {
    /// `chat_plugin`, the original channels API's name (the default).
    #[default]
    #[value(name = "chat_plugin")]
    ChatPlugin,
    /// `chatplugin`, Airy Core's name since March 2021.
    #[value(name = "chatplugin")]
    Chatplugin,
}

impl ChatPluginNaming {
    /// The source string of `source` in channel ids and API answers under this naming.
    pub fn source_str(self, source: Source) -> &'static str {
        match (source, self) {
            (Source::ChatPlugin, ChatPluginNaming::Chatplugin) => CHATPLUGIN,
            _ => source.as_str(),
        }
    }

    /// The channel id of `source` and `source_channel_id` under this naming (a Channel's:
    /// [`crate::crd::Channel::channel_id`]).
    pub fn id_of(self, source: Source, source_channel_id: &str) -> String {
        crate::channel_id::channel_id_string(self.source_str(source), source_channel_id)
    }
}

/// Parses a source string as clients send it (a list filter): the exact source strings, and
/// `chatplugin` for the chat plugin under either naming.
pub fn parse_source(s: &str) -> Option<Source> {
    Source::parse(s).or_else(|| (s == CHATPLUGIN).then_some(Source::ChatPlugin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_chat_plugin_is_renamed() {
        let later = ChatPluginNaming::Chatplugin;
        assert_eq!(later.source_str(Source::ChatPlugin), "chatplugin");
        assert_eq!(
            ChatPluginNaming::default().source_str(Source::ChatPlugin),
            "chat_plugin"
        );
        for source in Source::ALL.into_iter().filter(|s| *s != Source::ChatPlugin) {
            assert_eq!(later.source_str(source), source.as_str());
        }
        // Computed independently (SHA-1 of the concatenation in Python).
        assert_eq!(
            later.id_of(Source::ChatPlugin, "website-identifier-42"),
            "88b93949-a32f-502c-b56a-67c877c01ba5"
        );
        assert_eq!(
            ChatPluginNaming::ChatPlugin.id_of(Source::ChatPlugin, "website-identifier-42"),
            "625c0084-1043-5727-bfd9-40366ef08a64"
        );
        assert_eq!(parse_source("chatplugin"), Some(Source::ChatPlugin));
        assert_eq!(parse_source("chat_plugin"), Some(Source::ChatPlugin));
        assert_eq!(parse_source("chat-plugin"), None);
    }
}
