//! The checked-in CRD must be exactly what the code generates.

mod support;

use std::process::Command;

#[test]
fn checked_in_crd_matches_the_generated_one() {
    let generated = channel_operator::crd::crd_yaml();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/channel.yaml");
    let checked_in = std::fs::read_to_string(path).expect("crds/channel.yaml exists");
    assert!(
        generated == checked_in,
        "crds/channel.yaml is out of date: run `cargo run -- crd > crds/channel.yaml`"
    );
}

#[test]
fn checked_in_provider_config_crds_match_the_generated_ones() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/provider-config.yaml");
    let checked_in = std::fs::read_to_string(path).expect("crds/provider-config.yaml exists");
    assert!(
        channel_operator::provider_config::crds_yaml() == checked_in,
        "crds/provider-config.yaml is out of date: run \
         `cargo run -- crd --provider-configs > crds/provider-config.yaml`"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_channel-operator"))
        .args(["crd", "--provider-configs"])
        .output()
        .expect("binary runs");
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), checked_in);
}

#[test]
fn provider_config_crds_show_readiness_in_kubectl_get() {
    let yaml = channel_operator::provider_config::crds_yaml();
    let docs: Vec<serde_json::Value> = yaml
        .split("\n---\n")
        .map(|d| serde_yaml::from_str(d).unwrap())
        .collect();
    let scopes: Vec<(&str, &str)> = docs
        .iter()
        .map(|d| {
            (
                d["metadata"]["name"].as_str().unwrap(),
                d["spec"]["scope"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        scopes,
        [
            ("providerconfigs.airy.co", "Namespaced"),
            ("clusterproviderconfigs.airy.co", "Cluster")
        ]
    );
    for d in &docs {
        let version = &d["spec"]["versions"][0];
        assert!(version["subresources"]["status"].is_object());
        let ready = version["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "Ready")
            .expect("a Ready column");
        assert_eq!(
            ready["jsonPath"],
            ".status.conditions[?(@.type==\"Ready\")].status"
        );
    }
}

#[test]
fn crd_subcommand_prints_the_generated_crd() {
    let out = Command::new(env!("CARGO_BIN_EXE_channel-operator"))
        .arg("crd")
        .output()
        .expect("binary runs");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        channel_operator::crd::crd_yaml()
    );
}

#[test]
fn crd_has_the_documented_shape() {
    let crd: serde_json::Value = serde_yaml::from_str(&channel_operator::crd::crd_yaml()).unwrap();
    assert_eq!(crd["metadata"]["name"], "channels.airy.co");
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "ch");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert!(version["subresources"]["status"].is_object());
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        [
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
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(spec["properties"]["connected"]["default"], true);
    assert_eq!(
        spec["properties"]["deletionPolicy"]["default"],
        "Disconnect"
    );
    assert_eq!(
        spec["properties"]["source"]["enum"],
        serde_json::json!([
            "chat_plugin",
            "facebook",
            "google",
            "twilio.sms",
            "twilio.whatsapp",
            "instagram",
            "whatsapp",
            "viber"
        ])
    );
}

/// The cells of `kubectl get` table output under `column`, by row, found by the header's offsets.
fn column_cells(table: &str, column: &str) -> Vec<(String, String)> {
    let mut lines = table.lines();
    let header = lines.next().expect("a header line");
    let start = header
        .find(&format!("{column} "))
        .unwrap_or_else(|| panic!("no {column} column in {header:?}"));
    let end = header[start + column.len()..]
        .find(|c: char| c != ' ')
        .map_or(usize::MAX, |n| start + column.len() + n);
    lines
        .map(|l| {
            let name = l.split_whitespace().next().unwrap_or_default().to_owned();
            let cell = l.get(start..end.min(l.len())).unwrap_or_default().trim();
            (name, cell.to_owned())
        })
        .collect()
}

#[tokio::test]
async fn kubectl_get_shows_why_a_channel_is_not_ready_and_whether_it_is_stuck() {
    use channel_operator::crd::Channel;
    use kube::api::{Patch, PatchParams, PostParams};

    let support::Sandboxed {
        sb,
        dir,
        kubeconfig,
    } = support::sandbox().await;
    let channels: kube::Api<Channel> = kube::Api::namespaced(sb.client(), "default");
    let condition = |kind: &str, status: &str, reason: &str| {
        serde_json::json!({"type": kind, "status": status, "reason": reason, "message": reason,
            "observedGeneration": 1, "lastTransitionTime": "2026-11-29T09:00:00Z"})
    };
    for (name, conditions) in [
        ("good", vec![condition("Ready", "True", "Connected")]),
        (
            "stuck",
            vec![
                condition("Ready", "False", "InvalidCredentials"),
                condition("Reconciling", "False", "InvalidCredentials"),
                condition("Stalled", "True", "InvalidCredentials"),
            ],
        ),
    ] {
        let channel: Channel = serde_json::from_value(serde_json::json!({
            "apiVersion": "airy.co/v1alpha1", "kind": "Channel", "metadata": {"name": name},
            "spec": {"source": "google", "sourceChannelId": name, "name": name}
        }))
        .unwrap();
        channels
            .create(&PostParams::default(), &channel)
            .await
            .unwrap();
        channels
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"status": {"conditions": conditions}})),
            )
            .await
            .unwrap();
    }

    let table = support::kubectl::get_channels(&kubeconfig, &dir.path().join("cache")).await;
    let reasons = column_cells(&table, "REASON");
    let stalled = column_cells(&table, "STALLED");
    let cell = |cells: &[(String, String)], name: &str| {
        cells
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c.clone())
            .unwrap_or_else(|| panic!("no row {name} in\n{table}"))
    };
    assert_eq!(cell(&reasons, "good"), "Connected", "{table}");
    assert_eq!(cell(&reasons, "stuck"), "InvalidCredentials", "{table}");
    assert_eq!(cell(&stalled, "stuck"), "True", "{table}");
    assert_ne!(cell(&stalled, "good"), "True", "{table}");
    sb.shutdown().await;
}
