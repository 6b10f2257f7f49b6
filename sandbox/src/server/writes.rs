//! The write verbs: create, update (PUT, and the last step of every patch and apply), patch,
//! delete and deletecollection.

use super::*;

/// Field ownership of a non-apply write.
pub(super) fn record(
    rt: &ResourceType,
    old: Option<&Value>,
    new: &Value,
    manager: &str,
    sub: Option<&str>,
    managed: &mut ManagedFields,
) {
    // Field ownership is best-effort for non-apply writes: a failure must not fail the write.
    let _ = pure("recording managed fields", || {
        patch::record_update_to(
            old,
            new,
            rt.schema.as_ref(),
            manager,
            sub.unwrap_or_default(),
            managed,
        )
    });
}

pub(super) fn create(
    st: &mut Store,
    ctx: &mut Ctx,
    mut obj: Value,
    managed: Option<ManagedFields>,
) -> Result<Value, ApiError> {
    let rt = ctx.rt.clone();
    let meta = &mut obj["metadata"];
    let mut name = meta["name"].as_str().unwrap_or_default().to_string();
    if name.is_empty() {
        let gen = meta["generateName"].as_str().unwrap_or_default();
        if gen.is_empty() {
            return Err(ApiError::invalid(
                &rt,
                "",
                &[schema::FieldError {
                    reason: "FieldValueRequired",
                    field: "metadata.name".into(),
                    message: "metadata.name: Required value: name or generateName is required"
                        .into(),
                }],
            ));
        }
        name = format!("{gen}{}", generate_suffix());
        meta["name"] = name.clone().into();
    }
    if rt.namespaced {
        if let Some(ns) = meta["namespace"].as_str().filter(|n| !n.is_empty()) {
            if ns != ctx.ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
        meta["namespace"] = ctx.ns.clone().into();
    } else if let Some(m) = meta.as_object_mut() {
        m.remove("namespace");
    }
    if let Some(e) = name_error(&rt, &name) {
        return Err(e);
    }
    if rt.namespaced {
        match st.namespace_state(&ctx.ns) {
            None => return Err(ApiError::namespace_not_found(&ctx.ns)),
            Some(true) => {
                return Err(ApiError::new(
                    403,
                    "Forbidden",
                    format!(
                        "{} {} is forbidden: unable to create new content in namespace {} because it is being terminated",
                        rt.qualified(),
                        quote(&name),
                        ctx.ns
                    ),
                ))
            }
            Some(false) => {}
        }
    }
    if st.get(&rt.storage, &ctx.ns, &name).is_some() {
        return Err(ApiError::already_exists(&rt, &name));
    }
    if let Some(m) = obj["metadata"].as_object_mut() {
        for k in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
            "generation",
        ] {
            m.remove(k);
        }
        m.insert("uid".into(), uuid::Uuid::new_v4().to_string().into());
        m.insert("creationTimestamp".into(), store::now_rfc3339().into());
    }
    if rt.custom && rt.status {
        if let Some(o) = obj.as_object_mut() {
            o.remove("status");
        }
    }
    normalize(&rt, &mut obj)?;
    validate_schema(ctx, &mut obj, None)?;
    if rt.generation {
        obj["metadata"]["generation"] = json!(1);
    }
    if ctx.dry_run() {
        return Ok(obj);
    }
    let mut managed = managed.unwrap_or_default();
    if managed == ManagedFields::default() {
        record(&rt, None, &obj, &ctx.manager, None, &mut managed);
    }
    if rt.storage == CRDS {
        st.set_crd_resources(&name, resources::from_crd(&obj));
    }
    Ok(st.put(&rt.storage, obj, managed, EventType::Added))
}

pub(super) fn without(obj: &Value, keys: &[&str]) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        for k in keys {
            m.remove(*k);
        }
    }
    o
}

