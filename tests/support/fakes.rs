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

/// A Facebook app of the tests: the flags' ([`FLAGS_APP`]) or a provider configuration's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct App {
    pub id: &'static str,
    pub secret: &'static str,
}

/// The operator's (flags') Facebook app in tests.
pub const FLAGS_APP: App = App {
    id: "app-1",
    secret: APP_SECRET,
};

/// A Twilio account of the tests: the flags' ([`FLAGS_TWILIO`]) or a provider configuration's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TwilioAccount {
    pub sid: &'static str,
    pub token: &'static str,
    pub webhook: &'static str,
}

/// The operator's (flags') Twilio account in tests.
pub const FLAGS_TWILIO: TwilioAccount = TwilioAccount {
    sid: TWILIO_SID,
    token: TWILIO_TOKEN,
    webhook: TWILIO_WEBHOOK,
};

/// The tokens of one user page token: what the user gives, what Graph derives from it.
#[derive(Clone, Debug)]
pub struct PageTokens {
    pub page_token: String,
    pub long_lived: String,
    pub page_access: String,
}

impl PageTokens {
    /// The tokens of `page` for the user's token number `n` (a second token of the same page is
    /// "other credentials"), exchanged with the flags' app.
    pub fn of(page: &str, n: u32) -> PageTokens {
        PageTokens::of_app(page, n, FLAGS_APP)
    }
    /// Like [`PageTokens::of`], exchanged with `app`: the user's token is the same, what Graph
    /// derives from it is the app's own (a page access token is scoped to its app).
    pub fn of_app(page: &str, n: u32, app: App) -> PageTokens {
        let v = if n == 1 {
            String::new()
        } else {
            format!("-{n}")
        };
        let a = if app == FLAGS_APP {
            String::new()
        } else {
            format!("-{}", app.id)
        };
        PageTokens {
            page_token: format!("EAAtok-{page}{v}-user-page-token"),
            long_lived: format!("EAAtok-{page}{v}{a}-long-lived"),
            page_access: format!("EAAtok-{page}{v}{a}-page-access"),
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

/// A fake Facebook page (`page` names it; its id is [`page_id`]) of `app`: the exchange of
/// `tokens`' page token with the app's id and secret, page reads, subscribe (exactly
/// `subscribes` times with these tokens) and unsubscribe (exactly `unsubscribes` times).
/// `subscribed` is the page's subscription of `app`, shared by every token of the page as at
/// Facebook (Graph's `is_webhooks_subscribed` is the app's).
#[allow(clippy::too_many_arguments)]
pub async fn page(
    graph: &MockServer,
    app: App,
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
        .and(query_param("client_id", app.id))
        .and(query_param("client_secret", app.secret))
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
        .named(format!(
            "subscribe {page} with {} of {}",
            tokens.page_token, app.id
        ))
        .mount(graph)
        .await;
    Mock::given(method("DELETE"))
        .and(path(format!("/v24.0/{id}/subscribed_apps")))
        .and(query_param("access_token", tokens.page_access.as_str()))
        .respond_with(PageState::Set(subscribed, false))
        .expect(unsubscribes)
        .named(format!(
            "unsubscribe {page} with {} of {}",
            tokens.page_token, app.id
        ))
        .mount(graph)
        .await;
}

/// A fake Twilio number `number` (sid `pn`) of `account`: looked up, its webhook set exactly
/// `connects` times and cleared exactly `disconnects` times, with the account's credentials.
pub async fn twilio_number(
    twilio: &MockServer,
    account: TwilioAccount,
    number: &str,
    pn: &str,
    connects: u64,
    disconnects: u64,
) {
    let sid = account.sid;
    Mock::given(method("GET"))
        .and(path(format!(
            "/2010-04-01/Accounts/{sid}/IncomingPhoneNumbers.json"
        )))
        .and(query_param("PhoneNumber", number))
        .and(basic_auth(sid, account.token))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"incoming_phone_numbers": [{"sid": pn, "phone_number": number}]}),
        ))
        .mount(twilio)
        .await;
    let number_path = format!("/2010-04-01/Accounts/{sid}/IncomingPhoneNumbers/{pn}.json");
    Mock::given(method("POST"))
        .and(path(number_path.as_str()))
        .and(basic_auth(sid, account.token))
        .and(body_string(format!(
            "SmsUrl={}",
            urlencoding(account.webhook)
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"sid": pn})))
        .expect(connects)
        .named(format!("twilio connect {number} in {sid}"))
        .mount(twilio)
        .await;
    Mock::given(method("POST"))
        .and(path(number_path.as_str()))
        .and(basic_auth(sid, account.token))
        .and(body_string("SmsUrl="))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"sid": pn})))
        .expect(disconnects)
        .named(format!("twilio disconnect {number} in {sid}"))
        .mount(twilio)
        .await;
}

