//! Providers: the messaging platforms a channel is connected with (spec section 4).

use crate::secret::Secret;

/// Provider settings shared by the controller and the API (explore calls the Graph API directly).
#[derive(clap::Args, Clone, Debug)]
pub struct ProviderArgs {
    /// Facebook app id, used to exchange page tokens for long-lived ones.
    #[arg(long, env = "FACEBOOK_APP_ID")]
    pub facebook_app_id: Option<String>,
    /// Facebook app secret.
    #[arg(long, env = "FACEBOOK_APP_SECRET", hide_env_values = true)]
    pub facebook_app_secret: Option<Secret>,
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
    pub twilio_auth_token: Option<Secret>,
    /// Base URL of the Twilio REST API.
    #[arg(long, env = "TWILIO_API_URL", default_value = "https://api.twilio.com")]
    pub twilio_api_url: String,
    /// Public URL Twilio numbers' messaging webhooks are pointed at.
    #[arg(long, env = "TWILIO_WEBHOOK_URL")]
    pub twilio_webhook_url: Option<String>,
    /// Timeout of one provider HTTP request, in seconds.
    #[arg(long, env = "PROVIDER_TIMEOUT_SECONDS", default_value_t = 10)]
    pub provider_timeout_seconds: u64,
}
