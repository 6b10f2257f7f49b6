//! The OpenAPI 3 document, generated from the handlers' annotations and the request/response
//! types, served at `/openapi.json`.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::handlers;
use super::model::*;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.description = Some(
            "A static API token or an HS256 JWT with a user_id claim; needed only when the server is configured with --api-tokens or --jwt-secret."
                .to_owned(),
        );
        components.add_security_scheme("bearer", SecurityScheme::Http(http));
    }
}

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "channel-operator channels API",
        description = "The Airy Core channels API, served from Channel resources. Every endpoint is POST with a JSON body and answers JSON; errors are {\"message\": ...}."
    ),
    paths(
        handlers::list,
        handlers::info,
        handlers::update,
        handlers::chatplugin_connect,
        handlers::facebook_connect,
        handlers::google_connect,
        handlers::twilio_sms_connect,
        handlers::twilio_whatsapp_connect,
        handlers::chatplugin_disconnect,
        handlers::chat_plugin_disconnect,
        handlers::facebook_disconnect,
        handlers::google_disconnect,
        handlers::twilio_sms_disconnect,
        handlers::twilio_whatsapp_disconnect,
        handlers::facebook_explore,
    ),
    components(schemas(
        ListRequest,
        ChannelIdRequest,
        UpdateRequest,
        ChatPluginConnectRequest,
        FacebookConnectRequest,
        GoogleConnectRequest,
        TwilioConnectRequest,
        ExploreRequest,
        ChannelResponse,
        ChannelMetadata,
        ChannelList,
        ExplorePage,
        ExploreResponse,
        Empty,
        ErrorBody,
    )),
    modifiers(&BearerAuth),
    security(("bearer" = []), ()),
    tags((name = "channels", description = "Channels: connect, list, update, disconnect"))
)]
pub struct ApiDoc;

/// The document as JSON.
pub fn document_json() -> String {
    ApiDoc::openapi()
        .to_json()
        .expect("the OpenAPI document serializes")
}
