//! Providers: the messaging platforms a channel is connected with (docs/providers.md).
//!
//! Every source has one [`Provider`] implementation; [`Providers::for_source`] picks it. Errors are
//! classified ([`ProviderError`]) so the controller can report the right `Ready` reason and choose
//! the right retry delay. No error message ever contains a token or a URL with its query string.

pub mod debug_token;
pub mod facebook;
pub mod instagram;
pub mod noop;
pub mod twilio;
pub mod viber;
pub mod whatsapp;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::crd::{Channel, Source};
use crate::effects::{EffectKey, EffectKind, Origin};
use crate::reason::Reason;
use crate::secret::SecretString;

/// Provider settings shared by the controller and the API (explore calls the Graph API directly).
#[derive(clap::Args, Clone, Debug)]
pub struct ProviderArgs {
    /// Facebook app id, used to exchange page tokens for long-lived ones.
    #[arg(long, env = "FACEBOOK_APP_ID")]
    pub facebook_app_id: Option<String>,
    /// Facebook app secret.
    #[arg(long, env = "FACEBOOK_APP_SECRET", hide_env_values = true)]
    pub facebook_app_secret: Option<SecretString>,
    /// Base URL of the Facebook Graph API, including its version.
    #[arg(
        long,
        env = "FACEBOOK_GRAPH_URL",
        default_value = "https://graph.facebook.com/v24.0"
    )]
    pub facebook_graph_url: String,
    /// Twilio account SID. Without it (and the auth token), Twilio channels connect without a call.
    #[arg(long, env = "TWILIO_ACCOUNT_SID")]
    pub twilio_account_sid: Option<String>,
    /// Twilio auth token.
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub twilio_auth_token: Option<SecretString>,
    /// Base URL of the Twilio REST API.
    #[arg(long, env = "TWILIO_API_URL", default_value = "https://api.twilio.com")]
    pub twilio_api_url: String,
    /// Public URL Twilio numbers' messaging webhooks are pointed at.
    #[arg(long, env = "TWILIO_WEBHOOK_URL")]
    pub twilio_webhook_url: Option<String>,
    /// Base URL of the Viber REST API.
    #[arg(
        long,
        env = "VIBER_API_URL",
        default_value = "https://chatapi.viber.com"
    )]
    pub viber_api_url: String,
    /// Auth token of the installation's Viber bot, which the API's channels.viber.connect
    /// connects (the API only: a Viber Channel names its token in credentialsSecretRef).
    #[arg(long, env = "VIBER_AUTH_TOKEN", hide_env_values = true)]
    pub viber_auth_token: Option<SecretString>,
    /// Public URL Viber bots' webhooks are pointed at (needed to connect Viber channels).
    #[arg(long, env = "VIBER_WEBHOOK_URL")]
    pub viber_webhook_url: Option<String>,
    /// Timeout of one provider HTTP request, in seconds.
    #[arg(long, env = "PROVIDER_TIMEOUT_SECONDS", default_value_t = 10)]
    pub provider_timeout_seconds: u64,
}

/// What a proof of the credentials or a re-check reports (shown in the status).
#[derive(Debug, Default, Clone)]
pub struct ConnectOutcome {
    /// The name the provider reports (the Facebook or Instagram channel's page, the Viber account).
    pub page_name: Option<String>,
    /// The picture the provider reports (the page's, the Viber account's icon).
    pub page_image_url: Option<String>,
    /// The WhatsApp number as Meta displays it.
    pub display_phone_number: Option<String>,
    /// The WhatsApp number's verified business name.
    pub verified_name: Option<String>,
    /// The WhatsApp number's quality rating.
    pub quality_rating: Option<String>,
    /// A token the operator keeps in the Channel's record for re-checks (Facebook's page access
    /// token, the long-lived WhatsApp user token, a copy of the Viber bot token).
    pub token: Option<SecretString>,
}

/// What a proof of a Channel's credentials obtained at the provider with read-only calls (the
/// token exchanged, the page, number or account read): shown to work before the Channel claims
/// its channel id, and reused by the connect that follows in the same reconcile (a token is
/// exchanged once).
#[derive(Debug, Default, Clone)]
pub struct Proof {
    /// What the provider reports, and the token to keep.
    pub outcome: ConnectOutcome,
    /// The credential that undoes the connection's effects, of which the record keeps a copy:
    /// the page access token, the long-lived WhatsApp token, the Viber bot token, the Twilio
    /// account's auth token.
    pub undo: Option<SecretString>,
    /// Whether the effect is there already (Graph's `is_webhooks_subscribed` of the app).
    pub already: bool,
    /// The provider's own handle of the resource (the Twilio number's `PN…` sid).
    pub handle: Option<String>,
    /// Every secret the proof used or obtained (the user's token, the tokens derived from it): an
    /// error of a later call with them (a provider may echo a request) is scrubbed of each.
    pub secrets: Vec<SecretString>,
}

