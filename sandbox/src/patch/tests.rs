//! Unit tests of the patch types and of field ownership.

use super::apply::*;
use super::fields::*;
use super::strategic::*;
use super::*;
use serde_json::json;

/// Server-side apply to the main resource.
fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    schema: Option<&Value>,
    manager: &str,
    force: bool,
    owners: &mut ManagedFields,
) -> Result<Value, ApplyError> {
    server_side_apply_to(live, applied, schema, manager, "", force, owners)
}

/// A non-apply write to the main resource of a built-in kind.
fn record_update(old: Option<&Value>, new: &Value, manager: &str, owners: &mut ManagedFields) {
    record_update_to(old, new, None, manager, "", owners);
}

impl ManagedFields {
    /// The fields `manager` owns through `operation`, formatted like `.spec.name`.
    fn fields_of(&self, manager: &str, operation: Operation) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| e.manager == manager && e.operation == operation)
            .flat_map(|e| e.fields.iter().map(|p| format_path(p)))
            .collect()
    }

    /// The managers owning `field` (formatted like `.spec.name`).
    fn owners_of(&self, field: &str) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| e.fields.iter().any(|p| format_path(p) == field))
            .map(|e| e.manager.clone())
            .collect()
    }
}

#[test]
fn merge_patch_sets_and_deletes() {
    let t = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"list": [1, 2]}});
    let p = json!({"metadata": {"labels": {"a": null, "c": "3"}}, "spec": {"list": [3]}});
    assert_eq!(
        merge_patch(&t, &p).unwrap(),
        json!({"metadata": {"labels": {"b": "2", "c": "3"}}, "spec": {"list": [3]}})
    );
    assert!(matches!(
        merge_patch(&t, &json!([1])),
        Err(PatchError::BadRequest(_))
    ));
}

#[test]
fn json_patch_ops_and_errors() {
    let t = json!({"spec": {"name": "a", "items": [1, 2]}});
    let p = json!([
        {"op": "test", "path": "/spec/name", "value": "a"},
        {"op": "replace", "path": "/spec/name", "value": "b"},
        {"op": "add", "path": "/spec/items/-", "value": 3},
        {"op": "remove", "path": "/spec/items/0"}
    ]);
    assert_eq!(
        json_patch(&t, &p).unwrap(),
        json!({"spec": {"name": "b", "items": [2, 3]}})
    );
    let failed = json_patch(
        &t,
        &json!([{"op": "test", "path": "/spec/name", "value": "z"}]),
    );
    assert!(matches!(failed, Err(PatchError::Unprocessable(ref m)) if m.contains("test failed")));
    let missing = json_patch(&t, &json!([{"op": "remove", "path": "/spec/nope"}]));
    assert!(
        matches!(missing, Err(PatchError::Unprocessable(_))),
        "{missing:?}"
    );
    for bad in [
        json!({"op": "add"}),
        json!([{"op": "frobnicate", "path": "/a"}]),
        json!([{"op": "add", "value": 1}]),
    ] {
        assert!(
            matches!(json_patch(&t, &bad), Err(PatchError::BadRequest(_))),
            "{bad}"
        );
    }
}

#[test]
fn json_patch_test_for_null_passes_on_an_absent_key_like_kube_apiserver() {
    let t = json!({"metadata": {"name": "c"}});
    let p = json!([
        {"op": "test", "path": "/metadata/finalizers", "value": null},
        {"op": "add", "path": "/metadata/finalizers", "value": ["f"]}
    ]);
    assert_eq!(
        json_patch(&t, &p).unwrap(),
        json!({"metadata": {"name": "c", "finalizers": ["f"]}})
    );
    // A present value is still compared, and an absent parent is still an error.
    let present = json!({"metadata": {"finalizers": ["f"]}});
    let null_test = json!([{"op": "test", "path": "/metadata/finalizers", "value": null}]);
    assert!(matches!(
        json_patch(&present, &null_test),
        Err(PatchError::Unprocessable(_))
    ));
    let no_parent = json!([{"op": "test", "path": "/spec/x", "value": null}]);
    assert!(matches!(
        json_patch(&t, &no_parent),
        Err(PatchError::Unprocessable(_))
    ));
    // Nothing of a failing patch is applied.
    let half = json!([
        {"op": "add", "path": "/metadata/labels", "value": {"a": "b"}},
        {"op": "test", "path": "/metadata/name", "value": "other"}
    ]);
    assert!(json_patch(&t, &half).is_err());
}

