//! The OpenAPI 3 document, generated from the handlers' annotations and the request/response
//! types, served at `/openapi.json`.
//!
//! The request constraints come from the rule set the server validates with ([`crate::rules`]
//! and [`super::validate`]); [`RequestRules`] writes them into the schemas, so the document and
//! the server cannot drift apart. [`CommonResponses`] adds the answers every endpoint can give.

use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{Schema, SchemaFormat};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr};
use utoipa::{Modify, OpenApi};

use super::model::*;
use super::validate::{MAX_TOKEN_LEN, TOKEN_PATTERN};
use crate::rules::{
    E164_PATTERN, HTTP_URL_DOC_PATTERN, MAX_NAME_LEN, MAX_URL_LEN, NUMERIC_ID_PATTERN,
    VISIBLE_TEXT_PATTERN,
};

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

/// What a request string field must look like.
#[derive(Clone, Copy)]
enum Rule {
    /// A hyphenated UUID (`validate::uuid`).
    Uuid,
    /// A name or id: not blank, no invisible or format characters (`validate::required_text`).
    Text,
    /// An absolute http(s) URL (`validate::image_url`).
    HttpUrl,
    /// An E.164 number (`validate::phone_number`).
    E164,
    /// A numeric Meta id: page, account or phone number id (`validate::numeric_id`).
    NumericId,
    /// An access token (`validate::token`).
    Token,
}

/// Every constrained request field: (schema, property, rule).
const RULES: &[(&str, &str, Rule)] = &[
    ("ChannelIdRequest", "channel_id", Rule::Uuid),
    ("UpdateRequest", "channel_id", Rule::Uuid),
    ("UpdateRequest", "name", Rule::Text),
    ("UpdateRequest", "image_url", Rule::HttpUrl),
    ("ChatPluginConnectRequest", "name", Rule::Text),
    ("ChatPluginConnectRequest", "image_url", Rule::HttpUrl),
    ("FacebookConnectRequest", "page_id", Rule::NumericId),
    ("FacebookConnectRequest", "page_token", Rule::Token),
    ("FacebookConnectRequest", "name", Rule::Text),
    ("FacebookConnectRequest", "image_url", Rule::HttpUrl),
    ("GoogleConnectRequest", "gbm_id", Rule::Text),
    ("GoogleConnectRequest", "name", Rule::Text),
    ("GoogleConnectRequest", "image_url", Rule::HttpUrl),
    ("TwilioConnectRequest", "phone_number", Rule::E164),
    ("TwilioConnectRequest", "name", Rule::Text),
    ("TwilioConnectRequest", "image_url", Rule::HttpUrl),
    ("InstagramConnectRequest", "page_id", Rule::NumericId),
    ("InstagramConnectRequest", "account_id", Rule::NumericId),
    ("InstagramConnectRequest", "page_token", Rule::Token),
    ("InstagramConnectRequest", "name", Rule::Text),
    ("InstagramConnectRequest", "image_url", Rule::HttpUrl),
    ("WhatsappConnectRequest", "phone_number_id", Rule::NumericId),
    ("WhatsappConnectRequest", "user_token", Rule::Token),
    ("WhatsappConnectRequest", "name", Rule::Text),
    ("WhatsappConnectRequest", "image_url", Rule::HttpUrl),
    ("ViberConnectRequest", "name", Rule::Text),
    ("ViberConnectRequest", "image_url", Rule::HttpUrl),
    ("ExploreRequest", "auth_token", Rule::Token),
];

/// Writes [`RULES`] into the component schemas.
struct RequestRules;

impl Modify for RequestRules {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let schemas = &mut openapi
            .components
            .as_mut()
            .expect("the document has components")
            .schemas;
        for &(schema, property, rule) in RULES {
            let Some(RefOr::T(Schema::Object(object))) = schemas.get_mut(schema) else {
                panic!("{schema} is an object schema of the document");
            };
            let Some(RefOr::T(Schema::Object(field))) = object.properties.get_mut(property) else {
                panic!("{schema}.{property} is a property of the document");
            };
            let (pattern, min, max) = match rule {
                Rule::Uuid => {
                    field.format = Some(SchemaFormat::Custom("uuid".to_owned()));
                    (None, None, None)
                }
                Rule::Text => (
                    Some(VISIBLE_TEXT_PATTERN.as_str()),
                    Some(1),
                    Some(MAX_NAME_LEN),
                ),
                Rule::HttpUrl => {
                    // Empty (no image, as Airy's clients send it) or the CRD's pattern.
                    (Some(IMAGE_URL_PATTERN.as_str()), None, Some(MAX_URL_LEN))
                }
                Rule::E164 => (Some(E164_PATTERN), None, None),
                Rule::NumericId => (Some(NUMERIC_ID_PATTERN), None, None),
                Rule::Token => (Some(TOKEN_PATTERN), Some(1), Some(MAX_TOKEN_LEN)),
            };
            field.pattern = pattern.map(str::to_owned);
            field.min_length = min;
            field.max_length = max;
        }
    }
}

