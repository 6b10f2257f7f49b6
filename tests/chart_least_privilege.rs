//! Least privilege in every install mode (issue 26), asked as an attacker asks a real cluster:
//! the chart is rendered (scripts/render-chart, Helm's own engine), its identities and RBAC are
//! applied to the sandbox, and `kubectl auth can-i --as` answers for every verb that matters.
//!
//! - The API writes, it does not read: it may create Secrets in its namespaces (the page tokens it
//!   is handed) and nothing else on any Secret anywhere; nothing at all in the state namespace.
//! - The controller reads what it only reads: the provider Secrets of the release namespace at
//!   most get/list/watch; the leader Lease only by its name (get, patch) besides creating it, and
//!   no other Lease of the release namespace; its claims, records and effect entries in the state
//!   namespace.
//! - No tenant (a user with every right on Channels and Secrets of a namespace) reads the state
//!   namespace.
//!
//! The sidecar mode is an opt-in whose trade-off is stated: the API shares the controller's
//! identity, and with it what the controller may read; the test says so too.

mod support;

use futures::StreamExt;
use serde_json::{json, Value};
use support::chart::*;

/// The leader-election Lease (`leaderElection.leaseName` by default: the release's full name).
const LEADER: &str = "channel-operator";
/// A user with every right on Channels and Secrets of the namespaces the tenants use.
const TENANT: &str = "tenant@example.org";
const EVERY_VERB: [&str; 8] = [
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

struct Mode {
    name: &'static str,
    extra: Value,
    /// The API has its own ServiceAccount.
    separate: bool,
    /// The controller may read the provider Secrets of the release namespace (for a
    /// ClusterProviderConfig's Secrets).
    reads_release_secrets: bool,
    leader_election: bool,
    /// The namespace where the API writes Channels and their page-token Secrets.
    channels_ns: &'static str,
}

fn modes() -> Vec<Mode> {
    vec![
        Mode {
            name: "default (cluster-wide, separate API)",
            extra: json!({"watchNamespace": ""}),
            separate: true,
            reads_release_secrets: true,
            leader_election: true,
            channels_ns: CHANNELS_NS,
        },
        Mode {
            name: "cluster-wide, API as a sidecar",
            extra: json!({"watchNamespace": "", "api": {"separate": false}}),
            separate: false,
            reads_release_secrets: false,
            leader_election: true,
            channels_ns: CHANNELS_NS,
        },
        Mode {
            name: "namespaced, separate API",
            extra: json!({}),
            separate: true,
            reads_release_secrets: false,
            leader_election: true,
            channels_ns: WATCH_NS,
        },
        Mode {
            name: "namespaced, API as a sidecar, no leader election",
            extra: json!({"api": {"separate": false}, "leaderElection": {"enabled": false}}),
            separate: false,
            reads_release_secrets: false,
            leader_election: false,
            channels_ns: WATCH_NS,
        },
        Mode {
            name: "cluster-wide HA",
            extra: json!({"watchNamespace": "", "replicas": 3, "api": {"replicas": 2}}),
            separate: true,
            reads_release_secrets: true,
            leader_election: true,
            channels_ns: CHANNELS_NS,
        },
        Mode {
            name: "separate API, secrets.namespaces listing the release namespace",
            extra: json!({"watchNamespace": "", "api": {"separate": true},
                          "secrets": {"namespaces": [RELEASE_NS, CHANNELS_NS]}}),
            separate: true,
            reads_release_secrets: true,
            leader_election: true,
            channels_ns: CHANNELS_NS,
        },
    ]
}

/// One question to `kubectl auth can-i` and the answer least privilege wants.
struct Ask {
    who: String,
    verb: &'static str,
    what: String,
    ns: &'static str,
    want: bool,
}

fn ask(who: &str, verb: &'static str, what: &str, ns: &'static str, want: bool) -> Ask {
    Ask {
        who: who.to_owned(),
        verb,
        what: what.to_owned(),
        ns,
        want,
    }
}

/// Every question for `mode`, whose API runs as `api`; what is wrong already (the identities).
fn questions(mode: &Mode, api: &str) -> (Vec<Ask>, Vec<String>) {
    let c = CONTROLLER_SA;
    let mut q = vec![];
    let mut wrong = vec![];
    if mode.separate == (api == c) {
        wrong.push(format!(
            "{}: the API runs as {api}, the controller as {c}; want separate: {}",
            mode.name, mode.separate
        ));
    }
    // The API: creates Secrets in its namespace, and does nothing else with any Secret.
    if mode.separate {
        for verb in EVERY_VERB {
            q.push(ask(
                api,
                verb,
                "secrets",
                mode.channels_ns,
                verb == "create",
            ));
            for ns in [RELEASE_NS, STATE_NS, "kube-system"] {
                q.push(ask(api, verb, "secrets", ns, false));
            }
            q.push(ask(api, verb, "leases", STATE_NS, false));
            q.push(ask(api, verb, "leases", RELEASE_NS, false));
        }
        q.push(ask(
            api,
            "create",
            "channels.airy.co",
            mode.channels_ns,
            true,
        ));
    } else {
        // The trade-off of the sidecar: one identity, the controller's.
        q.push(ask(api, "get", "secrets", mode.channels_ns, true));
        q.push(ask(api, "get", "secrets", STATE_NS, true));
    }
    // The controller and the provider Secrets of the release namespace: read at most.
    for verb in ["get", "list", "watch"] {
        q.push(ask(
            c,
            verb,
            "secrets",
            RELEASE_NS,
            mode.reads_release_secrets,
        ));
    }
    for verb in ["create", "update", "patch", "delete", "deletecollection"] {
        q.push(ask(c, verb, "secrets", RELEASE_NS, false));
        for name in ["facebook-app", "twilio", "channel-api-auth"] {
            if verb != "create" && verb != "deletecollection" {
                q.push(ask(c, verb, &format!("secrets/{name}"), RELEASE_NS, false));
            }
        }
    }
    // Leases of the release namespace: the leader Lease by name, nothing else.
    let leader = format!("leases/{LEADER}");
    let le = mode.leader_election;
    q.push(ask(c, "create", "leases", RELEASE_NS, le));
    q.push(ask(c, "get", &leader, RELEASE_NS, le));
    q.push(ask(c, "patch", &leader, RELEASE_NS, le));
    for verb in ["delete", "deletecollection", "list", "watch", "update"] {
        q.push(ask(c, verb, "leases", RELEASE_NS, false));
    }
    q.push(ask(c, "delete", &leader, RELEASE_NS, false));
    for verb in ["get", "update", "patch", "delete"] {
        q.push(ask(c, verb, "leases/claim-0123", RELEASE_NS, false));
    }
    // The state namespace: the controller's claims and effect entries (Leases), its records
    // (Secrets), with the verbs the record of provider effects uses (writes are patches).
    for verb in EVERY_VERB {
        let leases = ["get", "create", "patch", "delete"].contains(&verb);
        q.push(ask(c, verb, "leases", STATE_NS, leases));
        let secrets = ["get", "list", "create", "patch", "delete"].contains(&verb);
        q.push(ask(c, verb, "secrets", STATE_NS, secrets));
    }
    q.push(ask(c, "get", "secrets", "kube-system", false));
    q.push(ask(c, "get", "leases", "kube-system", false));
    // A tenant: every right on Channels and Secrets where tenants work, nothing of the state.
    for verb in ["get", "list", "watch"] {
        for resource in ["secrets", "leases"] {
            q.push(ask(TENANT, verb, resource, STATE_NS, false));
        }
        q.push(ask(TENANT, verb, "secrets", RELEASE_NS, false));
        q.push(ask(TENANT, verb, "secrets", mode.channels_ns, true));
    }
    (q, wrong)
}

/// Every right on Channels and Secrets of `ns` for [`TENANT`].
async fn tenant_in(sb: &kube_sandbox::Sandbox, dir: &std::path::Path, ns: &str) {
    let yaml = format!(
        "apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: tenant, namespace: {ns}}}
rules:
  - apiGroups: [\"\", \"airy.co\"]
    resources: [secrets, channels]
    verbs: [\"*\"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: tenant, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: tenant}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: \"{TENANT}\"}}]
"
    );
    let file = dir.join(format!("tenant-{ns}.yaml"));
    std::fs::write(&file, yaml).unwrap();
    let (code, out, err) = kubectl(sb, dir, &["apply", "-f", file.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}{err}");
}

/// Reported from a real cluster: the default install ran the internet-facing API as the
/// controller's identity; with the separate API, its Role could get, patch and delete every
/// Secret of its namespace (it read the long-lived page token the controller wrote); the
/// controller could patch and delete the provider Secrets and delete the leader Lease. In every
/// install mode each identity now holds what it uses and no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_identity_holds_only_what_it_uses_in_every_install_mode() {
    let (graph, twilio) = fake_providers().await;
    let mut wrong = vec![];
    let mut asked = 0;
    for mode in modes() {
        let (sb, objects, dir) = install(&graph, &twilio, mode.extra.clone()).await;
        let d = dir.path();
        tenant_in(&sb, d, mode.channels_ns).await;
        let (pod, _) = container(&objects, "api");
        let api = format!(
            "system:serviceaccount:{RELEASE_NS}:{}",
            pod["serviceAccountName"].as_str().unwrap()
        );
        let (questions, identities) = questions(&mode, &api);
        wrong.extend(identities);
        asked += questions.len();
        let answers: Vec<(Ask, bool)> = futures::stream::iter(questions)
            .map(|a| {
                let sb = &sb;
                async move {
                    let got = can_i(sb, d, &a.who, a.verb, &a.what, a.ns).await;
                    (a, got)
                }
            })
            .buffer_unordered(4)
            .collect()
            .await;
        for (a, got) in answers.into_iter().filter(|(a, got)| *got != a.want) {
            wrong.push(format!(
                "{}: {} may {} {} in {}: {got}, want {}",
                mode.name, a.who, a.verb, a.what, a.ns, a.want
            ));
        }
        sb.shutdown().await;
    }
    wrong.sort();
    assert!(
        wrong.is_empty(),
        "{} of {asked} answers are wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// Done when (issue 26): a long-lived token written by the controller is unreadable by any
/// tenant and by the API's identity. The controller connects a Facebook page as the chart's
/// identity; every Secret in the cluster that holds a token it derived (the long-lived token
/// exchanged from the page token, the page access token) lies in the state namespace, and
/// neither a tenant of team-a nor the API's identity may get, list or watch it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_tenant_and_no_api_identity_reads_a_token_the_controller_derived() {
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Api, ListParams};
    let (graph, twilio) = fake_providers().await;
    let (sb, objects, dir) = install(&graph, &twilio, json!({})).await;
    let d = dir.path();
    let _controller = start_controller(&sb, &objects).await;
    tenant_in(&sb, d, WATCH_NS).await;
    let file = d.join("channels.yaml");
    std::fs::write(&file, CHANNELS).unwrap();
    let (code, out, err) = kubectl(&sb, d, &["apply", "-f", file.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}{err}");
    let channels = Api::<channel_operator::crd::Channel>::namespaced(sb.client(), WATCH_NS);
    wait_ready(&sb, &channels, "acme-facebook", ("True", "Connected")).await;
    assert_eq!(sb.denials(), Vec::<String>::new());

    let derived = ["long-lived", "page-access"];
    let holders: Vec<(String, String)> = Api::<Secret>::all(sb.client())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|s| {
            s.data.iter().flatten().any(|(_, v)| {
                let v = String::from_utf8_lossy(&v.0);
                derived.iter().any(|t| v.contains(t))
            })
        })
        .map(|s| (s.metadata.namespace.unwrap(), s.metadata.name.unwrap()))
        .collect();
    assert!(!holders.is_empty(), "the controller kept no derived token");
    let (pod, _) = container(&objects, "api");
    let api = format!(
        "system:serviceaccount:{RELEASE_NS}:{}",
        pod["serviceAccountName"].as_str().unwrap()
    );
    for (ns, name) in &holders {
        assert_eq!(
            ns, STATE_NS,
            "{ns}/{name} holds a token the controller derived"
        );
        for who in [TENANT, api.as_str()] {
            assert!(!can_i(&sb, d, who, "get", &format!("secrets/{name}"), STATE_NS).await);
            for verb in ["list", "watch"] {
                assert!(!can_i(&sb, d, who, verb, "secrets", STATE_NS).await);
            }
        }
    }
}