#[test]
fn smp_maps_merge_and_lists_replace_by_default() {
    let t = json!({"metadata": {"name": "s", "labels": {"a": "1", "b": "2"}},
        "type": "Opaque", "data": {"x": "eA=="}});
    let p = json!({"metadata": {"labels": {"a": null, "c": "3"}}, "data": {"y": "eQ=="}});
    assert_eq!(
        strategic_merge_patch(&t, &p, "Secret").unwrap(),
        json!({"metadata": {"name": "s", "labels": {"b": "2", "c": "3"}},
            "type": "Opaque", "data": {"x": "eA==", "y": "eQ=="}})
    );
    let crd = json!({"spec": {"names": {"shortNames": ["a", "b"]}}});
    let p = json!({"spec": {"names": {"shortNames": ["c"]}}});
    assert_eq!(
        strategic_merge_patch(&crd, &p, "CustomResourceDefinition").unwrap(),
        json!({"spec": {"names": {"shortNames": ["c"]}}})
    );
    assert!(matches!(
        strategic_merge_patch(&t, &json!([1]), "Secret"),
        Err(PatchError::BadRequest(_))
    ));
}

#[test]
fn smp_merge_lists_and_directives() {
    let t = json!({"metadata": {"name": "s",
        "finalizers": ["a", "b"],
        "ownerReferences": [{"uid": "1", "name": "one", "kind": "Channel"},
                            {"uid": "2", "name": "two", "kind": "Channel"}]}});
    let p = json!({"metadata": {
        "finalizers": ["c", "a"],
        "$deleteFromPrimitiveList/finalizers": ["b"],
        "$setElementOrder/finalizers": ["c", "a"],
        "ownerReferences": [{"uid": "1", "name": "uno"}, {"uid": "2", "$patch": "delete"},
                            {"uid": "3", "name": "three", "kind": "Channel"}]}});
    let out = strategic_merge_patch(&t, &p, "Secret").unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!(["c", "a"]));
    assert_eq!(
        out["metadata"]["ownerReferences"],
        json!([{"uid": "1", "name": "uno", "kind": "Channel"},
               {"uid": "3", "name": "three", "kind": "Channel"}])
    );
    assert!(!out.to_string().contains('$'), "{out}");

    let replaced = strategic_merge_patch(
        &t,
        &json!({"metadata": {"ownerReferences": [{"$patch": "replace"}, {"uid": "9", "name": "n"}]}}),
        "Secret",
    )
    .unwrap();
    assert_eq!(
        replaced["metadata"]["ownerReferences"],
        json!([{"uid": "9", "name": "n"}])
    );

    let labels = json!({"metadata": {"labels": {"a": "1"}, "annotations": {"x": "1", "y": "2"}}});
    let out = strategic_merge_patch(
        &labels,
        &json!({"metadata": {"labels": {"$patch": "replace", "b": "2"},
                              "annotations": {"$retainKeys": ["y"], "y": "3"}}}),
        "ConfigMap",
    )
    .unwrap();
    assert_eq!(
        out,
        json!({"metadata": {"labels": {"b": "2"}, "annotations": {"y": "3"}}})
    );
    let out = strategic_merge_patch(
        &labels,
        &json!({"metadata": {"labels": {"$patch": "delete"}}}),
        "ConfigMap",
    )
    .unwrap();
    // Like Go, `$patch: delete` inside a map field leaves an empty map.
    assert_eq!(out["metadata"]["labels"], json!({}));
}

#[test]
fn smp_crd_versions_merge_by_name() {
    let crd = json!({"spec": {"versions": [
        {"name": "v1alpha1", "served": true, "storage": true},
        {"name": "v1", "served": true, "storage": false}]}});
    let p = json!({"spec": {"versions": [{"name": "v1alpha1", "served": false}]}});
    let out = strategic_merge_patch(&crd, &p, "CustomResourceDefinition").unwrap();
    assert_eq!(
        out["spec"]["versions"],
        json!([{"name": "v1alpha1", "served": false, "storage": true},
               {"name": "v1", "served": true, "storage": false}])
    );
    // Not a merge list for other kinds.
    let out = strategic_merge_patch(&crd, &p, "ConfigMap").unwrap();
    assert_eq!(
        out["spec"]["versions"],
        json!([{"name": "v1alpha1", "served": false}])
    );
}

