//! The API's calls of the Kubernetes API: retried within a budget, written under the API's field
//! manager, and their errors mapped to the API's answers.

use std::time::Duration;

use kube::api::PatchParams;

use super::error::ApiError;

/// Field manager of the API's writes.
pub const FIELD_MANAGER: &str = "channel-operator-api";

/// Maps a Kubernetes API error to the API's answer.
pub fn kube_error(e: kube::Error) -> ApiError {
    match e {
        kube::Error::Api(s) => match s.code {
            400 | 422 => ApiError::bad_request(format!("the channel was rejected: {}", s.message)),
            404 => ApiError::not_found("channel not found"),
            409 => ApiError::new(
                axum::http::StatusCode::CONFLICT,
                format!("the channel changed concurrently: {}", s.message),
            ),
            401 | 403 => ApiError::unavailable(
                "the Kubernetes API refused the request; check the service account's permissions",
            ),
            code => ApiError::unavailable(format!(
                "the Kubernetes API answered {code}; try again later"
            )),
        },
        other => {
            tracing::warn!(error = %other, "Kubernetes API request failed");
            ApiError::unavailable("the Kubernetes API is unreachable; try again later")
        }
    }
}

fn retryable(e: &kube::Error, conflicts: bool) -> bool {
    match e {
        kube::Error::Api(s) => s.code >= 500 || s.code == 429 || (conflicts && s.is_conflict()),
        kube::Error::Auth(_) | kube::Error::BuildRequest(_) | kube::Error::SerdeError(_) => false,
        _ => true,
    }
}

/// The longest one Kubernetes write may take, retries included (kube's client itself also
/// retries 429/503 answers with a backoff).
const CALL_BUDGET: Duration = Duration::from_secs(8);

/// Runs a Kubernetes call, retrying server-side failures (and, for patches, conflicts), within
/// [`CALL_BUDGET`].
pub(super) async fn retry<T, F, Fut>(conflicts: bool, mut f: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let deadline = tokio::time::Instant::now() + CALL_BUDGET;
    let mut delay = Duration::from_millis(100);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = match tokio::time::timeout_at(deadline, f()).await {
            Ok(r) => r,
            Err(_) => {
                return Err(kube::Error::Api(
                    kube::core::Status::failure(
                        "the Kubernetes API did not answer in time",
                        "Timeout",
                    )
                    .with_code(504)
                    .boxed(),
                ))
            }
        };
        match result {
            Err(e) if attempt < 4 && retryable(&e, conflicts) => {
                tracing::debug!(error = %e, attempt, "retrying a Kubernetes API request");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            other => return other,
        }
    }
}

pub(super) fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..Default::default()
    }
}

/// Maps a Kubernetes API error of a Secret request to the API's answer: like [`kube_error`],
/// without the cluster's message, which names the Secret (and so a digest of the token).
pub(super) fn secret_error(e: kube::Error) -> ApiError {
    let mut err = kube_error(e);
    if matches!(err.status.as_u16(), 400 | 404 | 409) {
        err.message = "the channel's page token could not be stored; try again".to_owned();
    }
    err
}
