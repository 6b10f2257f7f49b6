//! The one table of the `channels.*` endpoints. Each line names a handler; its path, method,
//! request and responses come from the handler's `#[utoipa::path]` attribute, and from that one
//! line the router routes it ([`router`]), the OpenAPI document (`openapi.rs`) describes it
//! and the request metrics label it ([`paths`]). An endpoint is
//! added by writing its handler and one line here.

use std::sync::LazyLock;

use axum::routing::MethodRouter;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

use super::error::method_not_allowed;
use super::handlers::*;
use super::state::AppState;

/// The table: every `channels.*` endpoint.
fn table() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(post_only(routes!(list)))
        .routes(post_only(routes!(info)))
        .routes(post_only(routes!(update)))
        .routes(post_only(routes!(chatplugin_connect)))
        .routes(post_only(routes!(facebook_connect)))
        .routes(post_only(routes!(google_connect)))
        .routes(post_only(routes!(twilio_sms_connect)))
        .routes(post_only(routes!(twilio_whatsapp_connect)))
        .routes(post_only(routes!(instagram_connect)))
        .routes(post_only(routes!(whatsapp_connect)))
        .routes(post_only(routes!(viber_connect)))
        .routes(post_only(routes!(chatplugin_disconnect)))
        .routes(post_only(routes!(chat_plugin_disconnect)))
        .routes(post_only(routes!(facebook_disconnect)))
        .routes(post_only(routes!(google_disconnect)))
        .routes(post_only(routes!(twilio_sms_disconnect)))
        .routes(post_only(routes!(twilio_whatsapp_disconnect)))
        .routes(post_only(routes!(instagram_disconnect)))
        .routes(post_only(routes!(whatsapp_disconnect)))
        .routes(post_only(routes!(viber_disconnect)))
        .routes(post_only(routes!(facebook_explore)))
}

/// Every endpoint is POST; any other method answers 405 with `Allow: POST` in the API's error
/// shape.
fn post_only(
    (schemas, paths, route): UtoipaMethodRouter<AppState>,
) -> UtoipaMethodRouter<AppState> {
    let route: MethodRouter<AppState> = route.fallback(|| async { method_not_allowed("POST") });
    (schemas, paths, route)
}

/// The router of the table's endpoints.
pub fn router() -> axum::Router<AppState> {
    table().split_for_parts().0
}

/// The table's OpenAPI paths and the schemas they name; the OpenAPI document (`openapi.rs`) joins
/// them to its info and shared schemas.
pub fn openapi() -> utoipa::openapi::OpenApi {
    table().into_openapi()
}

static PATHS: LazyLock<Vec<String>> =
    LazyLock::new(|| openapi().paths.paths.keys().cloned().collect());

/// Every endpoint path, in the document's (alphabetical) order.
pub fn paths() -> &'static [String] {
    &PATHS
}
