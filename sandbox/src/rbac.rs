//! Authorization as kube-apiserver's RBAC authorizer decides it, from the Roles, ClusterRoles,
//! RoleBindings and ClusterRoleBindings in the store; denials answered as kube-apiserver words
//! them. Aggregated ClusterRoles (`aggregationRule`) are not expanded.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::authn::{Auth, UserInfo};
use super::status::ApiError;
use super::store::Store;

pub const GROUP: &str = "rbac.authorization.k8s.io";
const ROLES: &str = "rbac.authorization.k8s.io/roles";
const CLUSTER_ROLES: &str = "rbac.authorization.k8s.io/clusterroles";
const ROLE_BINDINGS: &str = "rbac.authorization.k8s.io/rolebindings";
const CLUSTER_ROLE_BINDINGS: &str = "rbac.authorization.k8s.io/clusterrolebindings";

/// What a request asks to do (a resource request; the sandbox does not authorize non-resource
/// paths such as discovery, which every authenticated user may read in a default cluster).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    /// "" for cluster-scoped resources and for requests across all namespaces.
    pub namespace: String,
    /// "" for list/watch/create/deletecollection (unless a list or watch selects
    /// `metadata.name`, which kube-apiserver then authorizes as that name).
    pub name: String,
}

impl Attributes {
    pub fn resource(verb: &str, group: &str, resource: &str, namespace: &str, name: &str) -> Self {
        Attributes {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: String::new(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// From a SubjectAccessReview's `spec.resourceAttributes`.
    fn from_review(ra: &Value) -> Self {
        let s = |k: &str| ra[k].as_str().unwrap_or_default().to_string();
        Attributes {
            verb: s("verb"),
            group: s("group"),
            resource: s("resource"),
            subresource: s("subresource"),
            namespace: s("namespace"),
            name: s("name"),
        }
    }

    fn combined_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

impl Attributes {
    /// A resource request's attributes as kube-apiserver's request info derives them: a named
    /// namespace is its own namespace (`/api/v1/namespaces/x` is in the namespace "x"), and a
    /// list or watch selecting `metadata.name` is a request for that name.
    pub fn of_request(
        verb: &str,
        group: &str,
        resource: &str,
        subresource: &Option<String>,
        namespace: &Option<String>,
        name: &Option<String>,
        query: &HashMap<String, String>,
    ) -> Self {
        let namespace = match (namespace, group, resource) {
            (None, "", "namespaces") => name.clone(),
            _ => namespace.clone(),
        };
        Attributes {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: subresource.clone().unwrap_or_default(),
            namespace: namespace.unwrap_or_default(),
            name: name.clone().unwrap_or_else(|| selected_name(verb, query)),
        }
    }
}

/// The name a list or watch selects with `fieldSelector=metadata.name=<name>`: kube-apiserver
/// authorizes such a request as one for that name (so `resourceNames` rules allow it).
fn selected_name(verb: &str, query: &HashMap<String, String>) -> String {
    if !matches!(verb, "list" | "watch") {
        return String::new();
    }
    let selector = query.get("fieldSelector").map(String::as_str).unwrap_or("");
    selector
        .split(',')
        .find_map(|term| {
            let term = term.trim();
            term.strip_prefix("metadata.name==")
                .or_else(|| term.strip_prefix("metadata.name="))
        })
        .unwrap_or_default()
        .to_string()
}

/// Whether `user` may do `a`.
pub fn allowed(st: &Store, user: &UserInfo, a: &Attributes) -> bool {
    if user.is_master() {
        return true;
    }
    let objects = |storage: &str| -> Vec<Value> {
        st.objects
            .get(storage)
            .map(|m| m.values().map(|o| o.value()).collect())
            .unwrap_or_default()
    };
    let cluster_role_rules = |name: &str| -> Vec<Value> {
        st.get(CLUSTER_ROLES, "", name)
            .map(|r| rules_of(&r.value()))
            .unwrap_or_default()
    };
    for b in objects(CLUSTER_ROLE_BINDINGS) {
        if binds(&b, user, "") && b["roleRef"]["kind"] == "ClusterRole" {
            let name = b["roleRef"]["name"].as_str().unwrap_or_default();
            if cluster_role_rules(name).iter().any(|r| rule_allows(r, a)) {
                return true;
            }
        }
    }
    if a.namespace.is_empty() {
        return false;
    }
    let Some(bindings) = st.objects.get(ROLE_BINDINGS) else {
        return false;
    };
    for ((ns, _), b) in bindings.iter() {
        if ns != &a.namespace {
            continue;
        }
        let b = b.value();
        if !binds(&b, user, ns) {
            continue;
        }
        let name = b["roleRef"]["name"].as_str().unwrap_or_default();
        let rules = match b["roleRef"]["kind"].as_str() {
            Some("ClusterRole") => cluster_role_rules(name),
            Some("Role") => st
                .get(ROLES, ns, name)
                .map(|r| rules_of(&r.value()))
                .unwrap_or_default(),
            _ => vec![],
        };
        if rules.iter().any(|r| rule_allows(r, a)) {
            return true;
        }
    }
    false
}

/// `Ok` when allowed, else kube-apiserver's 403.
pub fn check(st: &Store, user: &UserInfo, a: &Attributes) -> Result<(), ApiError> {
    if allowed(st, user, a) {
        Ok(())
    } else {
        Err(forbidden(user, a))
    }
}

fn rules_of(role: &Value) -> Vec<Value> {
    role["rules"].as_array().cloned().unwrap_or_default()
}

/// Whether a binding (in `namespace`, "" for a ClusterRoleBinding) names the user or a group
/// of it. A ServiceAccount subject without a namespace means one in the binding's namespace.
fn binds(binding: &Value, user: &UserInfo, namespace: &str) -> bool {
    binding["subjects"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| {
            let name = s["name"].as_str().unwrap_or_default();
            match s["kind"].as_str() {
                Some("User") => user.name == name,
                Some("Group") => user.groups.iter().any(|g| g == name),
                Some("ServiceAccount") => {
                    let ns = s["namespace"]
                        .as_str()
                        .filter(|n| !n.is_empty())
                        .unwrap_or(namespace);
                    !ns.is_empty() && user.service_account_of() == Some((ns, name))
                }
                _ => false,
            }
        })
}

fn strings(v: &Value) -> impl Iterator<Item = &str> {
    v.as_array().into_iter().flatten().filter_map(Value::as_str)
}

fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    let verb_ok = strings(&rule["verbs"]).any(|v| v == "*" || v == a.verb);
    let group_ok = strings(&rule["apiGroups"]).any(|g| g == "*" || g == a.group);
    let combined = a.combined_resource();
    let resource_ok = strings(&rule["resources"]).any(|r| {
        r == "*"
            || r == combined
            || (!a.subresource.is_empty() && r.strip_prefix("*/") == Some(&a.subresource))
    });
    let mut names = strings(&rule["resourceNames"]).peekable();
    let name_ok = names.peek().is_none() || names.any(|n| !a.name.is_empty() && n == a.name);
    verb_ok && group_ok && resource_ok && name_ok
}

/// kube-apiserver's forbidden message: `secrets "x" is forbidden: User "u" cannot get resource
/// "secrets" in API group "" in the namespace "ns"`.
pub fn forbidden_reason(user: &UserInfo, a: &Attributes) -> String {
    let scope = if a.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace {:?}", a.namespace)
    };
    format!(
        "User {:?} cannot {} resource {:?} in API group {:?} {scope}",
        user.name,
        a.verb,
        a.combined_resource(),
        a.group
    )
}

pub fn forbidden(user: &UserInfo, a: &Attributes) -> ApiError {
    let qualified = if a.group.is_empty() {
        a.resource.clone()
    } else {
        format!("{}.{}", a.resource, a.group)
    };
    let subject = if a.name.is_empty() {
        qualified
    } else {
        format!("{qualified} {:?}", a.name)
    };
    let mut e = ApiError::new(
        403,
        "Forbidden",
        format!("{subject} is forbidden: {}", forbidden_reason(user, a)),
    );
    let mut details = json!({"group": a.group, "kind": a.resource});
    if !a.name.is_empty() {
        details["name"] = a.name.clone().into();
    }
    e.details = Some(details);
    e
}

/// `POST .../selfsubjectaccessreviews` (the caller asks about itself) and
/// `.../subjectaccessreviews` (about `spec.user`/`spec.groups`; the caller needs `create` on
/// subjectaccessreviews): answers the review with `status.allowed`.
pub fn access_review(
    auth: &Auth,
    st: &Store,
    caller: &UserInfo,
    plural: &str,
    mut review: Value,
) -> Result<Value, ApiError> {
    let kind = match plural {
        "selfsubjectaccessreviews" => "SelfSubjectAccessReview",
        _ => "SubjectAccessReview",
    };
    // every authenticated user may review itself (system:basic-user in a default cluster)
    if plural != "selfsubjectaccessreviews" {
        auth.check(
            st,
            caller,
            &Attributes::resource("create", "authorization.k8s.io", plural, "", ""),
        )?;
    }
    let spec = &review["spec"];
    let subject = if plural == "selfsubjectaccessreviews" {
        caller.clone()
    } else {
        let groups: Vec<&str> = strings(&spec["groups"]).collect();
        let name = spec["user"].as_str().unwrap_or_default();
        if name.is_empty() && groups.is_empty() {
            return Err(invalid(
                kind,
                "spec.user: Invalid value: \"\": at least one of user or group must be specified",
            ));
        }
        UserInfo {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    };
    let ra = &spec["resourceAttributes"];
    if !ra.is_object() {
        return Err(invalid(
            kind,
            "spec.resourceAttributes: Required value: the sandbox answers resourceAttributes only",
        ));
    }
    let attrs = Attributes::from_review(ra);
    let ok = allowed(st, &subject, &attrs);
    review["apiVersion"] = "authorization.k8s.io/v1".into();
    review["kind"] = kind.into();
    if !review["metadata"].is_object() {
        review["metadata"] = json!({});
    }
    review["status"] = if ok {
        json!({"allowed": true, "reason": "RBAC: allowed by the sandbox's RBAC rules"})
    } else {
        json!({"allowed": false})
    };
    Ok(review)
}

fn invalid(kind: &str, message: &str) -> ApiError {
    ApiError::new(
        422,
        "Invalid",
        format!("{kind}.authorization.k8s.io is invalid: {message}"),
    )
}