/// Update of an existing object (PUT, and the last step of every patch and apply).
pub(super) fn update(
    st: &mut Store,
    ctx: &mut Ctx,
    name: &str,
    new: Value,
    sub: Option<&str>,
    managed: Option<ManagedFields>,
) -> Result<Value, ApiError> {
    let rt = ctx.rt.clone();
    let stored = st
        .get(&rt.storage, &ctx.ns, name)
        .ok_or_else(|| ApiError::not_found(&rt, name))?;
    let old = stored.value();
    let old_managed = stored.managed.clone();
    let old_meta = &old["metadata"];
    check_preconditions(&rt, &ctx.ns, name, old_meta, &new["metadata"])?;
    let mut result = carry_server_fields(&rt, &old, new, sub);
    let deleting = old_meta["deletionTimestamp"].is_string();
    let new_finalizers = check_finalizers(&rt, name, &old, &result, deleting)?;
    normalize(&rt, &mut result)?;
    if rt.storage == CRDS {
        // status is server-owned for CRDs in the sandbox
        result["status"] = old["status"].clone();
    }
    validate_schema(ctx, &mut result, Some(&old))?;
    if rt.generation {
        bump_generation(&rt, &old, &mut result);
    }
    if result == old {
        // A no-op write: kube-apiserver neither bumps the resourceVersion nor emits an event.
        return Ok(old);
    }
    if ctx.dry_run() {
        return Ok(result);
    }
    let managed = match managed {
        Some(m) => m,
        None => {
            let mut m = old_managed;
            record(&rt, Some(&old), &result, &ctx.manager, sub, &mut m);
            m
        }
    };
    if deleting && new_finalizers.is_empty() {
        st.replace_quietly(&rt.storage, &ctx.ns, name, &result);
        let gone = st
            .remove(&rt.storage, &ctx.ns, name)
            .ok_or_else(|| ApiError::not_found(&rt, name))?;
        return Ok(gone);
    }
    if rt.storage == CRDS {
        st.set_crd_resources(name, resources::from_crd(&result));
    }
    Ok(st.put(&rt.storage, result, managed, EventType::Modified))
}

/// The checks of an update against the stored object: resourceVersion and uid preconditions,
/// and the name and namespace of the URL.
fn check_preconditions(
    rt: &ResourceType,
    ns: &str,
    name: &str,
    old_meta: &Value,
    new_meta: &Value,
) -> Result<(), ApiError> {
    if let Some(rv) = new_meta["resourceVersion"]
        .as_str()
        .filter(|s| !s.is_empty())
    {
        if Some(rv) != old_meta["resourceVersion"].as_str() {
            return Err(ApiError::conflict(rt, name));
        }
    }
    if let Some(uid) = new_meta["uid"].as_str().filter(|s| !s.is_empty()) {
        let old_uid = old_meta["uid"].as_str().unwrap_or_default();
        if uid != old_uid {
            return Err(ApiError::conflict_msg(
                rt,
                name,
                &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {old_uid}"),
            ));
        }
    }
    if let Some(n) = new_meta["name"].as_str().filter(|s| !s.is_empty()) {
        if n != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
    }
    if rt.namespaced {
        if let Some(n) = new_meta["namespace"].as_str().filter(|s| !s.is_empty()) {
            if n != ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
    }
    Ok(())
}

/// The object an update stores: the status (for /status) or everything but the status from
/// the request, and the metadata the server owns from the stored object.
fn carry_server_fields(rt: &ResourceType, old: &Value, new: Value, sub: Option<&str>) -> Value {
    let mut result = if sub == Some("status") {
        let mut r = old.clone();
        copy_status(&new, &mut r);
        r
    } else {
        let mut r = new;
        if rt.status {
            copy_status(old, &mut r);
        }
        r
    };
    {
        let meta = result["metadata"]
            .as_object_mut()
            .expect("ingest makes metadata an object");
        meta.remove("managedFields");
        meta.remove("selfLink");
        for k in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
        ] {
            match old["metadata"].get(k) {
                Some(v) => meta.insert(k.to_string(), v.clone()),
                None => meta.remove(k),
            };
        }
    }
    result
}

/// `to` gets the status of `from`, or none when `from` has none.
fn copy_status(from: &Value, to: &mut Value) {
    match from.get("status") {
        Some(s) => to["status"] = s.clone(),
        None => {
            if let Some(o) = to.as_object_mut() {
                o.remove("status");
            }
        }
    }
}

