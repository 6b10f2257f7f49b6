use super::jsonpath::*;
use super::*;
use kube::CustomResourceExt;

fn conds() -> Value {
    json!({"metadata": {"name": "x"}, "status": {"conditions": [
        {"type": "Synced", "status": "False"},
        {"type": "Ready", "status": "True", "n": 2}
    ]}})
}

#[test]
fn jsonpath_subset() {
    let o = conds();
    assert_eq!(jsonpath(&o, ".metadata.name").unwrap(), vec![json!("x")]);
    assert_eq!(jsonpath(&o, "{.metadata.name}").unwrap(), vec![json!("x")]);
    assert_eq!(jsonpath(&o, "metadata.name").unwrap(), vec![json!("x")]);
    assert_eq!(
        jsonpath(&o, ".status.conditions[?(@.type==\"Ready\")].status").unwrap(),
        vec![json!("True")]
    );
    assert_eq!(
        jsonpath(&o, ".status.conditions[?(@.type!='Ready')].type").unwrap(),
        vec![json!("Synced")]
    );
    assert_eq!(
        jsonpath(&o, ".status.conditions[*].type").unwrap(),
        vec![json!("Synced"), json!("Ready")]
    );
    assert_eq!(
        jsonpath(&o, ".status.conditions[1].n").unwrap(),
        vec![json!(2)]
    );
    assert_eq!(
        jsonpath(&o, ".status.conditions[-1].type").unwrap(),
        vec![json!("Ready")]
    );
    assert_eq!(
        jsonpath(&o, "..type").unwrap(),
        vec![json!("Synced"), json!("Ready")]
    );
    assert_eq!(
        jsonpath(&o, ".status.conditions[?(@.n>1)].type").unwrap(),
        vec![json!("Ready")]
    );
    assert_eq!(
        jsonpath(&o, "['metadata']['name']").unwrap(),
        vec![json!("x")]
    );
    assert!(jsonpath(&o, ".spec.missing").unwrap().is_empty());
    assert!(jsonpath(&o, ".a[?(@.b==1").is_err());
    assert!(jsonpath(&o, ".a[x]").is_err());
}

#[test]
fn human_durations_like_kubectl() {
    let d = chrono::Duration::seconds;
    assert_eq!(human_duration(d(5)), "5s");
    assert_eq!(human_duration(d(119)), "119s");
    assert_eq!(human_duration(d(5 * 60 + 3)), "5m3s");
    assert_eq!(human_duration(d(5 * 60)), "5m");
    assert_eq!(human_duration(d(90 * 60)), "90m");
    assert_eq!(human_duration(d(4 * 3600 + 120)), "4h2m");
    assert_eq!(human_duration(d(20 * 3600)), "20h");
    assert_eq!(human_duration(d(51 * 3600)), "2d3h");
    assert_eq!(human_duration(d(30 * 86400)), "30d");
    assert_eq!(human_duration(d(3 * 365 * 86400 + 86400)), "3y1d");
    assert_eq!(human_duration(d(-5)), "<invalid>");
}

#[test]
fn channel_table_like_kubectl_get() {
    let crd = serde_json::to_value(channel_operator::crd::Channel::crd()).unwrap();
    let cols = custom_columns(Some(
        &crd["spec"]["versions"][0]["additionalPrinterColumns"],
    ));
    let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Name",
            "Source",
            "Source ID",
            "Name",
            "Connected",
            "Ready",
            "Reason",
            "Stalled",
            "Credentials",
            "Channel ID",
            "Age",
            "Provider Name",
            "Number"
        ]
    );
    let created = (chrono::Utc::now() - chrono::Duration::minutes(5)).to_rfc3339();
    let ch = json!({"apiVersion": "airy.co/v1alpha1", "kind": "Channel",
        "metadata": {"name": "c1", "namespace": "default", "creationTimestamp": created},
        "spec": {"source": "google", "sourceChannelId": "agent"},
        "status": {"connected": true, "conditions": [{"type": "Ready", "status": "True"}]}});
    let t = table(
        &cols,
        std::slice::from_ref(&ch),
        "Metadata",
        json!({"resourceVersion": "7"}),
    );
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(t["metadata"]["resourceVersion"], "7");
    assert_eq!(t["columnDefinitions"][0]["format"], "name");
    assert_eq!(t["columnDefinitions"][4]["type"], "boolean");
    let cells = &t["rows"][0]["cells"];
    assert_eq!(
        cells,
        &json!([
            "c1", "google", "agent", null, true, "True", null, null, null, null, "5m", null, null
        ])
    );
    assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(t["rows"][0]["object"]["metadata"]["name"], "c1");
    let full = table(&cols, std::slice::from_ref(&ch), "Object", json!({}));
    assert_eq!(full["rows"][0]["object"], ch);
    let none = table(&cols, &[ch], "None", json!({}));
    assert!(none["rows"][0].get("object").is_none());
}

#[test]
fn default_and_builtin_columns() {
    let cols = custom_columns(None);
    assert_eq!(cols.len(), 2);
    assert_eq!(cols[1].name, "Age");
    assert_eq!(cols[1].type_, "date");

    let secret =
        json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "eA==", "b": "eQ=="}});
    let t = table(&builtin_columns("secrets"), &[secret], "None", json!({}));
    assert_eq!(
        t["rows"][0]["cells"],
        json!(["s", "Opaque", 2, "<unknown>"])
    );

    let ev = json!({"metadata": {"name": "e"}, "type": "Warning", "reason": "Failed",
        "message": "boom", "involvedObject": {"kind": "Channel", "name": "c1"},
        "lastTimestamp": (chrono::Utc::now() - chrono::Duration::hours(3)).to_rfc3339()});
    let t = table(&builtin_columns("events"), &[ev], "None", json!({}));
    assert_eq!(
        t["rows"][0]["cells"],
        json!(["3h", "Warning", "Failed", "channel/c1", "boom"])
    );

    let lease = json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "pod-1"}});
    let t = table(&builtin_columns("leases"), &[lease], "None", json!({}));
    assert_eq!(t["rows"][0]["cells"][1], "pod-1");

    let ns = json!({"metadata": {"name": "default"}, "status": {"phase": "Active"}});
    let t = table(&builtin_columns("namespaces"), &[ns], "None", json!({}));
    assert_eq!(t["rows"][0]["cells"][0], "default");
    assert_eq!(t["rows"][0]["cells"][1], "Active");
    assert!(t["rows"][0]["cells"][2].as_str().unwrap().ends_with('>'));

    let crd = json!({"metadata": {"name": "channels.airy.co", "creationTimestamp": "2026-01-01T00:00:00Z"}});
    let t = table(
        &builtin_columns("customresourcedefinitions"),
        &[crd],
        "None",
        json!({}),
    );
    assert_eq!(
        t["rows"][0]["cells"],
        json!(["channels.airy.co", "2026-01-01T00:00:00Z"])
    );
}