/// A fake WhatsApp Cloud API number `number` of business account `waba`, for `user_token`
/// exchanged with `app`: the exchange, the number read, and the app's subscription to the
/// business account made exactly `subscribes` and removed exactly `unsubscribes` times with the
/// app's long-lived token. Returns that long-lived token.
#[allow(clippy::too_many_arguments)]
pub async fn whatsapp_number(
    graph: &MockServer,
    app: App,
    user_token: &str,
    number: &str,
    waba: &str,
    subscribes: u64,
    unsubscribes: u64,
) -> String {
    let long_lived = format!("{user_token}-{}-long-lived", app.id);
    let ok = |v: serde_json::Value| ResponseTemplate::new(200).set_body_json(v);
    Mock::given(method("GET"))
        .and(path("/v24.0/oauth/access_token"))
        .and(query_param("fb_exchange_token", user_token))
        .and(query_param("client_id", app.id))
        .and(query_param("client_secret", app.secret))
        .respond_with(ok(serde_json::json!({"access_token": long_lived})))
        .mount(graph)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/v24.0/{number}")))
        .and(query_param("access_token", long_lived.as_str()))
        .respond_with(ok(serde_json::json!({"id": number,
            "display_phone_number": "+49 30 1234567", "verified_name": "Shop GmbH"})))
        .mount(graph)
        .await;
    for (verb, n) in [("POST", subscribes), ("DELETE", unsubscribes)] {
        Mock::given(method(verb))
            .and(path(format!("/v24.0/{waba}/subscribed_apps")))
            .and(query_param("access_token", long_lived.as_str()))
            .respond_with(ok(serde_json::json!({"success": true})))
            .expect(n)
            .named(format!("{verb} subscription of {} to {waba}", app.id))
            .mount(graph)
            .await;
    }
    long_lived
}

/// Refuses, and counts as a failure, every call no other fake of `server` answers: a call at an
/// app, account or resource a test did not expect. Graph's `debug_token` (asked at every connect
/// and re-check, and of a configuration's app) says every token is valid unless a test's own
/// fake (`token_fake`) says otherwise; every Twilio account read is active.
pub async fn nothing_else(server: &MockServer) {
    use channel_operator::crd::Source;
    use channel_operator::credentials_health::required_scopes;
    let all: Vec<&str> = [Source::Instagram, Source::Whatsapp]
        .into_iter()
        .flat_map(required_scopes)
        .copied()
        .collect();
    Mock::given(method("GET"))
        .and(path("/v24.0/debug_token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"data": {"is_valid": true, "expires_at": 0, "scopes": all}}),
        ))
        .with_priority(u8::MAX - 1)
        .named("debug_token: every token valid")
        .mount(server)
        .await;
    // A provider configuration's Twilio account, read at its checks: active.
    Mock::given(method("GET"))
        .and(wiremock::matchers::path_regex(
            r"^/2010-04-01/Accounts/[^/]+\.json$",
        ))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"status": "active"})),
        )
        .with_priority(u8::MAX - 1)
        .named("every Twilio account active")
        .mount(server)
        .await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(500))
        .with_priority(u8::MAX)
        .expect(0)
        .named("a call no fake expects")
        .mount(server)
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