/// Why a provider call failed; decides the `Ready` reason and the retry delay.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// The credentials are absent or empty (the Secret, its key, or operator configuration).
    #[error("{0}")]
    CredentialsMissing(String),
    /// The provider rejected the credentials.
    #[error("{0}")]
    InvalidCredentials(String),
    /// The provider said the token no longer works (Graph's OAuth error 190, from any call):
    /// expired, or invalidated (password changed, app removed, revoked). The credentials must
    /// change, or be repaired at the provider.
    #[error("{message}")]
    TokenRejected {
        /// What failed, with the provider's words (never a token).
        message: String,
        /// Expired (subcode 463) rather than invalidated.
        expired: bool,
    },
    /// The provider asked us to slow down; retry after the given delay.
    #[error("{message}")]
    RateLimited {
        /// What failed.
        message: String,
        /// The provider's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// Anything else: 5xx, other 4xx, timeouts, refused connections, unexpected bodies.
    #[error("{0}")]
    Failed(String),
}

impl ProviderError {
    /// The `Ready` condition reason for this error.
    pub fn reason(&self) -> Reason {
        match self {
            ProviderError::CredentialsMissing(_) => Reason::CredentialsMissing,
            ProviderError::InvalidCredentials(_) | ProviderError::TokenRejected { .. } => {
                Reason::InvalidCredentials
            }
            ProviderError::RateLimited { .. } | ProviderError::Failed(_) => Reason::ProviderError,
        }
    }

    /// The verdict on the credentials this error says no longer work (Graph's OAuth error 190);
    /// `None` for every other error.
    pub fn credentials_verdict(&self) -> Option<crate::credentials_health::Verdict> {
        match self {
            ProviderError::TokenRejected { message, expired } => Some(
                crate::credentials_health::Verdict::rejected(*expired, message),
            ),
            _ => None,
        }
    }

    /// Replaces every occurrence of the given secrets in the message by `<redacted>`.
    pub fn redacted(self, secrets: &[&SecretString]) -> Self {
        let scrub = |m: String| redact(m, secrets);
        match self {
            ProviderError::CredentialsMissing(m) => ProviderError::CredentialsMissing(scrub(m)),
            ProviderError::InvalidCredentials(m) => ProviderError::InvalidCredentials(scrub(m)),
            ProviderError::TokenRejected { message, expired } => ProviderError::TokenRejected {
                message: scrub(message),
                expired,
            },
            ProviderError::RateLimited {
                message,
                retry_after,
            } => ProviderError::RateLimited {
                message: scrub(message),
                retry_after,
            },
            ProviderError::Failed(m) => ProviderError::Failed(scrub(m)),
        }
    }
}

pub use crate::secret::redact;

/// One messaging platform: what a connect of a Channel makes there ([`Provider::effects`]),
/// how the Channel's credentials are shown to work ([`Provider::prove`], read-only), how one
/// effect is made ([`Provider::make`]) and undone ([`Provider::undo`], from what the record holds,
/// never from the Channel's spec).
pub trait Provider: Send + Sync {
    /// Whether [`Provider::prove`] calls the provider: a Channel of such a source takes the claim
    /// of its channel id only once its credentials worked. The others (chat plugin, Google,
    /// Twilio without an account) have nothing to prove.
    fn proves(&self) -> bool {
        false
    }

    /// Shows that the Channel's credentials (`credentialsSecretRef`'s value) work, with read-only
    /// calls. Changes nothing at the provider.
    fn prove<'a>(
        &'a self,
        _channel: &'a Channel,
        _credentials: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<Proof, ProviderError>> {
        Box::pin(async { Ok(Proof::default()) })
    }

    /// The effects a connect of `channel` makes with this provider's account (none where the
    /// source changes nothing at the provider, or the account is not configured).
    fn effects(&self, _channel: &Channel) -> Vec<EffectKey> {
        Vec::new()
    }

