//! Every manifest in examples/ is one a user can apply: it parses into the operator's own types,
//! covers every source, and the Facebook Channel points at the example Secret.

use channel_operator::crd::{Channel, Source, E164_PATTERN, WHATSAPP_PATTERN};
use k8s_openapi::api::core::v1::Secret;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn example_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/ exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

struct Examples {
    channels: Vec<(PathBuf, Channel)>,
    secrets: Vec<(PathBuf, Secret)>,
}

fn load() -> Examples {
    let mut ex = Examples {
        channels: vec![],
        secrets: vec![],
    };
    for path in example_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        let value: serde_yaml::Value = serde_yaml::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()));
        match (value["apiVersion"].as_str(), value["kind"].as_str()) {
            (Some("airy.co/v1alpha1"), Some("Channel")) => {
                let ch: Channel = serde_yaml::from_value(value)
                    .unwrap_or_else(|e| panic!("{}: not a Channel: {e}", path.display()));
                ex.channels.push((path, ch));
            }
            (Some("v1"), Some("Secret")) => {
                let s: Secret = serde_yaml::from_value(value)
                    .unwrap_or_else(|e| panic!("{}: not a Secret: {e}", path.display()));
                ex.secrets.push((path, s));
            }
            other => panic!("{}: unexpected apiVersion/kind {other:?}", path.display()),
        }
    }
    ex
}

#[test]
fn there_is_one_channel_example_per_source() {
    let ex = load();
    let mut by_source: BTreeMap<Source, Vec<&Path>> = BTreeMap::new();
    for (path, ch) in &ex.channels {
        by_source.entry(ch.spec.source).or_default().push(path);
    }
    for source in Source::ALL {
        let files = by_source.get(&source).map(Vec::len).unwrap_or(0);
        assert_eq!(files, 1, "expected one example for {source}, found {files}");
    }
}

#[test]
fn channel_examples_are_valid_channels() {
    let e164 = regex::Regex::new(E164_PATTERN).unwrap();
    let whatsapp = regex::Regex::new(WHATSAPP_PATTERN).unwrap();
    for (path, ch) in load().channels {
        let p = path.display();
        let name = ch.metadata.name.as_deref().unwrap_or_default();
        assert!(!name.is_empty(), "{p}: metadata.name missing");
        assert!(
            ch.metadata.namespace.is_none(),
            "{p}: leave the namespace to `kubectl apply -n`"
        );
        assert!(ch.status.is_none(), "{p}: examples must not carry a status");
        assert!(
            !ch.spec.source_channel_id.is_empty(),
            "{p}: sourceChannelId empty"
        );
        assert!(
            ch.spec.connected,
            "{p}: an example should connect its channel"
        );
        // Every rule the CRD declares (the one rule set).
        channel_operator::rules::validate_spec(&ch.spec).unwrap_or_else(|e| panic!("{p}: {e}"));
        match ch.spec.source {
            Source::TwilioSms => assert!(e164.is_match(&ch.spec.source_channel_id), "{p}"),
            Source::TwilioWhatsapp => assert!(whatsapp.is_match(&ch.spec.source_channel_id), "{p}"),
            _ => {}
        }
        // The id the Channel will get is the spec's deterministic one.
        assert_eq!(ch.channel_id(Default::default()).len(), 36, "{p}");
    }
}

#[test]
fn examples_with_credentials_reference_an_example_secret_which_holds_a_fake_token() {
    let ex = load();
    for source in channel_operator::rules::SOURCES_WITH_CREDENTIALS {
        let (_, ch) = ex
            .channels
            .iter()
            .find(|(_, c)| c.spec.source == source)
            .unwrap_or_else(|| panic!("a {source} example"));
        let r = ch.spec.credentials_secret_ref.as_ref().unwrap();
        let (path, secret) = ex
            .secrets
            .iter()
            .find(|(_, s)| s.metadata.name.as_deref() == Some(r.name.as_str()))
            .unwrap_or_else(|| panic!("no example Secret named {}", r.name));
        let token = secret
            .string_data
            .as_ref()
            .and_then(|d| d.get(&r.key))
            .unwrap_or_else(|| panic!("{}: no stringData key {}", path.display(), r.key));
        assert!(
            token.contains("FAKE"),
            "{}: the example token must be obviously fake",
            path.display()
        );
        assert_eq!(secret.type_.as_deref(), Some("Opaque"));
        // Without its consent the operator would not use it: the example would stay Stalled.
        assert!(
            channel_operator::ownership::usable_as_credentials(&secret.metadata, ch),
            "{}: the Secret must carry the label {}: \"{}\"",
            path.display(),
            channel_operator::ownership::CREDENTIALS_LABEL,
            channel_operator::ownership::CREDENTIALS_CONSENT
        );
    }
}
