//! Twilio SMS and WhatsApp numbers (docs/providers.md).
//!
//! Without an account SID, auth token and webhook URL configured, no call is made: the user points
//! the number's webhook at the platform. With them, the proof looks the number up in the account,
//! and the effect points its messaging webhook (`SmsUrl`) at the configured URL — shared by the
//! SMS and WhatsApp Channels of the number in that account; the undo clears it in the account
//! the record names, with the configuration's current auth token or the record's copy.

use futures::future::BoxFuture;
use serde::Deserialize;

use super::{
    send_json, url_with_segments, ConnectOutcome, Proof, Provider, ProviderArgs, ProviderError,
};
use crate::crd::Channel;
use crate::effects::{EffectKey, EffectKind, Origin};
use crate::secret::SecretString;

/// The Twilio provider.
pub struct Twilio {
    http: reqwest::Client,
    api_url: String,
    account: Option<(String, SecretString, String)>,
}

#[derive(Deserialize)]
struct NumberList {
    #[serde(default)]
    incoming_phone_numbers: Vec<IncomingNumber>,
}

#[derive(Deserialize)]
struct IncomingNumber {
    sid: String,
}

#[derive(Deserialize)]
struct AccountAnswer {
    status: Option<String>,
}

#[derive(Deserialize)]
struct TwilioErrorBody {
    message: Option<String>,
}

/// The E.164 number of a Twilio source channel id (`whatsapp:` prefix removed).
pub fn phone_number(source_channel_id: &str) -> &str {
    source_channel_id
        .strip_prefix("whatsapp:")
        .unwrap_or(source_channel_id)
}

impl Twilio {
    /// Builds the provider from the flags.
    pub fn new(http: reqwest::Client, args: &ProviderArgs) -> Self {
        let account = match (
            args.twilio_account_sid.clone().filter(|s| !s.is_empty()),
            args.twilio_auth_token.clone().filter(|s| !s.is_empty()),
            args.twilio_webhook_url.clone().filter(|s| !s.is_empty()),
        ) {
            (Some(sid), Some(token), Some(webhook)) => Some((sid, token, webhook)),
            _ => None,
        };
        Twilio {
            http,
            api_url: args.twilio_api_url.trim_end_matches('/').to_owned(),
            account,
        }
    }

    /// The same provider (API URL, HTTP client) with another account (SID, auth token, webhook
    /// URL): a provider configuration's. Without one, numbers connect without a call.
    pub fn with_account(&self, account: Option<(String, SecretString, String)>) -> Self {
        Twilio {
            http: self.http.clone(),
            api_url: self.api_url.clone(),
            account: account.filter(|(sid, token, webhook)| {
                !sid.is_empty() && !token.is_empty() && !webhook.is_empty()
            }),
        }
    }

    /// Whether Twilio calls are configured.
    pub fn is_configured(&self) -> bool {
        self.account.is_some()
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ProviderError> {
        send_json("twilio", what, req, |answer| {
            let twilio_message = serde_json::from_slice::<TwilioErrorBody>(&answer.body)
                .ok()
                .and_then(|b| b.message);
            answer.by_status(twilio_message)
        })
        .await
    }

    /// The account's status as Twilio reports it (`active`, `suspended` or `closed`):
    /// `GET /2010-04-01/Accounts/{sid}.json`, changing nothing. `None` without an account.
    pub async fn account_status(&self) -> Option<Result<String, ProviderError>> {
        let (sid, token, _) = self.account.as_ref()?;
        let result = async {
            let url = url_with_segments(
                &self.api_url,
                &["2010-04-01", "Accounts", &format!("{sid}.json")],
            )?;
            let answer: AccountAnswer = self
                .call(
                    "reading the account",
                    self.http.get(url).basic_auth(sid, Some(token.expose())),
                )
                .await?;
            answer.status.ok_or_else(|| {
                ProviderError::Failed(
                    "twilio: reading the account: the answer has no status".into(),
                )
            })
        }
        .await;
        Some(result.map_err(|e| self.scrub(e)))
    }

    /// The account SID, when an account is configured.
    pub fn account_sid(&self) -> Option<&str> {
        self.account.as_ref().map(|(sid, _, _)| sid.as_str())
    }

    /// Looks the number up in the account; returns its `PN…` sid.
    async fn lookup(&self, number: &str) -> Result<String, ProviderError> {
        let (sid, token, _) = self.account.as_ref().expect("configured");
        self.lookup_in(sid, token, number).await
    }

    /// Looks the number up in the account `sid`; returns its `PN…` sid.
    async fn lookup_in(
        &self,
        sid: &str,
        token: &SecretString,
        number: &str,
    ) -> Result<String, ProviderError> {
        let url = url_with_segments(
            &self.api_url,
            &["2010-04-01", "Accounts", sid, "IncomingPhoneNumbers.json"],
        )?;
        let list: NumberList = self
            .call(
                "looking the number up",
                self.http
                    .get(url)
                    .basic_auth(sid, Some(token.expose()))
                    .query(&[("PhoneNumber", number)]),
            )
            .await?;
        list.incoming_phone_numbers
            .into_iter()
            .next()
            .map(|n| n.sid)
            .ok_or_else(|| {
                ProviderError::Failed(format!(
                    "twilio: the number {number} is not an incoming phone number of the account"
                ))
            })
    }

    async fn set_webhook(
        &self,
        (sid, token): (&str, &SecretString),
        number_sid: &str,
        sms_url: &str,
    ) -> Result<(), ProviderError> {
        let url = url_with_segments(
            &self.api_url,
            &[
                "2010-04-01",
                "Accounts",
                sid,
                "IncomingPhoneNumbers",
                &format!("{number_sid}.json"),
            ],
        )?;
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("SmsUrl", sms_url)
            .finish();
        let _: serde_json::Value = self
            .call(
                "setting the number's messaging webhook",
                self.http
                    .post(url)
                    .basic_auth(sid, Some(token.expose()))
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(body),
            )
            .await?;
        Ok(())
    }

    fn scrub(&self, e: ProviderError) -> ProviderError {
        match &self.account {
            Some((_, token, _)) => e.redacted(&[token]),
            None => e,
        }
    }
}

impl Provider for Twilio {
    fn proves(&self) -> bool {
        self.account.is_some()
    }