fn channel_schema() -> Value {
    use kube::CustomResourceExt;
    let crd = serde_json::to_value(channel_operator::crd::Channel::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn ch(body: Value) -> Value {
    let mut v = json!({"apiVersion": "airy.co/v1alpha1", "kind": "Channel",
        "metadata": {"name": "c", "namespace": "default"}});
    for (k, x) in body.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

#[test]
fn apply_creates_and_owns_exactly_the_applied_fields() {
    let s = channel_schema();
    let mut owners = ManagedFields::default();
    let applied = ch(
        json!({"metadata": {"name": "c", "namespace": "default", "uid": "ignored",
        "labels": {"app": "x"}}, "spec": {"source": "google", "sourceChannelId": "a"}}),
    );
    let out = server_side_apply(None, &applied, Some(&s), "kubectl", false, &mut owners).unwrap();
    assert_eq!(
        out["metadata"],
        json!({"name": "c", "namespace": "default", "labels": {"app": "x"}})
    );
    assert_eq!(
        out["spec"],
        json!({"source": "google", "sourceChannelId": "a"})
    );
    let mut fields = owners.fields_of("kubectl", Operation::Apply);
    fields.sort();
    assert_eq!(
        fields,
        [
            ".metadata.labels.app",
            ".spec.source",
            ".spec.sourceChannelId"
        ]
    );
}

#[test]
fn apply_conflicts_force_and_shared_fields() {
    let s = channel_schema();
    let mut owners = ManagedFields::default();
    let a = ch(json!({"spec": {"source": "google", "sourceChannelId": "a", "name": "one"}}));
    let live = server_side_apply(None, &a, Some(&s), "alice", false, &mut owners).unwrap();

    let b = ch(json!({"spec": {"name": "two"}}));
    let err = server_side_apply(Some(&live), &b, Some(&s), "bob", false, &mut owners).unwrap_err();
    assert_eq!(
        err,
        ApplyError::Conflicts(vec![Conflict {
            manager: "alice".into(),
            field: ".spec.name".into()
        }])
    );
    // Same value: shared, no conflict.
    let same = ch(json!({"spec": {"name": "one"}}));
    let live2 = server_side_apply(Some(&live), &same, Some(&s), "bob", false, &mut owners).unwrap();
    assert_eq!(live2, live);
    let mut o = owners.owners_of(".spec.name");
    o.sort();
    assert_eq!(o, ["alice", "bob"]);
    // Alice stops applying the name: bob still owns it, so it stays.
    let a2 = ch(json!({"spec": {"source": "google", "sourceChannelId": "a"}}));
    let live3 =
        server_side_apply(Some(&live2), &a2, Some(&s), "alice", false, &mut owners).unwrap();
    assert_eq!(live3["spec"]["name"], "one");
    assert_eq!(owners.owners_of(".spec.name"), ["bob"]);
    // Force takes ownership.
    let live4 = server_side_apply(
        Some(&live3),
        &ch(json!({"spec": {"sourceChannelId": "b"}})),
        Some(&s),
        "bob",
        true,
        &mut owners,
    )
    .unwrap();
    assert_eq!(live4["spec"]["sourceChannelId"], "b");
    assert_eq!(owners.owners_of(".spec.sourceChannelId"), ["bob"]);
    // Bob no longer applies the name and owns it alone: it is removed.
    assert!(live4["spec"].get("name").is_none(), "{live4}");
    assert_eq!(live4["spec"]["source"], "google");
}

#[test]
fn apply_merges_map_lists_and_keeps_other_fields() {
    let s = channel_schema();
    let mut owners = ManagedFields::default();
    let spec = ch(json!({"spec": {"source": "google", "sourceChannelId": "a"}}));
    let live = server_side_apply(None, &spec, Some(&s), "kubectl", false, &mut owners).unwrap();
    let status = |ty: &str, st: &str| {
        ch(json!({"status": {"conditions": [
        {"type": ty, "status": st, "reason": "R", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}))
    };
    let live = server_side_apply(
        Some(&live),
        &status("Ready", "True"),
        Some(&s),
        "channel-operator",
        false,
        &mut owners,
    )
    .unwrap();
    let live = server_side_apply(
        Some(&live),
        &status("Synced", "True"),
        Some(&s),
        "other",
        false,
        &mut owners,
    )
    .unwrap();
    let types: Vec<&str> = live["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["Ready", "Synced"]);
    assert_eq!(
        live["spec"],
        json!({"source": "google", "sourceChannelId": "a"})
    );
    let err = server_side_apply(
        Some(&live),
        &status("Ready", "False"),
        Some(&s),
        "other",
        false,
        &mut owners,
    )
    .unwrap_err();
    assert_eq!(
        err,
        ApplyError::Conflicts(vec![Conflict {
            manager: "channel-operator".into(),
            field: ".status.conditions[type=\"Ready\"].status".into()
        }])
    );
    // the operator owns the condition item itself, not only its fields
    assert!(owners
        .fields_of("channel-operator", Operation::Apply)
        .contains(&".status.conditions[type=\"Ready\"]".to_string()));
    // The operator re-applies the same condition with a new status: no conflict with itself.
    let live = server_side_apply(
        Some(&live),
        &status("Ready", "False"),
        Some(&s),
        "channel-operator",
        false,
        &mut owners,
    )
    .unwrap();
    assert_eq!(live["status"]["conditions"][0]["status"], "False");
    // Dropping its condition removes it; the other manager's stays.
    let live = server_side_apply(
        Some(&live),
        &ch(json!({"status": {"connected": true}})),
        Some(&s),
        "channel-operator",
        false,
        &mut owners,
    )
    .unwrap();
    let types: Vec<&str> = live["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["Synced"]);
    assert_eq!(live["status"]["connected"], true);
    let bad = ch(json!({"status": {"conditions": [{"status": "True"}]}}));
    assert!(matches!(
        server_side_apply(Some(&live), &bad, Some(&s), "x", false, &mut owners),
        Err(ApplyError::Invalid(_))
    ));
    assert!(matches!(
        server_side_apply(None, &json!("x"), None, "x", false, &mut owners),
        Err(ApplyError::Invalid(_))
    ));
}

#[test]
fn apply_builtin_metadata_granularity() {
    let mut owners = ManagedFields::default();
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "d",
        "labels": {"a": "1"}, "finalizers": ["f1"], "ownerReferences": [{"uid": "u1", "name": "c"}]},
        "data": {"k": "dg=="}});
    let live = server_side_apply(None, &secret, None, "op", false, &mut owners).unwrap();
    let other = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "d",
        "labels": {"b": "2"}, "finalizers": ["f2"], "ownerReferences": [{"uid": "u2", "name": "d"}]}});
    let live = server_side_apply(Some(&live), &other, None, "me", false, &mut owners).unwrap();
    assert_eq!(live["metadata"]["labels"], json!({"a": "1", "b": "2"}));
    assert_eq!(live["metadata"]["finalizers"], json!(["f1", "f2"]));
    assert_eq!(
        live["metadata"]["ownerReferences"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(live["data"], json!({"k": "dg=="}));
    // "op" drops its finalizer; "me" still applies its own.
    let mut less = secret.clone();
    less["metadata"]["finalizers"] = json!([]);
    let live = server_side_apply(Some(&live), &less, None, "op", false, &mut owners).unwrap();
    assert_eq!(live["metadata"]["finalizers"], json!(["f2"]));
}

#[test]
fn updates_take_ownership_of_changed_fields() {
    let s = channel_schema();
    let mut owners = ManagedFields::default();
    let created = ch(json!({"spec": {"source": "google", "sourceChannelId": "a", "name": "n"}}));
    record_update(None, &created, "api", &mut owners);
    assert_eq!(owners.fields_of("api", Operation::Update).len(), 3);
    // An apply with a different name conflicts with the updater.
    let err = server_side_apply(
        Some(&created),
        &ch(json!({"spec": {"name": "m"}})),
        Some(&s),
        "kubectl",
        false,
        &mut owners,
    )
    .unwrap_err();
    assert!(matches!(err, ApplyError::Conflicts(ref c) if c[0].manager == "api"));
    let applied = server_side_apply(
        Some(&created),
        &ch(json!({"spec": {"name": "n"}})),
        Some(&s),
        "kubectl",
        false,
        &mut owners,
    )
    .unwrap();
    // A later update of the name by "editor" takes it from both.
    let mut edited = applied.clone();
    edited["spec"]["name"] = json!("e");
    record_update(Some(&applied), &edited, "editor", &mut owners);
    assert_eq!(owners.owners_of(".spec.name"), ["editor"]);
    assert_eq!(owners.owners_of(".spec.source"), ["api"]);
    // Removed fields are owned by nobody.
    let mut removed = edited.clone();
    removed["spec"].as_object_mut().unwrap().remove("name");
    record_update(Some(&edited), &removed, "editor", &mut owners);
    assert!(owners.owners_of(".spec.name").is_empty());
    assert!(owners.entries.iter().all(|e| e.manager != "editor"));
}

/// Expected results observed with `kubectl patch --local --type strategic -o json` (v1.32)
/// on the same Secret.
#[test]
fn smp_list_order_matches_kubectl() {
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "data": {"x": "eA=="},
        "metadata": {"name": "s", "finalizers": ["a", "b"], "labels": {"a": "1"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Channel", "name": "one", "uid": "1"},
                                {"apiVersion": "v1", "kind": "Channel", "name": "two", "uid": "2"}]}});
    let run = |p: Value| strategic_merge_patch(&secret, &p, "Secret").unwrap();
    let uids = |v: &Value| -> Vec<String> {
        v["metadata"]["ownerReferences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["uid"].as_str().unwrap().to_string())
            .collect()
    };
    let out = run(json!({"metadata": {"finalizers": ["c"]}}));
    assert_eq!(out["metadata"]["finalizers"], json!(["c", "a", "b"]));
    let out = run(json!({"metadata": {"finalizers": ["b"]}}));
    assert_eq!(out["metadata"]["finalizers"], json!(["a", "b"]));
    let out = run(json!({"metadata": {"ownerReferences": [{"uid": "3", "name": "n3"}]}}));
    assert_eq!(uids(&out), ["3", "1", "2"]);
    let out = run(json!({"metadata": {"ownerReferences": [{"uid": "2", "name": "x"}]}}));
    assert_eq!(uids(&out), ["1", "2"]);
    assert_eq!(out["metadata"]["ownerReferences"][1]["kind"], "Channel");
    let out = run(
        json!({"metadata": {"$setElementOrder/ownerReferences": [{"uid": "2"}, {"uid": "1"}]}}),
    );
    assert_eq!(uids(&out), ["2", "1"]);
    let out = run(
        json!({"metadata": {"ownerReferences": [{"uid": "5", "name": "x"}],
        "$setElementOrder/ownerReferences": [{"uid": "2"}, {"uid": "5"}]}}),
    );
    assert_eq!(uids(&out), ["1", "2", "5"]);
    let out = run(
        json!({"metadata": {"$setElementOrder/finalizers": ["b", "z", "a"], "finalizers": ["z"]}}),
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["b", "z", "a"]));
    let out = run(json!({"data": {"$patch": "delete"}}));
    assert_eq!(out["data"], json!({}));
    let out = run(
        json!({"metadata": {"ownerReferences": [{"uid": "1", "$patch": "replace", "name": "r"}]}}),
    );
    assert_eq!(out["metadata"]["ownerReferences"], json!([]));
}

#[test]
fn status_applies_are_tracked_apart_from_main_resource_applies() {
    let s = channel_schema();
    let mut owners = ManagedFields::default();
    let main = ch(json!({"metadata": {"name": "c", "namespace": "default",
        "finalizers": ["channels.airy.co/disconnect"]}}));
    let live = ch(json!({"spec": {"source": "google", "sourceChannelId": "a"}}));
    record_update(None, &live, "api", &mut owners);
    let live = server_side_apply(
        Some(&live),
        &main,
        Some(&s),
        "channel-operator",
        false,
        &mut owners,
    )
    .unwrap();
    let status = ch(json!({"status": {"connected": true, "observedGeneration": 1}}));
    let live = server_side_apply_to(
        Some(&live),
        &status,
        Some(&s),
        "channel-operator",
        "status",
        false,
        &mut owners,
    )
    .unwrap();
    assert_eq!(
        live["metadata"]["finalizers"],
        json!(["channels.airy.co/disconnect"])
    );
    assert_eq!(live["status"]["connected"], true);
    assert_eq!(live["spec"]["source"], "google");
    let entries = &owners.entries;
    assert_eq!(entries.len(), 3);
    let formatted =
        |e: &ManagerEntry| -> Vec<String> { e.fields.iter().map(|p| format_path(p)).collect() };
    assert_eq!(entries[1].operation, Operation::Apply);
    assert_eq!(entries[1].subresource, "");
    assert_eq!(
        formatted(&entries[1]),
        [".metadata.finalizers[=\"channels.airy.co/disconnect\"]"]
    );
    assert_eq!(entries[2].subresource, "status");
    assert_eq!(
        formatted(&entries[2]),
        [".status.connected", ".status.observedGeneration"]
    );
    // Re-applying status without observedGeneration removes only that field.
    let status2 = ch(json!({"status": {"connected": false}}));
    let live = server_side_apply_to(
        Some(&live),
        &status2,
        Some(&s),
        "channel-operator",
        "status",
        false,
        &mut owners,
    )
    .unwrap();
    assert_eq!(live["status"], json!({"connected": false}));
    assert_eq!(
        live["metadata"]["finalizers"],
        json!(["channels.airy.co/disconnect"])
    );
}
