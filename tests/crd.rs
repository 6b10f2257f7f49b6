//! The checked-in CRD must be exactly what the code generates.

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
            "Channel ID",
            "Age"
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
            "twilio.whatsapp"
        ])
    );
}
