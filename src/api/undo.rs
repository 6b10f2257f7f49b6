//! Undoing a connect's patch: a connect whose channel id turns out to be held by a Channel of
//! another namespace leaves the Channel it patched as it was.
//!
//! The undo is one JSON patch that first tests every field still holds what the connect wrote,
//! then puts back what was there before. The apiserver applies it atomically, so a change
//! someone made in between is never overwritten: the undo is then refused, and their change
//! stays.

use kube::api::Patch;
use kube::Api;
use serde_json::{json, Map, Value};

use super::kube_calls::{patch_params, retry};
use crate::crd::{Channel, ChannelSpec};

/// The JSON patch that turns the spec fields `written` back into their values in `before`
/// (removing the ones `before` did not have), if each still holds what was written.
pub(super) fn undo_patch(written: &Map<String, Value>, before: &ChannelSpec) -> Patch<Value> {
    let before = serde_json::to_value(before).expect("a spec serializes");
    let mut ops = Vec::new();
    for (field, value) in written {
        let path = format!("/spec/{field}");
        ops.push(json!({"op": "test", "path": path, "value": value}));
        ops.push(match before.get(field) {
            Some(old) => json!({"op": "replace", "path": path, "value": old}),
            None => json!({"op": "remove", "path": path}),
        });
    }
    Patch::Json(serde_json::from_value(Value::Array(ops)).expect("a JSON patch"))
}

/// Puts the spec fields a connect `written` into the Channel `name` of `api` (namespace `ns`)
/// back as they were in `before`, unless someone changed one of them since. Whether it was put
/// back.
pub(super) async fn undo_connect(
    api: &Api<Channel>,
    ns: &str,
    name: &str,
    written: &Map<String, Value>,
    before: &ChannelSpec,
) -> bool {
    let patch = undo_patch(written, before);
    let pparams = patch_params();
    match retry(false, || api.patch(name, &pparams, &patch)).await {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(error = %e, channel = %name, namespace = %ns, "undoing a refused connect's change failed; the Channel keeps it");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::Source;

    #[test]
    fn the_undo_tests_what_was_written_and_restores_or_removes() {
        let mut before = ChannelSpec::new(Source::ChatPlugin, "site");
        before.connected = false;
        before.name = Some("Old".into());
        let written = json!({"connected": true, "name": "New", "imageUrl": "https://x.org/a.png"});
        let Patch::Json(patch) = undo_patch(written.as_object().unwrap(), &before) else {
            panic!("a JSON patch");
        };
        assert_eq!(
            serde_json::to_value(patch).unwrap(),
            json!([
                {"op": "test", "path": "/spec/connected", "value": true},
                {"op": "replace", "path": "/spec/connected", "value": false},
                {"op": "test", "path": "/spec/imageUrl", "value": "https://x.org/a.png"},
                {"op": "remove", "path": "/spec/imageUrl"},
                {"op": "test", "path": "/spec/name", "value": "New"},
                {"op": "replace", "path": "/spec/name", "value": "Old"},
            ])
        );
    }
}
