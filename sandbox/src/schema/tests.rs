use super::*;
use kube::CustomResourceExt;
use serde_json::json;

fn channel_schema() -> Value {
    let crd = serde_json::to_value(channel_operator::crd::Channel::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn channel(spec: Value) -> Value {
    json!({"apiVersion": "airy.co/v1alpha1", "kind": "Channel",
           "metadata": {"name": "c", "namespace": "default", "unknownMeta": 1}, "spec": spec})
}

fn messages(o: &SchemaOutcome) -> Vec<String> {
    o.errors.iter().map(|e| e.message.clone()).collect()
}

#[test]
fn defaults_and_pruning() {
    let s = channel_schema();
    let mut obj = channel(json!({"source": "google", "sourceChannelId": "agent", "foo": 1}));
    obj["bogus"] = json!(true);
    obj["status"] = json!({"id": null, "extra": {"x": 1}});
    let out = prune_default_validate(&s, &mut obj, None);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let mut pruned = out.pruned.clone();
    pruned.sort();
    assert_eq!(pruned, vec![".bogus", ".spec.foo", ".status.extra"]);
    assert_eq!(obj["spec"]["connected"], json!(true));
    assert_eq!(obj["spec"]["deletionPolicy"], json!("Disconnect"));
    // metadata is the server's business.
    assert_eq!(obj["metadata"]["unknownMeta"], json!(1));
    // status.id is nullable: an explicit null stays; status.connected gets its default.
    assert_eq!(obj["status"]["id"], Value::Null);
    assert_eq!(obj["status"]["connected"], json!(false));
}

#[test]
fn explicit_values_win_over_defaults_and_non_nullable_nulls_are_defaulted() {
    let s = channel_schema();
    let mut obj = channel(json!({"source": "google", "sourceChannelId": "a",
        "connected": null, "deletionPolicy": "Orphan"}));
    let out = prune_default_validate(&s, &mut obj, None);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(obj["spec"]["connected"], json!(true));
    assert_eq!(obj["spec"]["deletionPolicy"], json!("Orphan"));
}

#[test]
fn schema_errors_use_apiserver_wording() {
    let s = channel_schema();
    let mut obj = channel(
        json!({"source": "google", "sourceChannelId": "a", "name": "",
        "imageUrl": "ftp://x"}),
    );
    let out = prune_default_validate(&s, &mut obj, None);
    // The apiserver quotes the schema's own pattern, whatever it is.
    let pattern = s["properties"]["spec"]["properties"]["imageUrl"]["pattern"]
        .as_str()
        .expect("imageUrl has a pattern");
    assert!(pattern.starts_with("^https?://"), "{pattern}");
    assert_eq!(
        messages(&out),
        vec![
            format!("spec.imageUrl: Invalid value: \"ftp://x\": spec.imageUrl in body should match '{pattern}'"),
            "spec.name: Invalid value: \"\": spec.name in body should be at least 1 chars long".to_owned(),
        ]
    );
    assert!(out.errors.iter().all(|e| e.reason == "FieldValueInvalid"));
    assert_eq!(
        out.errors[1].body(),
        "Invalid value: \"\": spec.name in body should be at least 1 chars long"
    );
    assert_eq!(out.errors[1].field, "spec.name");

    let mut obj = channel(json!({"source": "sms", "sourceChannelId": "a"}));
    let out = prune_default_validate(&s, &mut obj, None);
    assert_eq!(out.errors[0].reason, "FieldValueNotSupported");
    assert_eq!(
        out.errors[0].message,
        "spec.source: Unsupported value: \"sms\": supported values: \"chat_plugin\", \"facebook\", \"google\", \"twilio.sms\", \"twilio.whatsapp\", \"instagram\", \"whatsapp\", \"viber\""
    );

    let mut obj = channel(json!({"source": "google"}));
    let out = prune_default_validate(&s, &mut obj, None);
    assert_eq!(messages(&out), vec!["spec.sourceChannelId: Required value"]);
    assert_eq!(out.errors[0].reason, "FieldValueRequired");

    let mut obj =
        channel(json!({"source": "google", "sourceChannelId": 5, "name": "x".repeat(1025)}));
    let out = prune_default_validate(&s, &mut obj, None);
    let m = messages(&out);
    assert!(
        m.contains(&"spec.name: Too long: may not be more than 1024 bytes".to_string()),
        "{m:?}"
    );
    assert!(m.contains(&"spec.sourceChannelId: Invalid value: \"integer\": spec.sourceChannelId in body must be of type string: \"integer\"".to_string()), "{m:?}");
    // A type error blocks CEL, as in kube-apiserver.
    assert!(m
        .last()
        .unwrap()
        .contains("some validation rules were not checked"));
}

#[test]
fn cel_rules_of_the_channel_crd() {
    let s = channel_schema();
    let mut fb = channel(json!({"source": "facebook", "sourceChannelId": "123"}));
    let out = prune_default_validate(&s, &mut fb, None);
    assert_eq!(
        messages(&out),
        vec!["spec.credentialsSecretRef: Invalid value: \"object\": credentialsSecretRef is required for facebook, instagram, whatsapp and viber channels (the Secret holding the page, user or bot token)"]
    );
    assert_eq!(out.errors[0].field, "spec.credentialsSecretRef");

    let mut sms = channel(json!({"source": "twilio.sms", "sourceChannelId": "+49 123"}));
    let out = prune_default_validate(&s, &mut sms, None);
    assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
    assert_eq!(out.errors[0].field, "spec.sourceChannelId");
    assert!(out.errors[0]
        .message
        .contains("a twilio.sms sourceChannelId must be an E.164 number"));

    let mut ok = channel(json!({"source": "twilio.sms", "sourceChannelId": "+49123"}));
    assert!(prune_default_validate(&s, &mut ok, None).errors.is_empty());
}

#[test]
fn transition_rules_run_only_on_updates() {
    let s = channel_schema();
    let old = channel(
        json!({"source": "google", "sourceChannelId": "a", "connected": true,
        "deletionPolicy": "Disconnect"}),
    );
    let mut changed = channel(json!({"source": "chat_plugin", "sourceChannelId": "a"}));
    let out = prune_default_validate(&s, &mut changed, Some(&old));
    assert_eq!(
        messages(&out),
        vec!["spec.source: Invalid value: \"string\": source is immutable"]
    );
    let mut same = channel(json!({"source": "google", "sourceChannelId": "a", "name": "n"}));
    assert!(prune_default_validate(&s, &mut same, Some(&old))
        .errors
        .is_empty());
    let mut created = channel(json!({"source": "chat_plugin", "sourceChannelId": "b"}));
    assert!(prune_default_validate(&s, &mut created, None)
        .errors
        .is_empty());
}

#[test]
fn generic_keywords() {
    let s = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "n": {"type": "integer", "minimum": 1, "maximum": 5, "exclusiveMaximum": true},
        "t": {"type": "string", "format": "date-time"},
        "u": {"type": "string", "format": "uuid"},
        "set": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}, "maxItems": 3},
        "conds": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
                  "items": {"type": "object", "properties": {"type": {"type": "string"}, "x": {"type": "integer", "default": 7}}}},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": 2},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        "obj": {"type": "object", "default": {}, "properties": {"d": {"type": "string", "default": "dd"}}}
    }}}});
    let mut obj = json!({"spec": {"n": 5, "t": "yesterday", "u": "not-a-uuid",
        "set": ["a", "b", "a", "c"],
        "conds": [{"type": "A"}, {"type": "A", "x": 1}],
        "labels": {"a": "1", "b": 2},
        "free": {"anything": {"goes": true}}}});
    let out = prune_default_validate(&s, &mut obj, None);
    assert!(out.pruned.is_empty());
    assert_eq!(obj["spec"]["obj"], json!({"d": "dd"}));
    assert_eq!(obj["spec"]["conds"][0]["x"], json!(7));
    assert_eq!(obj["spec"]["free"]["anything"]["goes"], json!(true));
    let m = messages(&out);
    for want in [
        "spec.n: Invalid value: 5: spec.n in body should be less than 5",
        "spec.t: Invalid value: \"yesterday\": spec.t in body must be of type date-time: \"yesterday\"",
        "spec.u: Invalid value: \"not-a-uuid\": spec.u in body must be of type uuid: \"not-a-uuid\"",
        "spec.set[2]: Duplicate value: \"a\"",
        "spec.set: Too many: 4: must have at most 3 items",
        "spec.conds[1]: Duplicate value: {\"type\":\"A\"}",
        "spec.labels.b: Invalid value: \"integer\": spec.labels.b in body must be of type string: \"integer\"",
    ] {
        assert!(m.contains(&want.to_string()), "missing {want:?} in {m:#?}");
    }
}