    /// Makes `effect` (one of [`Provider::effects`]) with what `proof` obtained; `Found` when it
    /// was there already.
    fn make<'a>(
        &'a self,
        _channel: &'a Channel,
        effect: &'a EffectKey,
        _proof: &'a Proof,
    ) -> BoxFuture<'a, Result<Origin, ProviderError>> {
        Box::pin(async move {
            Err(ProviderError::Failed(format!(
                "this provider makes no {}",
                effect.kind.as_str()
            )))
        })
    }

    /// Undoes one recorded effect with the account it records and `credential` (the record's
    /// copy, or the configuration's current one: [`Provider::current_credential`]).
    fn undo<'a>(
        &'a self,
        _effect: &'a EffectKey,
        _credential: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async { Ok(()) })
    }

    /// The credential of this provider's account that undoes `effect` when the account is the
    /// one the effect records (a Twilio account's auth token, which may have been rotated since
    /// the record's copy was taken); `None`: the record's copy is used.
    fn current_credential(&self, _effect: &EffectKey) -> Option<SecretString> {
        None
    }

    /// Re-checks a connected channel (periodic resync) without connecting it again. Returns fresh
    /// page details where the provider has them.
    fn recheck<'a>(
        &'a self,
        channel: &'a Channel,
        stored_token: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<ConnectOutcome, ProviderError>>;

    /// Whether connecting needs the Channel's `credentialsSecretRef`.
    fn needs_credentials(&self) -> bool {
        false
    }

    /// Whether this provider calls out at all: only such sources are limited to a share of the
    /// reconcile slots (`--provider-concurrency`) and keep a record.
    fn calls_out(&self) -> bool {
        true
    }
}

/// The provider of every source, built from the flags.
#[derive(Clone)]
pub struct Providers {
    facebook: Arc<facebook::Facebook>,
    instagram: Arc<instagram::Instagram>,
    whatsapp: Arc<whatsapp::Whatsapp>,
    viber: Arc<viber::Viber>,
    twilio: Arc<twilio::Twilio>,
    noop: Arc<noop::NoCall>,
}

impl Providers {
    /// Builds every provider with one shared HTTP client.
    pub fn new(args: &ProviderArgs) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(args.provider_timeout_seconds.max(1)))
            .connect_timeout(Duration::from_secs(args.provider_timeout_seconds.max(1)))
            .build()?;
        let facebook = Arc::new(facebook::Facebook::new(http.clone(), args));
        Ok(Providers {
            instagram: Arc::new(instagram::Instagram::new(facebook.clone())),
            whatsapp: Arc::new(whatsapp::Whatsapp::new(facebook.clone())),
            facebook,
            viber: Arc::new(viber::Viber::new(http.clone(), args)),
            twilio: Arc::new(twilio::Twilio::new(http, args)),
            noop: Arc::new(noop::NoCall),
        })
    }

    /// The providers with a configuration's Facebook app and Twilio account instead of the flags'
    /// (endpoint URLs, the Viber settings and the HTTP client stay shared). Cheap: no new client.
    pub fn with_accounts(
        &self,
        facebook_app: Option<(String, SecretString)>,
        twilio_account: Option<(String, SecretString, String)>,
    ) -> Self {
        let facebook = Arc::new(self.facebook.with_app(facebook_app));
        Providers {
            instagram: Arc::new(instagram::Instagram::new(facebook.clone())),
            whatsapp: Arc::new(whatsapp::Whatsapp::new(facebook.clone())),
            facebook,
            viber: self.viber.clone(),
            twilio: Arc::new(self.twilio.with_account(twilio_account)),
            noop: self.noop.clone(),
        }
    }

    /// The Facebook provider (also used by the API's explore endpoint).
    pub fn facebook(&self) -> Arc<facebook::Facebook> {
        self.facebook.clone()
    }

    /// The Twilio provider (a configuration's account status is checked with it).
    pub fn twilio(&self) -> Arc<twilio::Twilio> {
        self.twilio.clone()
    }

    /// The Viber provider (the API reads the account of its auth token at connect).
    pub fn viber(&self) -> Arc<viber::Viber> {
        self.viber.clone()
    }

    /// The provider that undoes an effect of `kind`.
    pub fn for_effect(&self, kind: EffectKind) -> &dyn Provider {
        match kind {
            EffectKind::PageSubscription => self.facebook.as_ref(),
            EffectKind::BusinessAccountSubscription => self.whatsapp.as_ref(),
            EffectKind::NumberWebhook => self.twilio.as_ref(),
            EffectKind::BotWebhook => self.viber.as_ref(),
        }
    }

    /// The provider of a source.
    pub fn for_source(&self, source: Source) -> &dyn Provider {
        match source {
            Source::Facebook => self.facebook.as_ref(),
            Source::Instagram => self.instagram.as_ref(),
            Source::Whatsapp => self.whatsapp.as_ref(),
            Source::Viber => self.viber.as_ref(),
            Source::TwilioSms | Source::TwilioWhatsapp => self.twilio.as_ref(),
            Source::Google | Source::ChatPlugin => self.noop.as_ref(),
        }
    }
}

