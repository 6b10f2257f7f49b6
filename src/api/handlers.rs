//! The endpoint handlers of docs/api.md. Each one validates the whole request before it
//! touches the cluster.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::error::{json_bytes, ApiError, JsonBody, OptionalJsonBody};
use super::model::*;
use super::state::{AppState, Desired};
use super::validate;
use crate::crd::Source;
use crate::secret::SecretString;

type ApiResult = Result<Response, ApiError>;

fn ok_json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    json_bytes(
        status,
        Bytes::from(serde_json::to_vec(value).expect("responses serialize")),
    )
}

fn empty(status: StatusCode) -> Response {
    json_bytes(status, Bytes::from_static(b"{}"))
}

/// List connected channels.
#[utoipa::path(post, path = "/channels.list", tag = "channels",
    request_body(content = ListRequest, description = "May be omitted (counts as `{}`)."),
    responses(
        (status = 200, description = "Connected channels, filtered by exact source when given", body = ChannelList),
            ))]
pub async fn list(
    State(state): State<AppState>,
    OptionalJsonBody(req): OptionalJsonBody<ListRequest>,
) -> ApiResult {
    let source = match req.source.as_deref() {
        None => None,
        // Both names of the chat plugin, whatever the installation's naming.
        Some(s) => match crate::naming::parse_source(s) {
            Some(src) => Some(src),
            // An exact filter no channel can match.
            None => {
                return Ok(json_bytes(
                    StatusCode::OK,
                    Bytes::from_static(b"{\"data\":[]}"),
                ))
            }
        },
    };
    Ok(json_bytes(StatusCode::OK, state.cache.list_body(source)))
}

/// One connected channel.
#[utoipa::path(post, path = "/channels.info", tag = "channels",
    request_body = ChannelIdRequest,
    responses(
        (status = 200, description = "The channel", body = ChannelResponse),
        (status = 400, description = "Bad JSON or a channel_id that is not a UUID", body = ErrorBody),
        (status = 404, description = "Unknown or disconnected channel", body = ErrorBody),
    ))]
pub async fn info(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<ChannelIdRequest>,
) -> ApiResult {
    let id = validate::uuid(&req.channel_id)?;
    match state.cache.get(&id).filter(|e| e.connected) {
        Some(e) => Ok(json_bytes(StatusCode::OK, e.json.clone())),
        None => Err(ApiError::not_found(format!("channel {id} not found"))),
    }
}

/// Change name and image of a connected channel.
#[utoipa::path(post, path = "/channels.update", tag = "channels",
    request_body = UpdateRequest,
    responses(
        (status = 200, description = "The channel with the new values", body = ChannelResponse),
        (status = 400, description = "Bad JSON, channel_id, name or image_url", body = ErrorBody),
        (status = 404, description = "Unknown or disconnected channel", body = ErrorBody),
        (status = 409, description = "The channel changed concurrently", body = ErrorBody),
    ))]
pub async fn update(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<UpdateRequest>,
) -> ApiResult {
    let id = validate::uuid(&req.channel_id)?;
    let name = validate::optional_text("name", req.name.as_deref())?;
    // Given empty: the image is removed.
    let image_url = req
        .image_url
        .as_deref()
        .map(|u| validate::image_url(Some(u)))
        .transpose()?;
    let body = state.update(&id, name, image_url).await?;
    Ok(json_bytes(StatusCode::OK, body))
}

/// The answers every connect endpoint gives besides its own 200, 400 and 500 (and the answers of
/// every endpoint, added to the document by `openapi.rs`).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // Only its OpenAPI description is used.
enum ConnectErrors {
    #[response(status = 404, description = "The channel was deleted meanwhile")]
    Deleted(ErrorBody),
    #[response(
        status = 409,
        description = "The channel id is held elsewhere, being deleted, or changed concurrently"
    )]
    Conflict(ErrorBody),
    #[response(status = 504, description = "The controller did not report in time")]
    TimedOut(ErrorBody),
}

async fn connect(state: &AppState, d: Desired) -> ApiResult {
    let e = state.connect(d).await?;
    Ok(json_bytes(StatusCode::OK, e.json.clone()))
}

