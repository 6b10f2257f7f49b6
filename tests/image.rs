//! The published Dockerfile's runtime stage agrees with the crate, the binary and the chart: its
//! labels carry the crate's version and license, it runs as the chart's uid, and it exposes the
//! ports the binary listens on by default. scripts/check-image builds this same stage with buildah
//! (scripts/build-image derives its Containerfile from it) and checks the built image.

use clap::Parser as _;

/// The instructions of the Dockerfile's last stage, continuation lines joined, comments dropped.
fn runtime_stage() -> Vec<String> {
    let dockerfile =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    let joined = dockerfile.replace("\\\n", " ");
    let lines: Vec<&str> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let from = lines
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .expect("a FROM");
    lines[from..].iter().map(|l| l.to_string()).collect()
}

/// The arguments of every `name` instruction of the runtime stage.
fn instructions(name: &str) -> Vec<String> {
    runtime_stage()
        .iter()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' ').map(str::to_owned))
        .collect()
}

#[test]
fn labels_name_the_crate_version_and_license() {
    assert_eq!(
        instructions("ARG")
            .iter()
            .find_map(|a| a.strip_prefix("VERSION=")),
        Some(env!("CARGO_PKG_VERSION")),
        "the runtime stage's ARG VERSION default is Cargo.toml's version"
    );
    let labels = instructions("LABEL").join(" ");
    for label in [
        "org.opencontainers.image.version=\"${VERSION}\"".to_owned(),
        format!(
            "org.opencontainers.image.licenses=\"{}\"",
            env!("CARGO_PKG_LICENSE")
        ),
        "org.opencontainers.image.source=\"${SOURCE}\"".to_owned(),
    ] {
        assert!(labels.contains(&label), "{label} missing in LABEL {labels}");
    }
}

#[test]
fn runs_as_the_charts_user_through_the_binarys_path() {
    assert_eq!(instructions("USER"), ["65532:65532"]);
    let pod = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/charts/channel-operator/templates/_pod.tpl"
    ))
    .unwrap();
    assert!(
        pod.contains("runAsUser: 65532") && pod.contains("runAsGroup: 65532"),
        "the chart's pods run as the image's USER"
    );
    let copy = instructions("COPY");
    assert!(
        copy.len() == 1 && copy[0].ends_with(" /usr/local/bin/channel-operator"),
        "{copy:?}"
    );
    assert_eq!(
        instructions("ENTRYPOINT"),
        [r#"["/usr/local/bin/channel-operator"]"#]
    );
}

#[test]
fn exposes_the_ports_the_binary_listens_on_by_default() {
    let api = channel_operator::api::Args::parse_from(["api"]).addr.port();
    let metrics = channel_operator::controller::Args::parse_from(["controller"])
        .metrics_addr
        .port();
    let exposed: Vec<u16> = instructions("EXPOSE")
        .iter()
        .flat_map(|e| e.split_whitespace().map(|p| p.parse().unwrap()))
        .collect();
    assert_eq!(exposed, [api, metrics]);
}
