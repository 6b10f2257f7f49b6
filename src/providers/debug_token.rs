//! Graph's `debug_token`: what Facebook says of a token — whether it is valid, when it and its
//! data access expire, which permissions it carries — asked with the app's own access token
//! (`app_id|app_secret`) of the configuration the Channel uses. Changes nothing at Facebook.
//!
//! An error of the call itself is about the call or about the app's own credentials, never a
//! verdict on the token asked about: it is returned as such (a refused app token as
//! [`ProviderError::InvalidCredentials`], not [`ProviderError::TokenRejected`]).

use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;

use super::facebook::Facebook;
use super::ProviderError;
use crate::credentials_health::TokenFacts;
use crate::secret::SecretString;

#[derive(Deserialize)]
struct Answer {
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(default)]
    is_valid: bool,
    #[serde(default)]
    expires_at: i64,
    #[serde(default)]
    data_access_expires_at: i64,
    #[serde(default)]
    scopes: Vec<String>,
    error: Option<DataError>,
}

#[derive(Deserialize)]
struct DataError {
    subcode: Option<i64>,
    message: Option<String>,
}

/// A Graph time (seconds since the epoch); 0 or absent means never.
fn at(seconds: i64) -> Option<Timestamp> {
    (seconds > 0)
        .then(|| Timestamp::from_second(seconds).ok())
        .flatten()
}

impl Facebook {
    /// What Graph says of `token` (one `GET /debug_token`).
    pub async fn debug_token(&self, token: &SecretString) -> Result<TokenFacts, ProviderError> {
        let app_token = self.app_token()?;
        self.debug(
            token,
            &app_token,
            "asking Graph about the channel's token (debug_token)",
        )
        .await
        .map_err(|e| e.redacted(&[token, &app_token]))
    }

    /// What Graph says of the app's own access token: whether the app id and secret work.
    pub async fn debug_app_token(&self) -> Result<TokenFacts, ProviderError> {
        let app_token = self.app_token()?;
        self.debug(
            &app_token,
            &app_token,
            "checking the app's credentials (debug_token)",
        )
        .await
        .map_err(|e| e.redacted(&[&app_token]))
    }

    async fn debug(
        &self,
        token: &SecretString,
        app_token: &SecretString,
        what: &str,
    ) -> Result<TokenFacts, ProviderError> {
        let answer: Answer = self
            .call(
                what,
                self.http().get(self.url(&["debug_token"])?).query(&[
                    ("input_token", token.expose()),
                    ("access_token", app_token.expose()),
                ]),
            )
            .await
            .map_err(|e| match e {
                // The access token of this call is the app's: its rejection is the app's.
                ProviderError::TokenRejected { message, .. } => ProviderError::InvalidCredentials(
                    format!("{message}; the app's id and secret were refused"),
                ),
                e => e,
            })?;
        let data = answer.data.ok_or_else(|| {
            ProviderError::Failed(format!("facebook: {what}: the answer has no data"))
        })?;
        let (subcode, error) = match data.error {
            Some(e) => (e.subcode, e.message),
            None => (None, None),
        };
        Ok(TokenFacts {
            valid: data.is_valid,
            expires_at: at(data.expires_at),
            data_access_expires_at: at(data.data_access_expires_at),
            scopes: data.scopes,
            subcode,
            error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ProviderArgs;
    use clap::Parser;
    use wiremock::matchers::{method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const TOKEN: &str = "EAA-page-access-do-not-leak";

    async fn facebook(server: &MockServer) -> Facebook {
        #[derive(Parser)]
        struct Flags {
            #[command(flatten)]
            p: ProviderArgs,
        }
        let url = format!("{}/v24.0", server.uri());
        let flags = Flags::parse_from([
            "x",
            "--facebook-app-id",
            "app-1",
            "--facebook-app-secret",
            "s3cret-do-not-leak",
            "--facebook-graph-url",
            &url,
        ]);
        Facebook::new(reqwest::Client::new(), &flags.p)
    }

    /// What `debug_token` makes of Graph answering `status` with `body`, asked exactly once.
    async fn ask(status: u16, body: serde_json::Value) -> Result<TokenFacts, ProviderError> {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/v24.0/debug_token"))
            .and(query_param("input_token", TOKEN))
            .and(query_param("access_token", "app-1|s3cret-do-not-leak"))
            .respond_with(ResponseTemplate::new(status).set_body_json(body))
            .expect(1)
            .mount(&server)
            .await;
        facebook(&server)
            .await
            .debug_token(&SecretString::new(TOKEN))
            .await
    }

    #[tokio::test]
    async fn a_valid_token_gives_its_dates_and_scopes_and_zero_means_never() {
        let facts = ask(
            200,
            serde_json::json!({"data": {"app_id": "app-1", "type": "PAGE", "is_valid": true,
                "expires_at": 0, "data_access_expires_at": 1_800_000_000,
                "scopes": ["pages_messaging", "pages_manage_metadata"]}}),
        )
        .await
        .unwrap();
        assert!(facts.valid);
        assert_eq!(facts.expires_at, None);
        assert_eq!(
            facts.data_access_expires_at,
            Some(Timestamp::from_second(1_800_000_000).unwrap())
        );
        assert_eq!(facts.scopes, ["pages_messaging", "pages_manage_metadata"]);
    }

    #[tokio::test]
    async fn an_invalid_token_gives_the_subcode_and_why() {
        let facts = ask(
            200,
            serde_json::json!({"data": {"is_valid": false, "expires_at": 1_700_000_000,
                "scopes": [], "error": {"code": 190, "subcode": 460,
                "message": "The session has been invalidated because the user changed their password."}}}),
        )
        .await
        .unwrap();
        assert!(!facts.valid);
        assert_eq!(facts.subcode, Some(460));
        assert!(facts.error.unwrap().contains("changed their password"));
    }

    #[tokio::test]
    async fn a_refused_app_token_is_the_apps_failure_not_the_tokens_and_leaks_nothing() {
        let err = ask(
            400,
            serde_json::json!({"error": {"type": "OAuthException", "code": 190,
                "message": "Invalid OAuth access token signature: app-1|s3cret-do-not-leak"}}),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, ProviderError::InvalidCredentials(_)),
            "{err:?}"
        );
        assert!(err.credentials_verdict().is_none());
        let text = err.to_string();
        assert!(text.contains("app's id and secret were refused"), "{text}");
        assert!(!text.contains("do-not-leak"), "{text}");
    }
}