/// A provider's answer with a non-success status, for the provider to classify.
pub(crate) struct ErrorAnswer {
    /// `"<provider>: <what was being done>: HTTP <status>"`, the start of every message.
    pub context: String,
    /// The HTTP status.
    pub status: reqwest::StatusCode,
    /// The answer's headers (e.g. `Retry-After`).
    pub headers: reqwest::header::HeaderMap,
    /// The answer's body.
    pub body: bytes::Bytes,
}

impl ErrorAnswer {
    /// The error by HTTP status alone: 429 rate limited (with its `Retry-After`), 401/403
    /// invalid credentials, anything else failed; `provider_message` as in [`Self::message`].
    pub fn by_status(&self, provider_message: Option<String>) -> ProviderError {
        let message = self.message(provider_message);
        match self.status.as_u16() {
            429 => ProviderError::RateLimited {
                message,
                retry_after: retry_after(&self.headers),
            },
            401 | 403 => ProviderError::InvalidCredentials(message),
            _ => ProviderError::Failed(message),
        }
    }

    /// `context: message`, with the status's reason phrase when the provider gave no message.
    pub fn message(&self, provider_message: Option<String>) -> String {
        let text = provider_message.unwrap_or_else(|| {
            self.status
                .canonical_reason()
                .unwrap_or("unknown error")
                .to_owned()
        });
        format!("{}: {text}", self.context)
    }
}

/// Sends a provider request and decodes its JSON answer. Transport failures are described
/// without the URL; a non-success answer is turned into an error by `classify`.
pub(crate) async fn send_json<T: serde::de::DeserializeOwned>(
    provider: &str,
    what: &str,
    request: reqwest::RequestBuilder,
    classify: impl FnOnce(ErrorAnswer) -> ProviderError,
) -> Result<T, ProviderError> {
    let doing = format!("{provider}: {what}");
    let response = request
        .send()
        .await
        .map_err(|e| describe_transport_error(&doing, e))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .bytes()
        .await
        .map_err(|e| describe_transport_error(&doing, e))?;
    let context = format!("{doing}: HTTP {}", status.as_u16());
    if status.is_success() {
        return serde_json::from_slice(&body).map_err(|e| {
            ProviderError::Failed(format!("{context}: unexpected response body: {e}"))
        });
    }
    Err(classify(ErrorAnswer {
        context,
        status,
        headers,
        body,
    }))
}

/// Describes a transport error without its URL (Facebook puts tokens in query strings).
fn describe_transport_error(what: &str, e: reqwest::Error) -> ProviderError {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_decode() {
        "returned an unreadable body"
    } else {
        "failed"
    };
    let e = e.without_url();
    ProviderError::Failed(format!("{what} {kind}: {e}"))
}

/// `base` followed by `segments`, each percent-encoded as one path segment (a `/`, `?`, `#` or
/// `..` in a name stays inside its segment and cannot reach another path or the query).
pub(crate) fn url_with_segments(
    base: &str,
    segments: &[&str],
) -> Result<reqwest::Url, ProviderError> {
    if let Some(bad) = segments.iter().find(|s| matches!(**s, "" | "." | "..")) {
        return Err(ProviderError::Failed(format!(
            "{bad:?} is not a valid path segment for a provider request"
        )));
    }
    let mut url = reqwest::Url::parse(base)
        .map_err(|e| ProviderError::Failed(format!("the provider base URL is invalid: {e}")))?;
    url.path_segments_mut()
        .map_err(|()| ProviderError::Failed("the provider base URL cannot have a path".into()))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// Parses a `Retry-After` header given in seconds.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_replaces_secrets() {
        let s = SecretString::new("EAAB-secret");
        assert_eq!(
            redact("bad token EAAB-secret given".into(), &[&s]),
            "bad token <redacted> given"
        );
        let e = ProviderError::Failed("x EAAB-secret".into()).redacted(&[&s]);
        assert_eq!(e.to_string(), "x <redacted>");
    }

    #[test]
    fn url_segments_stay_segments() {
        let u = url_with_segments("http://g.test/v24.0/", &["../../x?y=1#", "subscribed_apps"])
            .unwrap();
        assert_eq!(
            u.as_str(),
            "http://g.test/v24.0/..%2F..%2Fx%3Fy=1%23/subscribed_apps"
        );
        assert_eq!(u.query(), None);
        assert!(url_with_segments("http://g.test/v24.0", &[".."]).is_err());
    }

    #[test]
    fn reasons() {
        assert_eq!(
            ProviderError::CredentialsMissing(String::new()).reason(),
            Reason::CredentialsMissing
        );
        assert_eq!(
            ProviderError::InvalidCredentials(String::new()).reason(),
            Reason::InvalidCredentials
        );
        assert_eq!(
            ProviderError::RateLimited {
                message: String::new(),
                retry_after: None
            }
            .reason(),
            Reason::ProviderError
        );
    }
}
