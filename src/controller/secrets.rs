//! The Secrets of a Channel's namespace: its credentials Secret (read only, and only when it
//! consents), and the token Secret an older version kept there (`<channel>-facebook-token`),
//! read for the undo of a connection that version made and deleted when it is ours. What this
//! version derives is kept in the Channel's record in the state namespace (`record`).
//!
//! Which Secrets are the Channel's and when they go is decided in [`crate::ownership`]; nothing
//! that is not the operator's is ever read as a token, modified or deleted.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, Preconditions};
use kube::{Api, ResourceExt};

use super::error::Error;
use crate::crd::Channel;
use crate::ownership::{self, is_ours, Moment, TOKEN_KEY};
use crate::providers::ProviderError;
use crate::secret::SecretString;

pub use crate::ownership::token_secret_name;

/// The value of `credentialsSecretRef` and the resourceVersion of its Secret.
#[derive(Debug)]
pub struct Credentials {
    /// The token.
    pub token: SecretString,
    /// The Secret's resourceVersion (a new one means the channel must be connected again).
    pub version: String,
}

/// The one message for credentials the controller may not use, whatever the cause: a Secret
/// that is absent, lacks the key, or does not consent ([`ownership::usable_as_credentials`])
/// reads the same, so a user who may not read Secrets learns nothing about them from a Channel.
pub fn unusable_message(ch: &Channel) -> String {
    let ns = ch.namespace().unwrap_or_default();
    let (name, key) = ch
        .spec
        .credentials_secret_ref
        .as_ref()
        .map(|r| (r.name.as_str(), r.key.as_str()))
        .unwrap_or_default();
    format!(
        "the Secret {ns}/{name} named by spec.credentialsSecretRef cannot be used: it must exist, \
         hold a non-empty key {key:?} and carry the label {}={:?} (set by someone who may write \
         Secrets in {ns})",
        ownership::CREDENTIALS_LABEL,
        ownership::CREDENTIALS_CONSENT
    )
}

/// Reads the Channel's credentials Secret. `Ok(None)` when the Channel names none. The Secret's
/// labels are checked before its data is touched: one that does not consent is never read. A
/// token that does not fit a name of the API's form ([`ownership::token_fits_name`]: a Secret
/// someone created under the name the API meant to write) is unusable like a missing one.
pub async fn credentials(api: &Api<Secret>, ch: &Channel) -> Result<Option<Credentials>, Error> {
    let Some(r) = &ch.spec.credentials_secret_ref else {
        return Ok(None);
    };
    let unusable = || ProviderError::CredentialsMissing(unusable_message(ch));
    let secret = api
        .get_opt(&r.name)
        .await?
        .filter(|s| ownership::usable_as_credentials(&s.metadata, ch))
        .ok_or_else(unusable)?;
    let token = secret_value(&secret, &r.key)
        .filter(|t| ownership::token_fits_name(&r.name, ch, t.expose()))
        .ok_or_else(unusable)?;
    Ok(Some(Credentials {
        token,
        version: secret.metadata.resource_version.unwrap_or_default(),
    }))
}

/// The token an older version kept for `ch` in the Secret `<channel>-facebook-token`, when
/// that Secret is the operator's for this Channel (anything else there is never read).
pub async fn legacy_token(api: &Api<Secret>, ch: &Channel) -> Result<Option<SecretString>, Error> {
    Ok(api
        .get_opt(&token_secret_name(&ch.name_any()))
        .await?
        .filter(|s| is_ours(&s.metadata, ch))
        .and_then(|s| secret_value(&s, TOKEN_KEY)))
}

/// Deletes the Secrets of this Channel that the ownership rules give the controller to delete
/// at `moment` (each guarded by its uid). Returns how many.
pub async fn delete_owned(api: &Api<Secret>, ch: &Channel, moment: Moment) -> Result<usize, Error> {
    let owned: Vec<(String, Option<String>)> = api
        .list_metadata(&ListParams::default().labels(&ownership::managed_selector()))
        .await?
        .items
        .into_iter()
        .filter(|s| ownership::controller_deletes(&s.metadata, ch, moment))
        .map(|s| (s.name_any(), s.metadata.uid))
        .collect();
    delete_guarded(api, &owned).await?;
    Ok(owned.len())
}

/// Deletes the credentials Secrets the API wrote for this Channel that its spec stopped naming
/// at an earlier generation ([`ownership::controller_deletes_unnamed`]), each guarded by its uid.
/// The API may create Secrets and nothing else: replacing a token, or failing a connect after
/// writing one, leaves the old one to the controller. Returns how many.
pub async fn delete_unnamed_credentials(api: &Api<Secret>, ch: &Channel) -> Result<usize, Error> {
    let unnamed: Vec<(String, Option<String>)> = api
        .list_metadata(&ListParams::default().labels(&ownership::credentials_selector(ch)))
        .await?
        .items
        .into_iter()
        .filter(|s| ownership::controller_deletes_unnamed(&s.metadata, ch))
        .map(|s| (s.name_any(), s.metadata.uid))
        .collect();
    delete_guarded(api, &unnamed).await?;
    Ok(unnamed.len())
}

/// Deletes each `(name, uid)`, guarded by the uid; one already gone or replaced is skipped.
async fn delete_guarded(
    api: &Api<Secret>,
    secrets: &[(String, Option<String>)],
) -> Result<(), Error> {
    for (name, uid) in secrets {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

pub(super) fn secret_value(secret: &Secret, key: &str) -> Option<SecretString> {
    let raw = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key).cloned())
        })?;
    let raw = raw.trim().to_owned();
    (!raw.is_empty()).then(|| SecretString::new(raw))
}
