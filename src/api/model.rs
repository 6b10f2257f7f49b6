//! Request and response types of the channels API (docs/api.md).
//!
//! Requests ignore unknown fields (serde's default); optional fields are `Option`s so that "absent"
//! and "given" can be told apart. The OpenAPI document is generated from these types.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::crd::{Channel, Source};

/// `channels.list`: all connected channels, optionally of one source.
#[derive(Deserialize, Debug, Default, ToSchema)]
pub struct ListRequest {
    /// Only channels of this exact source (e.g. `facebook`); all sources when absent.
    #[serde(default)]
    pub source: Option<String>,
}

/// `channels.info` and the `*.disconnect` endpoints.
#[derive(Deserialize, Debug, ToSchema)]
pub struct ChannelIdRequest {
    /// The channel id, a UUID (upper case accepted).
    pub channel_id: String,
}

/// `channels.update`: absent fields stay as they are.
#[derive(Deserialize, Debug, ToSchema)]
pub struct UpdateRequest {
    /// The channel id, a UUID (upper case accepted).
    pub channel_id: String,
    /// New display name; must not be empty.
    #[serde(default)]
    pub name: Option<String>,
    /// New image, an absolute http(s) URL.
    #[serde(default)]
    pub image_url: Option<String>,
}

/// `channels.chatplugin.connect`.
#[derive(Deserialize, Debug, ToSchema)]
pub struct ChatPluginConnectRequest {
    /// The website identifier; also the channel's source channel id.
    pub name: String,
    /// Image, an absolute http(s) URL.
    #[serde(default)]
    pub image_url: Option<String>,
}

/// `channels.facebook.connect`.
#[derive(Deserialize, ToSchema)]
pub struct FacebookConnectRequest {
    /// The Facebook page id.
    pub page_id: String,
    /// A page access token; stored in a Secret owned by the Channel, never returned.
    pub page_token: String,
    /// Display name; defaults to the page's name.
    #[serde(default)]
    pub name: Option<String>,
    /// Image, an absolute http(s) URL; defaults to the page's picture.
    #[serde(default)]
    pub image_url: Option<String>,
}

impl std::fmt::Debug for FacebookConnectRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FacebookConnectRequest")
            .field("page_id", &self.page_id)
            .field("page_token", &"<redacted>")
            .field("name", &self.name)
            .field("image_url", &self.image_url)
            .finish()
    }
}

/// `channels.instagram.connect`.
#[derive(Deserialize, ToSchema)]
pub struct InstagramConnectRequest {
    /// The id of the Facebook page linked to the Instagram account.
    pub page_id: String,
    /// The Instagram account id; also the channel's source channel id.
    pub account_id: String,
    /// A page access token of the linked page; stored in a Secret owned by the Channel, never
    /// returned.
    pub page_token: String,
    /// Display name; defaults to the page's name.
    #[serde(default)]
    pub name: Option<String>,
    /// Image, an absolute http(s) URL; defaults to the page's picture.
    #[serde(default)]
    pub image_url: Option<String>,
}

impl std::fmt::Debug for InstagramConnectRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstagramConnectRequest")
            .field("page_id", &self.page_id)
            .field("account_id", &self.account_id)
            .field("page_token", &"<redacted>")
            .field("name", &self.name)
            .field("image_url", &self.image_url)
            .finish()
    }
}

/// `channels.whatsapp.connect` (the WhatsApp Cloud API).
#[derive(Deserialize, ToSchema)]
pub struct WhatsappConnectRequest {
    /// The WhatsApp phone number id (also accepted as `phone_number`, its name in Airy's
    /// published docs); also the channel's source channel id.
    #[serde(alias = "phone_number")]
    pub phone_number_id: String,
    /// A user access token with the WhatsApp permissions; exchanged for a long-lived one, stored
    /// in Secrets owned by the Channel, never returned.
    pub user_token: String,
    /// Display name.
    pub name: String,
    /// Image, an absolute http(s) URL.
    #[serde(default)]
    pub image_url: Option<String>,
}

impl std::fmt::Debug for WhatsappConnectRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhatsappConnectRequest")
            .field("phone_number_id", &self.phone_number_id)
            .field("user_token", &"<redacted>")
            .field("name", &self.name)
            .field("image_url", &self.image_url)
            .finish()
    }
}

/// `channels.viber.connect`: the Viber bot of the installation's auth token.
#[derive(Deserialize, Debug, Default, ToSchema)]
pub struct ViberConnectRequest {
    /// Display name; defaults to the account's name.
    #[serde(default)]
    pub name: Option<String>,
    /// Image, an absolute http(s) URL; defaults to the account's icon.
    #[serde(default)]
    pub image_url: Option<String>,
}