#[test]
fn cel_message_expression_and_reason() {
    let s = json!({"type": "object", "properties": {"spec": {"type": "object",
        "x-kubernetes-validations": [{"rule": "self.a < 3", "messageExpression": "'a is ' + string(self.a)",
                                      "reason": "FieldValueForbidden"}],
        "properties": {"a": {"type": "integer"}}}}});
    let mut obj = json!({"spec": {"a": 4}});
    let out = prune_default_validate(&s, &mut obj, None);
    assert_eq!(messages(&out), vec!["spec: Forbidden: a is 4"]);
    assert_eq!(out.errors[0].reason, "FieldValueForbidden");
}

#[test]
fn combinators() {
    let s = json!({"type": "object", "properties": {"spec": {"type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
        "anyOf": [{"required": ["a"]}, {"required": ["b"]}],
        "not": {"required": ["a", "b"]}}}});
    let mut none = json!({"spec": {}});
    assert_eq!(
        messages(&prune_default_validate(&s, &mut none, None)),
        vec!["spec: Invalid value: {}: spec in body must validate at least one schema (anyOf)"]
    );
    let mut both = json!({"spec": {"a": "x", "b": "y"}});
    assert_eq!(
        messages(&prune_default_validate(&s, &mut both, None)),
        vec!["spec: Invalid value: {\"a\":\"x\",\"b\":\"y\"}: spec in body must not validate the schema (not)"]
    );
    let mut one = json!({"spec": {"b": "y"}});
    assert!(prune_default_validate(&s, &mut one, None).errors.is_empty());
}
