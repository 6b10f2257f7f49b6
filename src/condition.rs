//! Kubernetes conditions, as the API conventions define them: a condition's
//! `lastTransitionTime` is the last time its status changed, not the last time it was written.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The `lastTransitionTime` of a condition `type_` now reporting `status`: the one of `previous`
/// (the conditions last written) while its status is unchanged, else `now`.
pub fn transition_time(previous: &[Condition], type_: &str, status: &str, now: &Time) -> Time {
    previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone())
}
