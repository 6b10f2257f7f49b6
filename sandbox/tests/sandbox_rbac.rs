//! Authentication and RBAC authorization in the sandbox: identities from `client_as` and
//! `service_account_client`, Roles/ClusterRoles and their bindings, resourceNames, subresources,
//! kube-apiserver's denial wording, impersonation, access reviews, and the real `kubectl`
//! (`auth can-i`, `--as`).

mod sandbox_support;

use channel_operator::crd::Channel;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube_sandbox::Sandbox;
use sandbox_support::*;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

const OP: &str = "system:serviceaccount:ops:op";

/// Creates an object of kind `K` (namespaced in `ns`, or cluster-scoped) as the admin.
async fn create<K>(client: &kube::Client, ns: Option<&str>, mut obj: Value) -> K
where
    K: kube::Resource<DynamicType = ()> + DeserializeOwned,
{
    let ar = ApiResource::erase::<K>(&());
    let api: Api<DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    obj["apiVersion"] = ar.api_version.clone().into();
    obj["kind"] = ar.kind.clone().into();
    let obj: DynamicObject = serde_json::from_value(obj).expect("a valid object");
    let created = api
        .create(&PostParams::default(), &obj)
        .await
        .expect("created");
    serde_json::from_value(serde_json::to_value(created).unwrap()).unwrap()
}

fn secret(name: &str) -> Secret {
    serde_json::from_value(json!({"metadata": {"name": name}, "stringData": {"k": "v"}})).unwrap()
}

/// A sandbox with namespaces `ops` and `tenant`, the ServiceAccount `ops/op`, and a Secret `s`
/// in `ops`, `tenant` and `kube-system`.
async fn cluster() -> (Sandbox, kube::Client) {
    let (sb, admin) = sandbox().await;
    for ns in ["ops", "tenant"] {
        create::<Namespace>(&admin, None, json!({"metadata": {"name": ns}})).await;
    }
    create::<ServiceAccount>(&admin, Some("ops"), json!({"metadata": {"name": "op"}})).await;
    for ns in ["ops", "tenant", "kube-system"] {
        Api::<Secret>::namespaced(admin.clone(), ns)
            .create(&PostParams::default(), &secret("s"))
            .await
            .unwrap();
    }
    (sb, admin)
}

/// Binds `role` (kind Role or ClusterRole) to the ServiceAccount ops/op in `ns`, or cluster-wide.
async fn bind(admin: &kube::Client, ns: Option<&str>, kind: &str, role: &str) {
    let subjects = json!([{"kind": "ServiceAccount", "name": "op", "namespace": "ops"}]);
    let body = json!({
        "metadata": {"name": format!("{role}-op")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
        "subjects": subjects,
    });
    match ns {
        Some(ns) => {
            create::<RoleBinding>(admin, Some(ns), body).await;
        }
        None => {
            create::<ClusterRoleBinding>(admin, None, body).await;
        }
    }
}

/// A ClusterRole `name` with one rule, bound cluster-wide to `subject`.
async fn grant_cluster_wide(admin: &kube::Client, name: &str, rule: Value, subject: Value) {
    create::<ClusterRole>(
        admin,
        None,
        json!({"metadata": {"name": name}, "rules": [rule]}),
    )
    .await;
    create::<ClusterRoleBinding>(
        admin,
        None,
        json!({"metadata": {"name": name},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
               "subjects": [subject]}),
    )
    .await;
}

fn message<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> String {
    let s = status(r);
    assert_eq!(s.code, 403, "{s:?}");
    assert_eq!(s.reason, "Forbidden", "{s:?}");
    s.message
}

#[tokio::test]
async fn a_role_grants_its_namespace_only_with_kube_apiservers_denials() {
    let (sb, admin) = cluster().await;
    create::<Role>(
        &admin,
        Some("ops"),
        json!({"metadata": {"name": "secrets"}, "rules": [
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]}]}),
    )
    .await;
    bind(&admin, Some("ops"), "Role", "secrets").await;
    let op = sb.service_account_client("ops", "op");

    let ops: Api<Secret> = Api::namespaced(op.clone(), "ops");
    assert!(ops.get("s").await.is_ok());
    assert_eq!(
        ops.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );

    let system: Api<Secret> = Api::namespaced(op.clone(), "kube-system");
    assert_eq!(
        message(system.get("s").await),
        format!(
            "secrets \"s\" is forbidden: User \"{OP}\" cannot get resource \"secrets\" in API group \"\" in the namespace \"kube-system\""
        )
    );
    assert_eq!(
        message(system.create(&PostParams::default(), &secret("new")).await),
        format!(
            "secrets is forbidden: User \"{OP}\" cannot create resource \"secrets\" in API group \"\" in the namespace \"kube-system\""
        )
    );
    // The verbs not granted are refused in the granted namespace too.
    assert!(
        message(ops.create(&PostParams::default(), &secret("new")).await)
            .contains("cannot create resource \"secrets\"")
    );
    // Across all namespaces takes a cluster-wide grant.
    let all: Api<Secret> = Api::all(op.clone());
    assert_eq!(
        message(all.list(&ListParams::default()).await),
        format!(
            "secrets is forbidden: User \"{OP}\" cannot list resource \"secrets\" in API group \"\" at the cluster scope"
        )
    );
    // The sandbox remembers each denial (what a least-privilege test asserts is empty).
    let denials = sb.denials();
    assert_eq!(denials.len(), 4, "{denials:?}");
    assert!(denials[0].starts_with("secrets \"s\" is forbidden"));
    // Nothing was written by the refused requests.
    let stored = Api::<Secret>::namespaced(admin.clone(), "kube-system")
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(stored.items.len(), 1);
}