/// An `image_url` the API accepts: empty, meaning no image, or an http(s) URL as the CRD takes it.
static IMAGE_URL_PATTERN: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("^$|{}", *HTTP_URL_DOC_PATTERN));

/// The answers every `channels.*` endpoint can give besides its own: before the handler runs
/// (body, content type, authentication, a cache that has not synced yet).
const COMMON_RESPONSES: &[(&str, &str)] = &[
    (
        "400",
        "Malformed JSON, a wrong type, a missing field or an invalid value",
    ),
    (
        "403",
        "Authentication failed (only when the server requires tokens)",
    ),
    ("413", "The body is larger than 64 KiB"),
    ("415", "The Content-Type is not application/json"),
    (
        "503",
        "The channel cache has not synced yet or the Kubernetes API is unavailable; for a connect or disconnect also: the installation is not configured for the source (no provider configuration admits the channels namespace, the operator lacks the source's app, webhook URL or access to the namespace's Secrets, or channels.viber.connect has no Viber bot)",
    ),
];

/// Adds [`COMMON_RESPONSES`] to every operation that does not document the status itself.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operation: &mut Operation = item.post.as_mut().expect("every endpoint is POST");
            for &(status, description) in COMMON_RESPONSES {
                operation
                    .responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| {
                        RefOr::T(
                            ResponseBuilder::new()
                                .description(description)
                                .content(
                                    "application/json",
                                    Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                                )
                                .build(),
                        )
                    });
            }
        }
    }
}

/// Request bodies that may be omitted (they count as `{}`): `channels.list`. utoipa marks every
/// body required unless its type is an `Option`, which would also allow a JSON `null`.
struct OptionalBodies;

impl Modify for OptionalBodies {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let list = openapi.paths.paths.get_mut("/channels.list");
        let body = list
            .and_then(|item| item.post.as_mut())
            .and_then(|operation| operation.request_body.as_mut())
            .expect("channels.list has a request body");
        body.required = Some(utoipa::openapi::Required::False);
    }
}

/// The document's info, shared schemas, security and tags; the paths come from the table of
/// endpoints ([`super::endpoints`]) and [`document`] joins the two.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "channel-operator channels API",
        description = "The Airy Core channels API, served from Channel resources. Every endpoint is POST with a JSON body and answers JSON; errors are {\"message\": ...}."
    ),
    components(schemas(
        ListRequest,
        ChannelIdRequest,
        UpdateRequest,
        ChatPluginConnectRequest,
        FacebookConnectRequest,
        GoogleConnectRequest,
        TwilioConnectRequest,
        InstagramConnectRequest,
        WhatsappConnectRequest,
        ViberConnectRequest,
        ExploreRequest,
        ChannelResponse,
        ChannelMetadata,
        ChannelList,
        ExplorePage,
        ExploreResponse,
        Empty,
        ErrorBody,
    )),
    security(("bearer" = []), ()),
    tags((name = "channels", description = "Channels: connect, list, update, disconnect"))
)]
pub struct ApiDoc;

/// The API description: the table of endpoints over [`ApiDoc`], with the modifiers applied.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi().merge_from(super::endpoints::openapi());
    let modifiers: [&dyn Modify; 4] = [
        &BearerAuth,
        &RequestRules,
        &CommonResponses,
        &OptionalBodies,
    ];
    for modifier in modifiers {
        modifier.modify(&mut doc);
    }
    doc
}

