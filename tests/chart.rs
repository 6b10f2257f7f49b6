//! The Helm chart agrees with the crate: the same CRD, the same version, the same defaults.
//! (Rendering and schema validation of the chart are in scripts/check-chart, run by .ci/run.)

use channel_operator::{providers::ProviderArgs, telemetry::LogArgs};
use clap::Parser;
use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(path: &str) -> String {
    let full = Path::new(ROOT).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {}: {e}", full.display()))
}

fn yaml(path: &str) -> serde_yaml::Value {
    serde_yaml::from_str(&read(path)).unwrap_or_else(|e| panic!("parsing {path}: {e}"))
}

#[test]
fn chart_crd_is_byte_identical_to_crds_channel_yaml() {
    let chart = read("charts/channel-operator/crds/channel.yaml");
    let crds = read("crds/channel.yaml");
    assert!(
        chart == crds,
        "charts/channel-operator/crds/channel.yaml differs from crds/channel.yaml: \
         run `cp crds/channel.yaml charts/channel-operator/crds/channel.yaml`"
    );
    // And so the chart installs exactly the CRD the binary generates.
    assert_eq!(chart, channel_operator::crd::crd_yaml());
}

#[test]
fn chart_provider_config_crds_are_byte_identical_to_crds_provider_config_yaml() {
    let chart = read("charts/channel-operator/crds/provider-config.yaml");
    assert!(
        chart == read("crds/provider-config.yaml"),
        "charts/channel-operator/crds/provider-config.yaml differs from crds/provider-config.yaml: \
         run `cp crds/provider-config.yaml charts/channel-operator/crds/`"
    );
    assert_eq!(chart, channel_operator::provider_config::crds_yaml());
}

#[test]
fn chart_app_version_is_the_crate_version() {
    // The default image tag is the appVersion: it must name the release the chart was cut with.
    let chart = yaml("charts/channel-operator/Chart.yaml");
    assert_eq!(
        chart["appVersion"].as_str(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(chart["apiVersion"].as_str(), Some("v2"));
}

#[derive(Parser)]
struct Defaults {
    #[command(flatten)]
    providers: ProviderArgs,
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    limits: channel_operator::api::limits::LimitArgs,
}

#[test]
fn chart_defaults_are_the_binary_defaults() {
    // The binary's built-in defaults, not a developer's FACEBOOK_GRAPH_URL etc. (no other test
    // in this file reads the environment).
    for var in [
        "FACEBOOK_GRAPH_URL",
        "TWILIO_API_URL",
        "VIBER_API_URL",
        "CHATPLUGIN_NAMING",
        "PROVIDER_TIMEOUT_SECONDS",
        "LOG_LEVEL",
        "LOG_FORMAT",
        "API_HEADER_READ_TIMEOUT_SECONDS",
        "API_BODY_READ_TIMEOUT_SECONDS",
        "API_IDLE_TIMEOUT_SECONDS",
        "API_MAX_CONNECTIONS",
        "API_MAX_CONNECTIONS_PER_PEER",
        "API_SLOW_REQUEST_SECONDS",
    ] {
        std::env::remove_var(var);
    }
    let d = Defaults::parse_from(["defaults"]);
    let values = yaml("charts/channel-operator/values.yaml");
    assert_eq!(
        values["facebook"]["graphUrl"].as_str(),
        Some(d.providers.facebook_graph_url.as_str())
    );
    assert_eq!(
        values["twilio"]["apiUrl"].as_str(),
        Some(d.providers.twilio_api_url.as_str())
    );
    assert_eq!(
        values["viber"]["apiUrl"].as_str(),
        Some(d.providers.viber_api_url.as_str())
    );
    assert_eq!(values["chatPluginNaming"].as_str(), Some("chat_plugin"));
    let controller = channel_operator::controller::Args::parse_from(["controller"]);
    let api = channel_operator::api::Args::parse_from(["api"]);
    for naming in [controller.chatplugin_naming, api.chatplugin_naming] {
        assert_eq!(
            naming,
            channel_operator::naming::ChatPluginNaming::ChatPlugin
        );
    }
    assert_eq!(
        values["providerTimeoutSeconds"].as_u64(),
        Some(d.providers.provider_timeout_seconds)
    );
    assert_eq!(values["logLevel"].as_str(), Some(d.log.log_level.as_str()));
    let limits = &values["api"]["limits"];
    assert_eq!(
        limits["headerReadTimeoutSeconds"].as_f64(),
        Some(d.limits.header_read_timeout_seconds)
    );
    assert_eq!(
        limits["bodyReadTimeoutSeconds"].as_f64(),
        Some(d.limits.body_read_timeout_seconds)
    );
    assert_eq!(
        limits["idleTimeoutSeconds"].as_f64(),
        Some(d.limits.idle_timeout_seconds)
    );
    assert_eq!(
        limits["maxConnections"].as_u64(),
        Some(d.limits.max_connections as u64)
    );
    assert_eq!(
        limits["maxConnectionsPerPeer"].as_u64(),
        Some(d.limits.max_connections_per_peer as u64)
    );
    assert_eq!(
        limits["slowRequestSeconds"].as_f64(),
        Some(d.limits.slow_request_seconds)
    );
    assert_eq!(values["logFormat"].as_str(), Some("text"));
    assert_eq!(
        d.log.log_format,
        channel_operator::telemetry::LogFormat::Text
    );
}

#[test]
fn chart_never_ships_a_credential_by_default() {
    let values = yaml("charts/channel-operator/values.yaml");
    for (section, key) in [
        ("facebook", "appIdSecret"),
        ("facebook", "appSecretSecret"),
        ("twilio", "accountSidSecret"),
        ("twilio", "authTokenSecret"),
        ("api", "tokensSecret"),
        ("api", "jwtSecretSecret"),
    ] {
        assert_eq!(
            values[section][key]["name"].as_str(),
            Some(""),
            "{section}.{key} must default to no Secret"
        );
    }
    assert_eq!(values["testSecret"]["create"].as_bool(), Some(false));
    let data = values["testSecret"]["stringData"]
        .as_mapping()
        .expect("testSecret.stringData is a map");
    assert!(
        data.is_empty(),
        "testSecret.stringData must be empty by default"
    );
}

#[test]
fn chart_ingress_routes_exactly_the_apis_channels_endpoints() {
    // The Ingress routes only these (Exact paths), so /metrics and /openapi.json stay internal;
    // an endpoint added to the API without the chart would be unreachable from outside.
    let helpers = read("charts/channel-operator/templates/_helpers.tpl");
    let block = helpers
        .split(r#"{{- define "channel-operator.apiEndpoints" -}}"#)
        .nth(1)
        .and_then(|rest| rest.split("{{- end }}").next())
        .expect("the apiEndpoints template in _helpers.tpl");
    let routed: Vec<&str> = block.split_whitespace().collect();
    assert_eq!(routed, channel_operator::api::endpoints::paths());
}