/// `channels.google.connect`.
#[derive(Deserialize, Debug, ToSchema)]
pub struct GoogleConnectRequest {
    /// The Google Business Messages agent id.
    pub gbm_id: String,
    /// Display name.
    pub name: String,
    /// Image, an absolute http(s) URL.
    #[serde(default)]
    pub image_url: Option<String>,
}

/// `channels.twilio.sms.connect` and `channels.twilio.whatsapp.connect`.
#[derive(Deserialize, Debug, ToSchema)]
pub struct TwilioConnectRequest {
    /// The number in E.164 form, e.g. `+491234567` (no spaces).
    pub phone_number: String,
    /// Display name.
    pub name: String,
    /// Image, an absolute http(s) URL.
    #[serde(default)]
    pub image_url: Option<String>,
}

/// `channels.facebook.explore`.
#[derive(Deserialize, ToSchema)]
pub struct ExploreRequest {
    /// A Facebook user access token; used for the Graph API call only, never stored or logged.
    pub auth_token: String,
}

impl std::fmt::Debug for ExploreRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExploreRequest { auth_token: <redacted> }")
    }
}

/// The Channel object of the API (docs/api.md): always all five keys.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, ToSchema)]
pub struct ChannelResponse {
    /// The deterministic channel id.
    pub id: String,
    /// `chat_plugin`, `facebook`, `google`, `twilio.sms` or `twilio.whatsapp`.
    pub source: String,
    /// The channel's id at its source.
    pub source_channel_id: String,
    /// Whether the channel is connected.
    pub connected: bool,
    /// How the channel is presented.
    pub metadata: ChannelMetadata,
}

/// `metadata` of a Channel object.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, ToSchema)]
pub struct ChannelMetadata {
    /// The declared name, else the Facebook page's name, else `"<source> <last five of id>"`.
    pub name: String,
    /// Present only when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
}

/// `{"data": [Channel…]}`.
#[derive(Serialize, Deserialize, Debug, ToSchema)]
pub struct ChannelList {
    /// The channels.
    pub data: Vec<ChannelResponse>,
}

/// A Facebook page the token can manage.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, ToSchema)]
pub struct ExplorePage {
    /// The page id.
    pub page_id: String,
    /// The page's name (with location descriptor).
    pub name: String,
    /// The page picture, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    /// Whether the page is a connected facebook channel.
    pub connected: bool,
}

/// `{"data": [page…]}`.
#[derive(Serialize, Deserialize, Debug, ToSchema)]
pub struct ExploreResponse {
    /// The pages, in Graph API order.
    pub data: Vec<ExplorePage>,
}

/// Success without data: `{}`.
#[derive(Serialize, Deserialize, Debug, Default, ToSchema)]
pub struct Empty {}

/// Every error: `{"message": "<what was wrong>"}`.
#[derive(Serialize, Deserialize, Debug, ToSchema)]
pub struct ErrorBody {
    /// What was wrong.
    pub message: String,
}

/// The API's Channel object (docs/api.md) of a Channel resource.
pub fn channel_response(ch: &Channel, naming: crate::naming::ChatPluginNaming) -> ChannelResponse {
    let source = ch.spec.source;
    let id = ch.channel_id(naming);
    let status = ch.status.as_ref();
    // The provider's names are shown only for the sources whose provider reports them.
    let reported = matches!(
        source,
        Source::Facebook | Source::Instagram | Source::Viber | Source::Whatsapp
    );
    // A status written before names were cleaned may still hold invisible characters.
    let page_name = status
        .and_then(|s| s.page_name.as_deref().or(s.verified_name.as_deref()))
        .filter(|_| reported)
        .and_then(crate::rules::visible_name);
    let name = ch
        .spec
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .or(page_name)
        .unwrap_or_else(|| fallback_name(naming.source_str(source), &id));
    let image_url = ch
        .spec
        .image_url
        .clone()
        .filter(|u| !u.is_empty())
        .or_else(|| {
            status
                .and_then(|s| s.page_image_url.clone())
                .filter(|u| reported && !u.is_empty())
        });
    ChannelResponse {
        id,
        source: naming.source_str(source).to_owned(),
        source_channel_id: ch.spec.source_channel_id.clone(),
        connected: ch.is_connected(),
        metadata: ChannelMetadata { name, image_url },
    }
}

/// `"<source> " + the last five characters of the id`.
pub fn fallback_name(source: &str, id: &str) -> String {
    let tail = &id[id.len().saturating_sub(5)..];
    format!("{source} {tail}")
}