/// Connect a website chat plugin.
#[utoipa::path(post, path = "/channels.chatplugin.connect", tag = "channels",
    request_body = ChatPluginConnectRequest,
    responses(
        (status = 200, description = "The connected channel", body = ChannelResponse),
        (status = 400, description = "Bad request", body = ErrorBody),
        (status = 500, description = "The controller reports the channel failed; nothing is kept", body = ErrorBody),
        ConnectErrors,
    ))]
pub async fn chatplugin_connect(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<ChatPluginConnectRequest>,
) -> ApiResult {
    let name = validate::required_text("name", &req.name)?;
    let image_url = validate::image_url(req.image_url.as_deref())?;
    connect(
        &state,
        Desired {
            source: Source::ChatPlugin,
            source_channel_id: name.clone(),
            name: Some(name),
            image_url,
            channel_token: None,
            instagram: None,
        },
    )
    .await
}

/// Connect a Facebook page.
#[utoipa::path(post, path = "/channels.facebook.connect", tag = "channels",
    request_body = FacebookConnectRequest,
    responses(
        (status = 200, description = "The connected channel; name and image default to the page's", body = ChannelResponse),
        (status = 400, description = "Bad request", body = ErrorBody),
        (status = 500, description = "Facebook refused; nothing is kept", body = ErrorBody),
        ConnectErrors,
    ))]
pub async fn facebook_connect(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<FacebookConnectRequest>,
) -> ApiResult {
    let page_id = validate::page_id(&req.page_id)?;
    let token = validate::token("page_token", &req.page_token)?;
    let name = validate::optional_text("name", req.name.as_deref())?;
    let image_url = validate::image_url(req.image_url.as_deref())?;
    connect(
        &state,
        Desired {
            source: Source::Facebook,
            source_channel_id: page_id,
            name,
            image_url,
            channel_token: Some(SecretString::new(token)),
            instagram: None,
        },
    )
    .await
}

/// Connect a Google Business Messages agent.
#[utoipa::path(post, path = "/channels.google.connect", tag = "channels",
    request_body = GoogleConnectRequest,
    responses(
        (status = 200, description = "The connected channel", body = ChannelResponse),
        (status = 400, description = "Bad request", body = ErrorBody),
        (status = 500, description = "The controller reports the channel failed; nothing is kept", body = ErrorBody),
        ConnectErrors,
    ))]
pub async fn google_connect(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<GoogleConnectRequest>,
) -> ApiResult {
    let gbm_id = validate::required_text("gbm_id", &req.gbm_id)?;
    let name = validate::required_text("name", &req.name)?;
    let image_url = validate::image_url(req.image_url.as_deref())?;
    connect(
        &state,
        Desired {
            source: Source::Google,
            source_channel_id: gbm_id,
            name: Some(name),
            image_url,
            channel_token: None,
            instagram: None,
        },
    )
    .await
}

async fn twilio_connect(state: &AppState, source: Source, req: TwilioConnectRequest) -> ApiResult {
    let number = validate::phone_number(&req.phone_number)?;
    let name = validate::required_text("name", &req.name)?;
    let image_url = validate::image_url(req.image_url.as_deref())?;
    let source_channel_id = match source {
        Source::TwilioWhatsapp => format!("whatsapp:{number}"),
        _ => number,
    };
    connect(
        state,
        Desired {
            source,
            source_channel_id,
            name: Some(name),
            image_url,
            channel_token: None,
            instagram: None,
        },
    )
    .await
}

/// Connect a Twilio SMS number.
#[utoipa::path(post, path = "/channels.twilio.sms.connect", tag = "channels",
    request_body = TwilioConnectRequest,
    responses(
        (status = 200, description = "The connected channel; source_channel_id is the number", body = ChannelResponse),
        (status = 400, description = "Bad request, also a number that is not E.164", body = ErrorBody),
        (status = 500, description = "Twilio refused; nothing is kept", body = ErrorBody),
        ConnectErrors,
    ))]
pub async fn twilio_sms_connect(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<TwilioConnectRequest>,
) -> ApiResult {
    twilio_connect(&state, Source::TwilioSms, req).await
}

/// Connect a Twilio WhatsApp number.
#[utoipa::path(post, path = "/channels.twilio.whatsapp.connect", tag = "channels",
    request_body = TwilioConnectRequest,
    responses(
        (status = 200, description = "The connected channel; source_channel_id is whatsapp: + the number", body = ChannelResponse),
        (status = 400, description = "Bad request, also a number that is not E.164", body = ErrorBody),
        (status = 500, description = "Twilio refused; nothing is kept", body = ErrorBody),
        ConnectErrors,
    ))]
