//! Fakes of what the providers say of credentials, flipped by a test at run time: Graph's
//! `debug_token` about a channel's token (valid, expiring, expired, invalidated with a subcode,
//! missing a permission) — with every other Graph call made with that token answering OAuth
//! error 190 while it is invalid, as Facebook does — and the accounts' own checks (the app's
//! `debug_token`, the Twilio account's status).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use channel_operator::crd::Source;
use channel_operator::credentials_health::required_scopes;
use wiremock::matchers::{basic_auth, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use super::fakes::{APP_SECRET, TWILIO_SID, TWILIO_TOKEN};

/// What Facebook says of one token now.
#[derive(Clone, Debug)]
struct TokenState {
    valid: bool,
    /// Seconds since the epoch; 0: never.
    expires_at: i64,
    data_access_expires_at: i64,
    scopes: Vec<String>,
    /// The OAuth error subcode while invalid.
    subcode: Option<i64>,
}

/// A token Facebook knows, whose state a test changes (every clone shares it).
#[derive(Clone)]
pub struct FakeToken(Arc<Mutex<TokenState>>);

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

impl FakeToken {
    /// Mounts `debug_token` about `token` (asked with `app_id`'s app token, whose secret is the
    /// tests' [`APP_SECRET`]): valid, never expiring, with every permission `source` needs; and
    /// a 190 answer to any other Graph call with `token` while it is invalid.
    pub async fn mount(graph: &MockServer, token: &str, source: Source, app_id: &str) -> FakeToken {
        let fake = FakeToken(Arc::new(Mutex::new(TokenState {
            valid: true,
            expires_at: 0,
            data_access_expires_at: 0,
            scopes: required_scopes(source)
                .iter()
                .map(|s| s.to_string())
                .chain(["pages_show_list".to_string()])
                .collect(),
            subcode: None,
        })));
        Mock::given(method("GET"))
            .and(path("/v24.0/debug_token"))
            .and(query_param("input_token", token))
            .and(query_param(
                "access_token",
                format!("{app_id}|{APP_SECRET}"),
            ))
            .respond_with(fake.clone())
            .named(format!("debug_token of {token}"))
            .mount(graph)
            .await;
        Mock::given(query_param("access_token", token))
            .and(WhileInvalid(fake.clone()))
            .respond_with(Refused(fake.clone()))
            .with_priority(1)
            .named(format!("any call with {token} while it is invalid"))
            .mount(graph)
            .await;
        fake
    }

    fn set(&self, f: impl FnOnce(&mut TokenState)) {
        f(&mut self.0.lock().unwrap());
    }

    /// The token now expires `after` from now.
    pub fn expiring_in(&self, after: Duration) {
        self.set(|s| s.expires_at = now() + after.as_secs() as i64);
    }

    /// Facebook invalidated it (460: password changed, 463: expired, 467: revoked, ...).
    pub fn invalidate(&self, subcode: i64) {
        self.set(|s| {
            s.valid = false;
            s.subcode = Some(subcode);
        });
    }

    /// Repaired at Facebook (the user logged in again): valid, never expiring.
    pub fn repair(&self) {
        self.set(|s| {
            s.valid = true;
            s.subcode = None;
            s.expires_at = 0;
        });
    }

    /// The user took back one permission.
    pub fn revoke_scope(&self, scope: &str) {
        self.set(|s| s.scopes.retain(|x| x != scope));
    }
}

impl wiremock::Respond for FakeToken {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let s = self.0.lock().unwrap().clone();
        let mut data = serde_json::json!({
            "app_id": "app-1", "type": "PAGE", "application": "tests",
            "is_valid": s.valid, "expires_at": s.expires_at,
            "data_access_expires_at": s.data_access_expires_at, "scopes": s.scopes,
        });
        if let Some(subcode) = s.subcode {
            data["error"] = serde_json::json!({"code": 190, "subcode": subcode,
                "message": "Error validating access token: the session has been invalidated"});
        }
        ResponseTemplate::new(200).set_body_json(serde_json::json!({ "data": data }))
    }
}

/// Matches while the token is invalid.
struct WhileInvalid(FakeToken);

impl wiremock::Match for WhileInvalid {
    fn matches(&self, _: &Request) -> bool {
        !self.0 .0.lock().unwrap().valid
    }
}

/// Graph's answer to a call with an invalid token.
struct Refused(FakeToken);

impl wiremock::Respond for Refused {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let subcode = self.0 .0.lock().unwrap().subcode;
        ResponseTemplate::new(400).set_body_json(serde_json::json!({"error": {
            "message": "Error validating access token: the session has been invalidated",
            "type": "OAuthException", "code": 190, "error_subcode": subcode}}))
    }
}

/// The app `app_id`'s own credentials (secret `secret`) as Graph's `debug_token` judges them,
/// flipped with [`FakeFlag::set`] (true: accepted).
pub async fn fake_app(graph: &MockServer, app_id: &str, secret: &str) -> FakeFlag {
    let flag = FakeFlag(Arc::new(Mutex::new(true)));
    let app_token = format!("{app_id}|{secret}");
    Mock::given(method("GET"))
        .and(path("/v24.0/debug_token"))
        .and(query_param("input_token", app_token.as_str()))
        .and(query_param("access_token", app_token.as_str()))
        .respond_with(AppAnswer(flag.clone(), app_id.to_owned()))
        .named(format!("debug_token of app {app_id}"))
        .mount(graph)
        .await;
    flag
}

/// A switch a fake answers by.
#[derive(Clone)]
pub struct FakeFlag(Arc<Mutex<bool>>);

impl FakeFlag {
    pub fn set(&self, value: bool) {
        *self.0.lock().unwrap() = value;
    }
}

struct AppAnswer(FakeFlag, String);

impl wiremock::Respond for AppAnswer {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        if *self.0 .0.lock().unwrap() {
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"data": {
                "app_id": self.1, "type": "APP", "application": "tests", "is_valid": true}}))
        } else {
            ResponseTemplate::new(400).set_body_json(serde_json::json!({"error": {
                "message": "Error validating client secret.", "type": "OAuthException",
                "code": 190}}))
        }
    }
}

/// The tests' Twilio account ([`TWILIO_SID`]) as Twilio reports it, its status flipped with
/// [`FakeAccount::status`].
#[derive(Clone)]
pub struct FakeAccount(Arc<Mutex<String>>);

impl FakeAccount {
    /// Mounts the account's read: `active`.
    pub async fn mount(twilio: &MockServer) -> FakeAccount {
        let account = FakeAccount(Arc::new(Mutex::new("active".into())));
        Mock::given(method("GET"))
            .and(path(format!("/2010-04-01/Accounts/{TWILIO_SID}.json")))
            .and(basic_auth(TWILIO_SID, TWILIO_TOKEN))
            .respond_with(account.clone())
            .named("the Twilio account")
            .mount(twilio)
            .await;
        account
    }

    /// `active`, `suspended` or `closed`.
    pub fn status(&self, status: &str) {
        *self.0.lock().unwrap() = status.into();
    }
}

impl wiremock::Respond for FakeAccount {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "sid": TWILIO_SID, "friendly_name": "tests", "status": *self.0.lock().unwrap()}))
    }
}