#[tokio::test]
async fn cluster_roles_apply_per_namespace_or_everywhere_by_their_binding() {
    let (sb, admin) = cluster().await;
    create::<ClusterRole>(
        &admin,
        None,
        json!({"metadata": {"name": "secret-reader"}, "rules": [
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]}),
    )
    .await;
    // A ClusterRole bound by a RoleBinding grants in that namespace only.
    bind(&admin, Some("tenant"), "ClusterRole", "secret-reader").await;
    let op = sb.service_account_client("ops", "op");
    assert!(Api::<Secret>::namespaced(op.clone(), "tenant")
        .get("s")
        .await
        .is_ok());
    message(Api::<Secret>::namespaced(op.clone(), "ops").get("s").await);
    message(
        Api::<Secret>::all(op.clone())
            .list(&ListParams::default())
            .await,
    );

    // Bound by a ClusterRoleBinding it grants in every namespace and across them.
    bind(&admin, None, "ClusterRole", "secret-reader").await;
    let all = Api::<Secret>::all(op.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(all.items.len(), 3);
    assert!(Api::<Secret>::namespaced(op.clone(), "kube-system")
        .get("s")
        .await
        .is_ok());
    // Cluster-scoped resources need their own rule; a named namespace is authorized in itself.
    assert_eq!(
        message(Api::<Namespace>::all(op.clone()).get("ops").await),
        format!(
            "namespaces \"ops\" is forbidden: User \"{OP}\" cannot get resource \"namespaces\" in API group \"\" in the namespace \"ops\""
        )
    );
    assert_eq!(
        message(Api::<Namespace>::all(op).list(&ListParams::default()).await),
        format!(
            "namespaces is forbidden: User \"{OP}\" cannot list resource \"namespaces\" in API group \"\" at the cluster scope"
        )
    );
}

#[tokio::test]
async fn resource_names_restrict_named_requests_but_never_allow_create_or_plain_lists() {
    let (sb, admin) = cluster().await;
    create::<Role>(
        &admin,
        Some("ops"),
        json!({"metadata": {"name": "lease"}, "rules": [
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
             "resourceNames": ["leader"], "verbs": ["get", "list", "watch", "create", "patch"]}]}),
    )
    .await;
    bind(&admin, Some("ops"), "Role", "lease").await;
    let leases_admin: Api<Lease> = Api::namespaced(admin.clone(), "ops");
    for name in ["leader", "other"] {
        let lease: Lease = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        leases_admin
            .create(&PostParams::default(), &lease)
            .await
            .unwrap();
    }
    let leases: Api<Lease> = Api::namespaced(sb.service_account_client("ops", "op"), "ops");
    assert!(leases.get("leader").await.is_ok());
    let patch = Patch::Merge(json!({"spec": {"holderIdentity": "me"}}));
    assert!(leases
        .patch("leader", &PatchParams::default(), &patch)
        .await
        .is_ok());
    assert!(message(leases.get("other").await)
        .starts_with("leases.coordination.k8s.io \"other\" is forbidden"));
    // A create has no name to match: a rule with resourceNames never allows it.
    let new: Lease = serde_json::from_value(json!({"metadata": {"name": "leader2"}})).unwrap();
    assert!(message(leases.create(&PostParams::default(), &new).await)
        .contains("cannot create resource \"leases\""));
    message(leases.list(&ListParams::default()).await);
    // A list selecting metadata.name is authorized as a request for that name.
    let one = leases
        .list(&ListParams::default().fields("metadata.name=leader"))
        .await
        .unwrap();
    assert_eq!(one.items.len(), 1);
}

