//! Admission of a write: names, per-kind defaulting, and pruning and validation against the
//! schema.

use super::*;

pub(super) fn dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub(super) fn dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(dns1123_label)
}

pub(super) fn name_error(rt: &ResourceType, name: &str) -> Option<ApiError> {
    let label = rt.storage == NAMESPACES;
    let ok = if label {
        dns1123_label(name)
    } else {
        dns1123_subdomain(name)
    };
    if ok {
        return None;
    }
    let why = if label {
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
    } else {
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    };
    Some(ApiError::invalid(
        rt,
        name,
        &[schema::FieldError {
            reason: "FieldValueInvalid",
            field: "metadata.name".into(),
            message: format!("metadata.name: Invalid value: {}: {why}", quote(name)),
        }],
    ))
}

pub(super) fn generate_suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Per-kind defaulting and normalisation that kube-apiserver does on every write.
pub(super) fn normalize(rt: &ResourceType, obj: &mut Value) -> Result<(), ApiError> {
    match rt.storage.as_str() {
        "/secrets" => {
            if obj["type"].as_str().unwrap_or_default().is_empty() {
                obj["type"] = "Opaque".into();
            }
            if let Some(Value::Object(sd)) =
                obj.as_object_mut().and_then(|o| o.remove("stringData"))
            {
                use base64::Engine;
                for (k, v) in sd {
                    let s = v.as_str().unwrap_or_default();
                    obj["data"][k] = base64::engine::general_purpose::STANDARD
                        .encode(s.as_bytes())
                        .into();
                }
            }
        }
        NAMESPACES => {
            if obj["status"]["phase"].is_null() {
                obj["status"]["phase"] = "Active".into();
            }
            if obj["spec"]["finalizers"].is_null() {
                obj["spec"]["finalizers"] = json!(["kubernetes"]);
            }
            let name = obj["metadata"]["name"].clone();
            obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
        }
        CRDS => {
            let spec = &obj["spec"];
            let group = spec["group"].as_str().unwrap_or_default();
            let plural = spec["names"]["plural"].as_str().unwrap_or_default();
            let kind = spec["names"]["kind"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let name = obj["metadata"]["name"].as_str().unwrap_or_default();
            let mut errors = vec![];
            if name != format!("{plural}.{group}") {
                errors.push(schema::FieldError {
                    reason: "FieldValueInvalid",
                    field: "metadata.name".into(),
                    message: format!(
                        "metadata.name: Invalid value: {}: must be spec.names.plural+\".\"+spec.group",
                        quote(name)
                    ),
                });
            }
            if kind.is_empty() {
                errors.push(schema::FieldError {
                    reason: "FieldValueRequired",
                    field: "spec.names.kind".into(),
                    message: "spec.names.kind: Required value".into(),
                });
            }
            let versions = spec["versions"].as_array().cloned().unwrap_or_default();
            if versions.is_empty() {
                errors.push(schema::FieldError {
                    reason: "FieldValueRequired",
                    field: "spec.versions".into(),
                    message: "spec.versions: Invalid value: null: must have exactly one version marked as storage version".into(),
                });
            }
            if !errors.is_empty() {
                return Err(ApiError::invalid(rt, name, &errors));
            }
            if obj["spec"]["names"]["singular"].is_null() {
                obj["spec"]["names"]["singular"] = kind.to_lowercase().into();
            }
            if obj["spec"]["names"]["listKind"].is_null() {
                obj["spec"]["names"]["listKind"] = format!("{kind}List").into();
            }
            if obj["spec"]["scope"].is_null() {
                obj["spec"]["scope"] = "Namespaced".into();
            }
            let storage_versions: Vec<Value> = versions
                .iter()
                .filter(|v| v["storage"].as_bool() == Some(true))
                .map(|v| v["name"].clone())
                .collect();
            let now = store::now_rfc3339();
            let names = obj["spec"]["names"].clone();
            obj["status"] = json!({
                "acceptedNames": names,
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                     "message": "no conflicts found", "lastTransitionTime": now},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                     "message": "the initial names have been accepted", "lastTransitionTime": now},
                ],
                "storedVersions": storage_versions,
            });
        }
        _ => {}
    }
    Ok(())
}