/// The finalizers an update leaves; a deleting object may lose finalizers but gain none.
fn check_finalizers(
    rt: &ResourceType,
    name: &str,
    old: &Value,
    result: &Value,
    deleting: bool,
) -> Result<Vec<String>, ApiError> {
    let finalizers = |v: &Value| -> Vec<String> {
        v["metadata"]["finalizers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str().map(str::to_string))
            .collect()
    };
    let new_finalizers = finalizers(result);
    if deleting {
        let old_f = finalizers(old);
        if new_finalizers.iter().any(|f| !old_f.contains(f)) {
            return Err(ApiError::invalid(
                rt,
                name,
                &[schema::FieldError {
                    reason: "FieldValueForbidden",
                    field: "metadata.finalizers".into(),
                    message: "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted".into(),
                }],
            ));
        }
    }
    Ok(new_finalizers)
}

/// metadata.generation goes up when anything but metadata (and status, where it is a
/// subresource) changed.
fn bump_generation(rt: &ResourceType, old: &Value, result: &mut Value) {
    let ignored: &[&str] = if rt.status {
        &["metadata", "status"]
    } else {
        &["metadata"]
    };
    let old_gen = old["metadata"]["generation"].as_i64().unwrap_or(1);
    let changed = without(old, ignored) != without(result, ignored);
    result["metadata"]["generation"] = json!(if changed { old_gen + 1 } else { old_gen });
}

pub(super) fn patch(
    st: &mut Store,
    ctx: &mut Ctx,
    name: &str,
    sub: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(u16, Value), ApiError> {
    let rt = ctx.rt.clone();
    let ct = header(headers, "content-type")
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let mut accepted = vec![
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/apply-patch+yaml",
    ];
    if !rt.custom {
        accepted.push("application/strategic-merge-patch+json");
    }
    if !accepted.contains(&ct.as_str()) {
        return Err(ApiError::unsupported_media_type(&ct, &accepted));
    }
    let old = st
        .get(&rt.storage, &ctx.ns, name)
        .map(|s| (s.value(), s.managed.clone()));
    if ct == "application/apply-patch+yaml" {
        let manager = ctx.query.get("fieldManager").cloned().unwrap_or_default();
        if manager.is_empty() {
            return Err(ApiError::new(
                422,
                "Invalid",
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            ));
        }
        ctx.manager = manager.clone();
        let applied: Value = serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
        if !applied.is_object() {
            return Err(ApiError::bad_request(
                "the applied configuration must be an object",
            ));
        }
        let force = is_true(ctx.query, "force");
        let (live, mut managed) = match &old {
            Some((o, m)) => (Some(ctx.out(o.clone())), m.clone()),
            None => (None, ManagedFields::default()),
        };
        let schema = rt.schema.clone();
        let merged = pure("server-side apply", || {
            patch::server_side_apply_to(
                live.as_ref(),
                &applied,
                schema.as_ref(),
                &manager,
                sub.unwrap_or_default(),
                force,
                &mut managed,
            )
        })?
        .map_err(|e| apply_error(&rt, name, e))?;
        let mut merged = ctx.ingest(merged)?;
        return match old {
            None if sub.is_some() => Err(ApiError::not_found(&rt, name)),
            None => {
                merged["metadata"]["name"] = name.into();
                Ok((201, create(st, ctx, merged, Some(managed))?))
            }
            Some(_) => Ok((200, update(st, ctx, name, merged, sub, Some(managed))?)),
        };
    }
    let Some((old, _)) = old else {
        return Err(ApiError::not_found(&rt, name));
    };
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    let served = ctx.out(old);
    let patched = match ct.as_str() {
        "application/merge-patch+json" => {
            pure("merge patch", || patch::merge_patch(&served, &doc))?
        }
        "application/json-patch+json" => pure("json patch", || patch::json_patch(&served, &doc))?,
        _ => {
            let kind = rt.kind.clone();
            pure("strategic merge patch", || {
                patch::strategic_merge_patch(&served, &doc, &kind)
            })?
        }
    }
    .map_err(|e| match e {
        patch::PatchError::BadRequest(m) => ApiError::bad_request(m),
        patch::PatchError::Unprocessable(m) => ApiError::new(422, "Invalid", m),
    })?;
    let patched = ctx.ingest(patched)?;
    Ok((200, update(st, ctx, name, patched, sub, None)?))
}

pub(super) fn apply_error(rt: &ResourceType, name: &str, e: patch::ApplyError) -> ApiError {
    match e {
        patch::ApplyError::Conflicts(cs) => {
            let n = cs.len();
            let list: Vec<String> = cs
                .iter()
                .map(|c| format!("conflict with {}: {}", quote(&c.manager), c.field))
                .collect();
            let causes: Vec<Value> = cs
                .iter()
                .map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {}", quote(&c.manager)), "field": c.field}))
                .collect();
            let mut err = ApiError::new(
                409,
                "Conflict",
                format!(
                    "Apply failed with {n} conflict{}: {}",
                    if n == 1 { "" } else { "s" },
                    list.join("; ")
                ),
            );
            err.details =
                Some(json!({"name": name, "group": rt.group, "kind": rt.plural, "causes": causes}));
            err
        }
        patch::ApplyError::Invalid(m) => ApiError::new(422, "Invalid", m),
    }
}

pub(super) fn delete(
    st: &mut Store,
    ctx: &Ctx,
    name: &str,
    body: &[u8],
) -> Result<Response, ApiError> {
    let rt = &ctx.rt;
    let opts: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?
    };
    let stored = st
        .get(&rt.storage, &ctx.ns, name)
        .ok_or_else(|| ApiError::not_found(rt, name))?;
    let current = stored.value();
    let pre = &opts["preconditions"];
    for (field, label) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
        if let Some(want) = pre[field].as_str() {
            let have = current["metadata"][field].as_str().unwrap_or_default();
            if want != have {
                return Err(ApiError::conflict_msg(
                    rt,
                    name,
                    &format!("Precondition failed: {label} in precondition: {want}, {label} in object meta: {have}"),
                ));
            }
        }
    }
    let policy = ctx
        .query
        .get("propagationPolicy")
        .cloned()
        .or_else(|| opts["propagationPolicy"].as_str().map(str::to_string))
        .unwrap_or_default();
    let orphan = policy == "Orphan" || opts["orphanDependents"].as_bool() == Some(true);
    if ctx.dry_run() {
        return Ok(ctx.respond(200, ctx.out(current)));
    }
    let (obj, gone) = st
        .delete(&rt.storage, &ctx.ns, name, orphan)
        .ok_or_else(|| ApiError::not_found(rt, name))?;
    if gone && !rt.custom && rt.storage != NAMESPACES && rt.storage != CRDS {
        let status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": {"name": name, "group": rt.group, "kind": rt.plural,
                        "uid": obj["metadata"]["uid"]},
        });
        return Ok(json_response(200, status.to_string()));
    }
    Ok(ctx.respond(200, ctx.out(obj)))
}

pub(super) fn delete_collection(
    st: &mut Store,
    ctx: &Ctx,
    ns: Option<&str>,
) -> Result<Response, ApiError> {
    let sel = Selectors::parse(ctx)?;
    let keys: Vec<(String, String)> = st
        .objects
        .get(&ctx.rt.storage)
        .map(|m| {
            m.iter()
                .filter(|((n, _), _)| ns.is_none_or(|ns| ns == n))
                .filter(|(_, s)| sel.matches(&s.value()))
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default();
    let mut items = vec![];
    if !ctx.dry_run() {
        for (n, name) in keys {
            if let Some((obj, _)) = st.delete(&ctx.rt.storage, &n, &name, false) {
                items.push(ctx.out(obj));
            }
        }
    }
    let list = json!({
        "kind": ctx.rt.list_kind, "apiVersion": ctx.rt.api_version(),
        "metadata": {"resourceVersion": st.rv.to_string()}, "items": items,
    });
    Ok(json_response(200, list.to_string()))
}