#[tokio::test]
async fn subresources_are_granted_apart_from_their_resource() {
    let (sb, admin) = cluster().await;
    create::<Role>(
        &admin,
        Some("ops"),
        json!({"metadata": {"name": "status"}, "rules": [
            {"apiGroups": ["airy.co"], "resources": ["channels"], "verbs": ["get"]},
            {"apiGroups": ["airy.co"], "resources": ["channels/status"], "verbs": ["patch"]}]}),
    )
    .await;
    bind(&admin, Some("ops"), "Role", "status").await;
    Api::<Channel>::namespaced(admin.clone(), "ops")
        .create(&PostParams::default(), &channel("web", "site-1"))
        .await
        .unwrap();
    let channels: Api<Channel> = Api::namespaced(sb.service_account_client("ops", "op"), "ops");
    let status = Patch::Merge(json!({"status": {"observedGeneration": 1}}));
    assert!(channels
        .patch_status("web", &PatchParams::default(), &status)
        .await
        .is_ok());
    let spec = Patch::Merge(json!({"spec": {"name": "renamed"}}));
    assert_eq!(
        message(channels.patch("web", &PatchParams::default(), &spec).await),
        format!(
            "channels.airy.co \"web\" is forbidden: User \"{OP}\" cannot patch resource \"channels\" in API group \"airy.co\" in the namespace \"ops\""
        )
    );
    assert_eq!(
        message(channels.get_status("web").await),
        format!(
            "channels.airy.co \"web\" is forbidden: User \"{OP}\" cannot get resource \"channels/status\" in API group \"airy.co\" in the namespace \"ops\""
        )
    );
}

#[tokio::test]
async fn identities_users_groups_and_missing_service_accounts() {
    let (sb, admin) = cluster().await;
    grant_cluster_wide(
        &admin,
        "ns-reader",
        json!({"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list"]}),
        json!({"kind": "Group", "name": "auditors", "apiGroup": "rbac.authorization.k8s.io"}),
    )
    .await;
    let list = ListParams::default();
    // The admin client is system:masters: no binding needed.
    assert!(Api::<Secret>::all(admin.clone()).list(&list).await.is_ok());
    let auditor = sb.client_as("alice", &["auditors"]);
    assert!(Api::<Namespace>::all(auditor.clone())
        .list(&list)
        .await
        .is_ok());
    message(Api::<Secret>::all(auditor).list(&list).await);
    let bob = sb.client_as("bob", &[]);
    assert!(message(Api::<Namespace>::all(bob).list(&list).await)
        .contains("User \"bob\" cannot list resource \"namespaces\""));

    // A ServiceAccount's token is only good while the ServiceAccount exists.
    let ghost = sb.service_account_client("ops", "ghost");
    let s = status(Api::<Namespace>::all(ghost).list(&list).await);
    assert_eq!((s.code, s.reason.as_str()), (401, "Unauthorized"));
    let (code, body, _) = raw_with_token(&sb, "not-a-token", "/api/v1/namespaces", &[]).await;
    assert_eq!(code, 401);
    assert_status(&body, 401, "Unauthorized");
}

async fn raw_with_token(
    sb: &Sandbox,
    token: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = reqwest::Client::new()
        .get(format!("{}{path}", sb.url()))
        .bearer_auth(token);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let code = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        headers,
    )
}