/// The document as JSON.
pub fn document_json() -> String {
    document()
        .to_json()
        .expect("the OpenAPI document serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    /// A document pattern `^(?!.*[C])R`, evaluated as ECMA-262 and Python evaluate it (the
    /// regex crate has no lookahead): no character of C anywhere (C holds every line
    /// terminator, which `.` does not match), and `^R`.
    fn doc_matcher(pattern: &str) -> impl Fn(&str) -> bool {
        let rest = pattern
            .strip_prefix("^(?!.*[")
            .expect("a lookahead pattern");
        let end = rest.find("])").expect("the lookahead's class ends");
        let class = Regex::new(&format!("[{}]", &rest[..end])).unwrap();
        for terminator in ["\n", "\r", "\u{85}", "\u{2028}", "\u{2029}"] {
            assert!(class.is_match(terminator), "{terminator:?}");
        }
        let tail = Regex::new(&format!("^{}", &rest[end + 2..])).unwrap();
        move |s| !class.is_match(s) && tail.is_match(s)
    }

    /// Whether the request body of `path` must be given.
    fn body_required(doc: &utoipa::openapi::OpenApi, path: &str) -> bool {
        use utoipa::openapi::Required;
        let body: &utoipa::openapi::request_body::RequestBody = doc.paths.paths[path]
            .post
            .as_ref()
            .and_then(|o| o.request_body.as_ref())
            .expect("a request body");
        matches!(body.required, Some(Required::True))
    }

    fn property(doc: &utoipa::openapi::OpenApi, schema: &str, name: &str) -> serde_json::Value {
        let json = serde_json::to_value(doc).unwrap();
        json["components"]["schemas"][schema]["properties"][name].clone()
    }

    #[test]
    fn patterns_are_the_rule_constants() {
        let doc = document();
        let phone = property(&doc, "TwilioConnectRequest", "phone_number");
        assert_eq!(phone["pattern"], E164_PATTERN);
        let page = property(&doc, "FacebookConnectRequest", "page_id");
        assert_eq!(page["pattern"], NUMERIC_ID_PATTERN);
        let url = property(&doc, "UpdateRequest", "image_url");
        assert_eq!(url["pattern"], format!("^$|{}", *HTTP_URL_DOC_PATTERN));
        assert_eq!(url["maxLength"], MAX_URL_LEN);
        let id = property(&doc, "ChannelIdRequest", "channel_id");
        assert_eq!(id["format"], "uuid");
        let name = property(&doc, "GoogleConnectRequest", "name");
        assert_eq!(name["minLength"], 1);
        assert_eq!(name["maxLength"], MAX_NAME_LEN);
    }

    #[test]
    fn only_the_list_body_may_be_omitted() {
        let doc = document();
        assert!(!body_required(&doc, "/channels.list"));
        assert!(body_required(&doc, "/channels.info"));
        assert!(body_required(&doc, "/channels.twilio.sms.connect"));
    }

    #[test]
    fn every_endpoint_documents_its_errors() {
        let doc = document();
        for (path, item) in &doc.paths.paths {
            let responses = &item.post.as_ref().unwrap().responses.responses;
            let writes: &[&str] = if path.ends_with(".disconnect") {
                &["202", "404", "409", "500", "504"]
            } else if path.ends_with(".connect") {
                &["404", "409", "500", "504"]
            } else {
                &[]
            };
            for status in ["200", "400", "403", "413", "415", "503"]
                .iter()
                .chain(writes)
            {
                assert!(responses.contains_key(*status), "{path} lacks {status}");
            }
        }
    }

    /// The text and token patterns say what the validation does, on values at the edges.
    #[test]
    fn text_and_token_patterns_agree_with_the_validation() {
        let text = doc_matcher(&VISIBLE_TEXT_PATTERN);
        let token = Regex::new(TOKEN_PATTERN).unwrap();
        for value in [
            "a", " a ", "", "   ", "\t", "a\u{0}b", "a\u{7f}", "a\u{85}", "ä ö", "\u{a0}", "x\ny",
            "日本",
        ] {
            assert_eq!(
                text(value),
                super::super::validate::required_text("name", value).is_ok(),
                "name {value:?}"
            );
            assert_eq!(
                token.is_match(value),
                super::super::validate::token("auth_token", value).is_ok(),
                "token {value:?}"
            );
        }
    }

    /// The document's `image_url` pattern, the CRD's and the API's check agree on every code
    /// point, in the host and in the path.
    #[test]
    fn the_url_patterns_agree_with_the_validation_on_every_code_point() {
        let doc = doc_matcher(IMAGE_URL_PATTERN.strip_prefix("^$|").unwrap());
        let crd = Regex::new(&crate::rules::HTTP_URL_PATTERN).unwrap();
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            for value in [format!("https://a{c}b/"), format!("https://a/{c}")] {
                let accepted = super::super::validate::image_url(Some(&value)).is_ok();
                assert_eq!(doc(&value), accepted, "{value:?}");
                assert_eq!(crd.is_match(&value), accepted, "{value:?}");
            }
        }
    }

    /// The document's name pattern and the API's check agree on every code point, alone and
    /// inside a name.
    #[test]
    fn the_name_pattern_agrees_with_the_validation_on_every_code_point() {
        let text = doc_matcher(&VISIBLE_TEXT_PATTERN);
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            for value in [c.to_string(), format!("a{c}b")] {
                assert_eq!(
                    text(&value),
                    super::super::validate::required_text("name", &value).is_ok(),
                    "name {value:?} (U+{:04X})",
                    u32::from(c)
                );
            }
        }
    }
}