pub async fn twilio_whatsapp_connect(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<TwilioConnectRequest>,
) -> ApiResult {
    twilio_connect(&state, Source::TwilioWhatsapp, req).await
}

/// Connect an Instagram account through its linked Facebook page.
#[utoipa::path(post, path = "/channels.instagram.connect", tag = "channels",
    request_body = InstagramConnectRequest,
    responses(
        (status = 200, description = "The connected channel; source_channel_id is the account id; name and image default to the page's", body = ChannelResponse),
        (status = 400, description = "Bad request", body = ErrorBody),
        (status = 500, description = "Facebook refused; nothing is kept", body = ErrorBody),
        ConnectErrors,
    ))]
pub async fn instagram_connect(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<InstagramConnectRequest>,
) -> ApiResult {
    let page_id = validate::page_id(&req.page_id)?;
    let account_id = validate::numeric_id("account_id", "Instagram account id", &req.account_id)?;
    let token = validate::token("page_token", &req.page_token)?;
    let name = validate::optional_text("name", req.name.as_deref())?;
    let image_url = validate::image_url(req.image_url.as_deref())?;
    connect(
        &state,
        Desired {
            source: Source::Instagram,
            source_channel_id: account_id,
            name,
            image_url,
            channel_token: Some(SecretString::new(token)),
            instagram: Some(crate::crd::InstagramSpec { page_id }),
        },
    )
    .await
}

/// Connect a WhatsApp Cloud API number.
#[utoipa::path(post, path = "/channels.whatsapp.connect", tag = "channels",
    request_body = WhatsappConnectRequest,
    responses(
        (status = 200, description = "The connected channel; source_channel_id is the phone number id", body = ChannelResponse),
        (status = 400, description = "Bad request", body = ErrorBody),
        (status = 500, description = "Meta refused (e.g. the token cannot read the number); nothing is kept", body = ErrorBody),
        ConnectErrors,
    ))]
pub async fn whatsapp_connect(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<WhatsappConnectRequest>,
) -> ApiResult {
    let number = validate::numeric_id(
        "phone_number_id",
        "WhatsApp phone number id",
        &req.phone_number_id,
    )?;
    let token = validate::token("user_token", &req.user_token)?;
    let name = validate::required_text("name", &req.name)?;
    let image_url = validate::image_url(req.image_url.as_deref())?;
    connect(
        &state,
        Desired {
            source: Source::Whatsapp,
            source_channel_id: number,
            name: Some(name),
            image_url,
            channel_token: Some(SecretString::new(token)),
            instagram: None,
        },
    )
    .await
}

/// Connect the installation's Viber bot (its auth token is the API's `--viber-auth-token`).
#[utoipa::path(post, path = "/channels.viber.connect", tag = "channels",
    request_body = ViberConnectRequest,
    responses(
        (status = 200, description = "The connected channel; source_channel_id is the Viber account id; name and image default to the account's", body = ChannelResponse),
        (status = 400, description = "Bad request", body = ErrorBody),
        (status = 500, description = "Viber refused; nothing is kept", body = ErrorBody),
        ConnectErrors,
    ))]
pub async fn viber_connect(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<ViberConnectRequest>,
) -> ApiResult {
    let name = validate::optional_text("name", req.name.as_deref())?;
    let image_url = validate::image_url(req.image_url.as_deref())?;
    let refused = |message: String| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message);
    let token = state.viber_token.clone().ok_or_else(|| {
        ApiError::unavailable(
            "channels.viber.connect is not available: this installation has no Viber bot (the API's --viber-auth-token; the chart's viber.authTokenSecret)",
        )
    })?;
    // The channel id follows from the account id, which only Viber knows.
    let account = state
        .viber
        .account(&token)
        .await
        .map_err(|e| refused(e.to_string()))?;
    let id = validate::required_text("the Viber account id", &account.id)?;
    connect(
        &state,
        Desired {
            source: Source::Viber,
            source_channel_id: id,
            name,
            image_url,
            channel_token: Some(token),
            instagram: None,
        },
    )
    .await
}

async fn disconnect(state: &AppState, source: Source, req: ChannelIdRequest) -> ApiResult {
    let id = validate::uuid(&req.channel_id)?;
    Ok(if state.disconnect(source, &id).await? {
        empty(StatusCode::OK)
    } else {
        empty(StatusCode::ACCEPTED)
    })
}