/// Pruning, defaulting and validation of custom resources against their schema.
pub(super) fn validate_schema(
    ctx: &mut Ctx,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let Some(schema) = ctx.rt.schema.clone() else {
        if !ctx.rt.custom {
            let pruned = prune_builtin(&ctx.rt, obj);
            report_unknown(ctx, &pruned)?;
        }
        return Ok(());
    };
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let outcome = pure("schema validation", || {
        schema::prune_default_validate(&schema, obj, old)
    })?;
    report_unknown(ctx, &outcome.pruned)?;
    if !outcome.errors.is_empty() {
        return Err(ApiError::invalid(&ctx.rt, &name, &outcome.errors));
    }
    Ok(())
}

/// Unknown fields per `fieldValidation`: Strict fails, Warn (default) warns, Ignore drops.
pub(super) fn report_unknown(ctx: &mut Ctx, pruned: &[String]) -> Result<(), ApiError> {
    if pruned.is_empty() {
        return Ok(());
    }
    let unknown: Vec<String> = pruned
        .iter()
        .map(|p| format!("unknown field {}", quote(p.trim_start_matches('.'))))
        .collect();
    match ctx.query.get("fieldValidation").map(String::as_str) {
        Some("Strict") => Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            unknown.join(", ")
        ))),
        Some("Ignore") => Ok(()),
        _ => {
            ctx.warnings.extend(unknown);
            Ok(())
        }
    }
}

/// Built-in kinds are decoded into their Go types by the apiserver, which drops unknown
/// fields; the k8s-openapi types do the same, so a round trip through them prunes. Returns the
/// pruned paths (`.spec.foo`).
pub(super) fn prune_builtin(rt: &ResourceType, obj: &mut Value) -> Vec<String> {
    pub(super) fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(
        v: &Value,
    ) -> Option<Value> {
        serde_json::from_value::<T>(v.clone())
            .ok()
            .and_then(|t| serde_json::to_value(t).ok())
    }
    use k8s_openapi::api;
    let typed = match rt.storage.as_str() {
        "/secrets" => round_trip::<api::core::v1::Secret>(obj),
        NAMESPACES => round_trip::<api::core::v1::Namespace>(obj),
        "/events" => round_trip::<api::core::v1::Event>(obj),
        "coordination.k8s.io/leases" => round_trip::<api::coordination::v1::Lease>(obj),
        "/serviceaccounts" => round_trip::<api::core::v1::ServiceAccount>(obj),
        "rbac.authorization.k8s.io/roles" => round_trip::<api::rbac::v1::Role>(obj),
        "rbac.authorization.k8s.io/clusterroles" => round_trip::<api::rbac::v1::ClusterRole>(obj),
        "rbac.authorization.k8s.io/rolebindings" => round_trip::<api::rbac::v1::RoleBinding>(obj),
        "rbac.authorization.k8s.io/clusterrolebindings" => {
            round_trip::<api::rbac::v1::ClusterRoleBinding>(obj)
        }
        _ => None,
    };
    let Some(typed) = typed else {
        // not decodable: leave it to the rest of the request to complain
        return vec![];
    };
    let mut pruned = vec![];
    unknown_paths(obj, &typed, "", &mut pruned);
    for p in &pruned {
        remove_path(obj, p);
    }
    pruned
}

pub(super) fn unknown_paths(orig: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (orig, typed) {
        (Value::Object(o), Value::Object(t)) => {
            for (k, v) in o {
                if v.is_null() {
                    continue;
                }
                let p = format!("{path}.{k}");
                match t.get(k) {
                    None => out.push(p),
                    Some(tv) => unknown_paths(v, tv, &p, out),
                }
            }
        }
        (Value::Array(o), Value::Array(t)) if o.len() == t.len() => {
            for (i, (a, b)) in o.iter().zip(t).enumerate() {
                unknown_paths(a, b, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

pub(super) fn remove_path(obj: &mut Value, path: &str) {
    // paths are `.a.b` or `.a[0].b`; array indices were produced by unknown_paths above
    let mut cur = obj;
    let parts: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let (key, idx) = match part.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (*part, None),
        };
        if i == parts.len() - 1 && idx.is_none() {
            if let Some(m) = cur.as_object_mut() {
                m.remove(key);
            }
            return;
        }
        let Some(next) = cur.get_mut(key) else { return };
        cur = match idx {
            Some(n) => match next.get_mut(n) {
                Some(v) => v,
                None => return,
            },
            None => next,
        };
    }
}