    fn prove<'a>(
        &'a self,
        channel: &'a Channel,
        _credentials: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<Proof, ProviderError>> {
        Box::pin(async move {
            let Some((_, token, _)) = &self.account else {
                return Ok(Proof::default());
            };
            let number = phone_number(&channel.spec.source_channel_id);
            let pn = self.lookup(number).await.map_err(|e| self.scrub(e))?;
            Ok(Proof {
                undo: Some(token.clone()),
                handle: Some(pn),
                secrets: vec![token.clone()],
                ..Default::default()
            })
        })
    }

    fn effects(&self, channel: &Channel) -> Vec<EffectKey> {
        self.account
            .iter()
            .map(|(sid, _, _)| {
                let number = phone_number(&channel.spec.source_channel_id);
                EffectKey::new(EffectKind::NumberWebhook, number, sid.as_str())
            })
            .collect()
    }

    fn make<'a>(
        &'a self,
        channel: &'a Channel,
        _effect: &'a EffectKey,
        proof: &'a Proof,
    ) -> BoxFuture<'a, Result<Origin, ProviderError>> {
        Box::pin(async move {
            let Some((sid, token, webhook)) = &self.account else {
                return Err(ProviderError::CredentialsMissing(
                    "twilio: no account is configured".into(),
                ));
            };
            let result = async {
                let pn = match &proof.handle {
                    Some(pn) => pn.clone(),
                    None => {
                        self.lookup(phone_number(&channel.spec.source_channel_id))
                            .await?
                    }
                };
                self.set_webhook((sid, token), &pn, webhook).await
            }
            .await;
            result.map(|()| Origin::Made).map_err(|e| self.scrub(e))
        })
    }

    fn undo<'a>(
        &'a self,
        effect: &'a EffectKey,
        credential: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            let token = credential.filter(|t| !t.is_empty()).ok_or_else(|| {
                ProviderError::CredentialsMissing(format!(
                    "twilio: the auth token of the account {} is missing, so the number's webhook cannot be cleared (set deletionPolicy: Orphan to skip)",
                    effect.account
                ))
            })?;
            let sid = effect.account.as_str();
            let result = async {
                let pn = self.lookup_in(sid, token, &effect.resource).await?;
                self.set_webhook((sid, token), &pn, "").await
            }
            .await;
            result.map_err(|e| e.redacted(&[token]))
        })
    }

    fn current_credential(&self, effect: &EffectKey) -> Option<SecretString> {
        match &self.account {
            Some((sid, token, _)) if *sid == effect.account => Some(token.clone()),
            _ => None,
        }
    }

    fn recheck<'a>(
        &'a self,
        channel: &'a Channel,
        _stored_token: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<ConnectOutcome, ProviderError>> {
        Box::pin(async move {
            if self.account.is_none() {
                return Ok(ConnectOutcome::default());
            }
            let number = phone_number(&channel.spec.source_channel_id);
            self.lookup(number)
                .await
                .map(|_| ConnectOutcome::default())
                .map_err(|e| self.scrub(e))
        })
    }
}