#[tokio::test]
async fn impersonation_needs_the_impersonate_verb() {
    let (sb, admin) = cluster().await;
    let token = sb.token_for("alice", &[]);
    let path = "/api/v1/namespaces/ops/secrets";
    let (code, body, _) =
        raw_with_token(&sb, &token, path, &[("Impersonate-User", "system:admin")]).await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        "users \"system:admin\" is forbidden: User \"alice\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
    );
    grant_cluster_wide(
        &admin,
        "impersonator",
        json!({"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]}),
        json!({"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}),
    )
    .await;
    // Now alice acts as ops/op, with exactly its rights (none on secrets).
    let (code, body, _) = raw_with_token(&sb, &token, path, &[("Impersonate-User", OP)]).await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        format!("secrets is forbidden: User \"{OP}\" cannot list resource \"secrets\" in API group \"\" in the namespace \"ops\"")
    );
    assert_eq!(body["details"]["kind"], "secrets");
}

#[tokio::test]
async fn subject_access_reviews_answer_for_any_identity() {
    let (sb, admin) = cluster().await;
    create::<Role>(
        &admin,
        Some("ops"),
        json!({"metadata": {"name": "secrets"}, "rules": [
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}),
    )
    .await;
    bind(&admin, Some("ops"), "Role", "secrets").await;
    let review = |ns: &str| {
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
               "spec": {"user": OP, "groups": ["system:serviceaccounts", "system:serviceaccounts:ops"],
                        "resourceAttributes": {"namespace": ns, "verb": "get", "resource": "secrets"}}})
        .to_string()
    };
    let path = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
    let (code, body, _) = raw(
        &sb,
        reqwest::Method::POST,
        path,
        Some("application/json"),
        Some(review("ops")),
    )
    .await;
    assert_eq!(
        (code, &body["status"]["allowed"]),
        (201, &json!(true)),
        "{body}"
    );
    let (_, body, _) = raw(
        &sb,
        reqwest::Method::POST,
        path,
        Some("application/json"),
        Some(review("kube-system")),
    )
    .await;
    assert_eq!(body["status"]["allowed"], false, "{body}");
    // Asking about others takes a grant; nobody but the admin has one here.
    let token = sb.token_for("bob", &[]);
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", sb.url()))
        .bearer_auth(token)
        .header("Content-Type", "application/json")
        .body(review("ops"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
}

/// kubectl as the admin: (exit code, stdout, stderr).
async fn kubectl(sb: &Sandbox, dir: &tempfile::TempDir, args: &[&str]) -> (i32, String, String) {
    let out = sb.kubectl(dir.path(), args).await.expect("kubectl runs");
    (out.code, out.stdout, out.stderr)
}

#[tokio::test]
async fn kubectl_applies_rbac_and_answers_can_i_and_as() {
    let (sb, _admin) = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("rbac.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: secrets
  namespace: ops
rules:
  - apiGroups: [\"\"]
    resources: [\"secrets\"]
    verbs: [\"get\", \"list\"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: secrets
  namespace: ops
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: secrets
subjects:
  - kind: ServiceAccount
    name: op
    namespace: ops
",
    )
    .unwrap();
    let (code, out, err) = kubectl(&sb, &dir, &["apply", "-f", manifest.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("role.rbac.authorization.k8s.io/secrets created"),
        "{out}"
    );

    let as_op = format!("--as={OP}");
    let can_i = |verb: &'static str, ns: &'static str| {
        let as_op = as_op.clone();
        let sb = &sb;
        let dir = &dir;
        async move {
            kubectl(
                sb,
                dir,
                &["auth", "can-i", verb, "secrets", "-n", ns, &as_op],
            )
            .await
        }
    };
    let (code, out, err) = can_i("get", "ops").await;
    assert_eq!((code, out.trim()), (0, "yes"), "{err}");
    let (code, out, _) = can_i("get", "kube-system").await;
    assert_eq!((code, out.trim()), (1, "no"));
    let (code, out, _) = can_i("create", "ops").await;
    assert_eq!((code, out.trim()), (1, "no"));
    let (code, out, _) =
        kubectl(&sb, &dir, &["auth", "can-i", "get", "secrets", "-n", "ops"]).await;
    assert_eq!((code, out.trim()), (0, "yes"), "the admin may");

    let (code, out, _) = kubectl(&sb, &dir, &["get", "secrets", "-n", "ops", &as_op]).await;
    assert_eq!(code, 0);
    assert!(
        out.lines().nth(1).is_some_and(|l| l.starts_with("s ")),
        "{out}"
    );
    let (code, _, err) = kubectl(
        &sb,
        &dir,
        &["get", "secret", "s", "-n", "kube-system", &as_op],
    )
    .await;
    assert_ne!(code, 0);
    assert!(
        err.contains(&format!(
            "secrets \"s\" is forbidden: User \"{OP}\" cannot get resource \"secrets\" in API group \"\" in the namespace \"kube-system\""
        )),
        "{err}"
    );
}