macro_rules! disconnect_handler {
    ($fn:ident, $path:literal, $source:expr, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "channels",
            request_body = ChannelIdRequest,
            responses(
                (status = 200, description = "Disconnected", body = Empty),
                (status = 202, description = "It already was disconnected", body = Empty),
                (status = 400, description = "Bad id, unknown channel, or a channel of another source", body = ErrorBody),
                (status = 500, description = "The provider refused", body = ErrorBody),
                (status = 404, description = "The channel was deleted meanwhile", body = ErrorBody),
                (status = 409, description = "The channel changed concurrently", body = ErrorBody),
                (status = 504, description = "The controller did not report in time", body = ErrorBody),
            ))]
        pub async fn $fn(
            State(state): State<AppState>,
            JsonBody(req): JsonBody<ChannelIdRequest>,
        ) -> ApiResult {
            disconnect(&state, $source, req).await
        }
    };
}

disconnect_handler!(
    chatplugin_disconnect,
    "/channels.chatplugin.disconnect",
    Source::ChatPlugin,
    "Disconnect a chat plugin."
);
disconnect_handler!(
    chat_plugin_disconnect,
    "/channels.chat_plugin.disconnect",
    Source::ChatPlugin,
    "Alias of `channels.chatplugin.disconnect` (older clients build the path from the source)."
);
disconnect_handler!(
    facebook_disconnect,
    "/channels.facebook.disconnect",
    Source::Facebook,
    "Disconnect a Facebook page (removes the app's page subscription and the stored token)."
);
disconnect_handler!(
    google_disconnect,
    "/channels.google.disconnect",
    Source::Google,
    "Disconnect a Google Business Messages agent."
);
disconnect_handler!(
    twilio_sms_disconnect,
    "/channels.twilio.sms.disconnect",
    Source::TwilioSms,
    "Disconnect a Twilio SMS number."
);
disconnect_handler!(
    twilio_whatsapp_disconnect,
    "/channels.twilio.whatsapp.disconnect",
    Source::TwilioWhatsapp,
    "Disconnect a Twilio WhatsApp number."
);

disconnect_handler!(
    instagram_disconnect,
    "/channels.instagram.disconnect",
    Source::Instagram,
    "Disconnect an Instagram account (removes the app's subscription to the linked page and the stored tokens)."
);
disconnect_handler!(
    whatsapp_disconnect,
    "/channels.whatsapp.disconnect",
    Source::Whatsapp,
    "Disconnect a WhatsApp Cloud API number (and the stored tokens; the business account subscription goes with the account's last channel)."
);
disconnect_handler!(
    viber_disconnect,
    "/channels.viber.disconnect",
    Source::Viber,
    "Disconnect a Viber bot (clears its webhook)."
);

/// The Facebook pages a user token can manage.
#[utoipa::path(post, path = "/channels.facebook.explore", tag = "channels",
    request_body = ExploreRequest,
    responses(
        (status = 200, description = "All pages, in Graph API order", body = ExploreResponse),
        (status = 400, description = "Bad request", body = ErrorBody),
        (status = 500, description = "Facebook refused (its status and message)", body = ErrorBody),
    ))]
pub async fn facebook_explore(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<ExploreRequest>,
) -> ApiResult {
    let token = SecretString::new(validate::token("auth_token", &req.auth_token)?);
    let pages = state
        .facebook
        .managed_pages(&token)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .into_iter()
        .map(|page| ExplorePage {
            connected: state
                .cache
                .is_connected(&state.naming.id_of(Source::Facebook, &page.page_id)),
            page_id: page.page_id,
            name: page.name,
            image_url: page.image_url,
        })
        .collect();
    Ok(ok_json(StatusCode::OK, &ExploreResponse { data: pages }))
}

/// `GET /healthz`: the process is up.
pub async fn healthz() -> Response {
    json_bytes(StatusCode::OK, Bytes::from_static(b"{}"))
}

/// `GET /readyz`: the channel cache has synced and is not stale (see `AnswerCache::is_ready`).
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.cache.not_ready_because() {
        None => json_bytes(StatusCode::OK, Bytes::from_static(b"{}")),
        Some(because) => ApiError::unavailable(because).into_response(),
    }
}
