//! Wiremock fakes of the providers: a Facebook page behind the Graph API, a Twilio number. Each
//! mounts exact expectations (`.expect(n)`), checked when the environment finishes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use channel_operator::providers::facebook::SUBSCRIBED_FIELDS;
use wiremock::matchers::{basic_auth, body_string, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::build::page_id;

/// The operator's Facebook app secret in tests.
pub const APP_SECRET: &str = "fb-app-secret-do-not-leak-0001";
/// The operator's Twilio auth token in tests.
pub const TWILIO_TOKEN: &str = "twilio-auth-token-do-not-leak-0002";
/// The Twilio account of the tests.
pub const TWILIO_SID: &str = "AC1";
/// The webhook Twilio numbers are pointed at.
pub const TWILIO_WEBHOOK: &str = "https://hooks.example.org/twilio";

/// The tokens of one user page token: what the user gives, what Graph derives from it.
#[derive(Clone, Debug)]
pub struct PageTokens {
    pub page_token: String,
    pub long_lived: String,
    pub page_access: String,
}

impl PageTokens {
    /// The tokens of `page` for the user's token number `n` (a second token of the same page is
    /// "other credentials").
    pub fn of(page: &str, n: u32) -> PageTokens {
        let v = if n == 1 {
            String::new()
        } else {
            format!("-{n}")
        };
        PageTokens {
            page_token: format!("EAAtok-{page}{v}-user-page-token"),
            long_lived: format!("EAAtok-{page}{v}-long-lived"),
            page_access: format!("EAAtok-{page}{v}-page-access"),
        }
    }
    pub fn all(&self) -> [String; 3] {
        [
            self.page_token.clone(),
            self.long_lived.clone(),
            self.page_access.clone(),
        ]
    }
}

/// A fake Facebook page (`page` names it; its id is [`page_id`]): the exchange of `tokens`'
/// page token, page reads, subscribe (exactly `subscribes` times with these tokens) and
/// unsubscribe (exactly `unsubscribes` times). `subscribed` is the page's app subscription,
/// shared by every token of the page as at Facebook.
pub async fn page(
    graph: &MockServer,
    page: &str,
    tokens: &PageTokens,
    subscribed: Arc<AtomicBool>,
    subscribes: impl Into<wiremock::Times>,
    unsubscribes: u64,
) {
    let id = page_id(page);
    Mock::given(method("GET"))
        .and(path("/v24.0/oauth/access_token"))
        .and(query_param("fb_exchange_token", tokens.page_token.as_str()))
        .and(query_param("client_secret", APP_SECRET))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"access_token": tokens.long_lived})),
        )
        .mount(graph)
        .await;
    let body = serde_json::json!({
        "id": id, "name_with_location_descriptor": format!("Page {page}"),
        "access_token": tokens.page_access,
        "picture": {"data": {"url": format!("https://img.example.org/{page}.png")}}
    });
    // The page read with the long-lived token (connect) and with its own page token (re-check).
    for token in [&tokens.long_lived, &tokens.page_access] {
        Mock::given(method("GET"))
            .and(path(format!("/v24.0/{id}")))
            .and(query_param("access_token", token.as_str()))
            .respond_with(PageState::Read(subscribed.clone(), body.clone()))
            .mount(graph)
            .await;
    }
    Mock::given(method("POST"))
        .and(path("/v24.0/me/subscribed_apps"))
        .and(query_param("access_token", tokens.page_access.as_str()))
        .and(query_param("subscribed_fields", SUBSCRIBED_FIELDS))
        .respond_with(PageState::Set(subscribed.clone(), true))
        .expect(subscribes)
        .named(format!("subscribe {page} with {}", tokens.page_token))
        .mount(graph)
        .await;
    Mock::given(method("DELETE"))
        .and(path(format!("/v24.0/{id}/subscribed_apps")))
        .and(query_param("access_token", tokens.page_access.as_str()))
        .respond_with(PageState::Set(subscribed, false))
        .expect(unsubscribes)
        .named(format!("unsubscribe {page} with {}", tokens.page_token))
        .mount(graph)
        .await;
}

/// A fake Twilio number `number` (sid `pn`): looked up, its webhook set exactly `connects` times
/// and cleared exactly `disconnects` times.
pub async fn twilio_number(
    twilio: &MockServer,
    number: &str,
    pn: &str,
    connects: u64,
    disconnects: u64,
) {
    Mock::given(method("GET"))
        .and(path(format!(
            "/2010-04-01/Accounts/{TWILIO_SID}/IncomingPhoneNumbers.json"
        )))
        .and(query_param("PhoneNumber", number))
        .and(basic_auth(TWILIO_SID, TWILIO_TOKEN))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"incoming_phone_numbers": [{"sid": pn, "phone_number": number}]}),
        ))
        .mount(twilio)
        .await;
    let number_path = format!("/2010-04-01/Accounts/{TWILIO_SID}/IncomingPhoneNumbers/{pn}.json");
    Mock::given(method("POST"))
        .and(path(number_path.as_str()))
        .and(body_string(format!(
            "SmsUrl={}",
            urlencoding(TWILIO_WEBHOOK)
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"sid": pn})))
        .expect(connects)
        .named(format!("twilio connect {number}"))
        .mount(twilio)
        .await;
    Mock::given(method("POST"))
        .and(path(number_path.as_str()))
        .and(body_string("SmsUrl="))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"sid": pn})))
        .expect(disconnects)
        .named(format!("twilio disconnect {number}"))
        .mount(twilio)
        .await;
}

fn urlencoding(s: &str) -> String {
    s.replace(':', "%3A").replace('/', "%2F")
}

/// The fake page's subscription state.
pub enum PageState {
    Read(Arc<AtomicBool>, serde_json::Value),
    Set(Arc<AtomicBool>, bool),
}

impl wiremock::Respond for PageState {
    fn respond(&self, _: &wiremock::Request) -> ResponseTemplate {
        match self {
            PageState::Read(state, body) => {
                let mut body = body.clone();
                body["is_webhooks_subscribed"] = state.load(Ordering::SeqCst).into();
                ResponseTemplate::new(200).set_body_json(body)
            }
            PageState::Set(state, value) => {
                state.store(*value, Ordering::SeqCst);
                ResponseTemplate::new(200).set_body_json(serde_json::json!({"success": true}))
            }
        }
    }
}
