//! Server-side apply and the field ownership of other writes.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::fields::*;
use super::json_type;

pub(super) const OWNED_METADATA: [&str; 4] =
    ["labels", "annotations", "finalizers", "ownerReferences"];

/// The part of an object whose fields managers own: everything but apiVersion and kind, and
/// of metadata only labels, annotations, finalizers and ownerReferences.
pub(super) fn owned_view(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
        if let Some(Value::Object(meta)) = m.get_mut("metadata") {
            meta.retain(|k, _| OWNED_METADATA.contains(&k.as_str()));
            if meta.is_empty() {
                m.remove("metadata");
            }
        } else {
            m.remove("metadata");
        }
    }
    v
}

pub(super) fn item_key(item: &Value, keys: &[String]) -> Result<String, String> {
    let mut m = Map::new();
    for k in keys {
        match item.get(k) {
            Some(v) => {
                m.insert(k.clone(), v.clone());
            }
            None => {
                return Err(format!(
                    "associative list with keys has an element that omits key field {k:?}"
                ))
            }
        }
    }
    Ok(Value::Object(m).to_string())
}

/// Collects the owned field paths of a value.
pub(super) fn collect(
    value: &Value,
    schema: Option<&Value>,
    prefix: &mut FieldPath,
    out: &mut BTreeSet<FieldPath>,
) -> Result<(), String> {
    match value {
        Value::Object(m) if !m.is_empty() && !is_atomic_map(schema) => {
            for (k, v) in m {
                prefix.push(PathElement::Field(k.clone()));
                collect(v, child_schema(schema, k), prefix, out)?;
                prefix.pop();
            }
        }
        Value::Array(items) => match list_type(schema) {
            ListType::Atomic => {
                out.insert(prefix.clone());
            }
            ListType::Set => {
                for item in items {
                    let mut p = prefix.clone();
                    p.push(PathElement::Value(item.to_string()));
                    if !out.insert(p) {
                        return Err(format!("duplicate entries for key [={item}]"));
                    }
                }
            }
            ListType::Map(keys) => {
                let item_schema = schema.and_then(|s| s.get("items"));
                for item in items {
                    let key = item_key(item, &keys)?;
                    prefix.push(PathElement::Key(key));
                    if !out.insert(prefix.clone()) {
                        let dup = format_path(&prefix[prefix.len() - 1..]);
                        return Err(format!("duplicate entries for key {dup}"));
                    }
                    if let Value::Object(m) = item {
                        for (k, v) in m {
                            prefix.push(PathElement::Field(k.clone()));
                            collect(v, child_schema(item_schema, k), prefix, out)?;
                            prefix.pop();
                        }
                    }
                    prefix.pop();
                }
            }
        },
        _ => {
            if !prefix.is_empty() {
                out.insert(prefix.clone());
            }
        }
    }
    Ok(())
}

pub(super) fn field_set(obj: &Value, schema: &Value) -> Result<BTreeSet<FieldPath>, String> {
    let mut out = BTreeSet::new();
    collect(&owned_view(obj), Some(schema), &mut Vec::new(), &mut out)?;
    Ok(out)
}

pub(super) fn key_matches(item: &Value, key: &str) -> bool {
    serde_json::from_str::<Map<String, Value>>(key)
        .map(|k| k.iter().all(|(f, v)| item.get(f) == Some(v)))
        .unwrap_or(false)
}

pub(super) fn get_at<'a>(value: &'a Value, path: &[PathElement]) -> Option<&'a Value> {
    let mut cur = value;
    for pe in path {
        cur = match pe {
            PathElement::Field(f) => cur.get(f.as_str())?,
            PathElement::Key(k) => cur.as_array()?.iter().find(|i| key_matches(i, k))?,
            PathElement::Value(v) => {
                let want: Value = serde_json::from_str(v).ok()?;
                cur.as_array()?.iter().find(|i| **i == want)?
            }
        };
    }
    Some(cur)
}

pub(super) fn remove_at(value: &mut Value, path: &[PathElement]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    let mut cur = value;
    for pe in parent {
        let next = match pe {
            PathElement::Field(f) => cur.get_mut(f.as_str()),
            PathElement::Key(k) => cur
                .as_array_mut()
                .and_then(|a| a.iter_mut().find(|i| key_matches(i, k))),
            PathElement::Value(v) => {
                let want: Value = serde_json::from_str(v).unwrap_or(Value::Null);
                cur.as_array_mut()
                    .and_then(|a| a.iter_mut().find(|i| **i == want))
            }
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    match (last, cur) {
        (PathElement::Field(f), Value::Object(m)) => {
            m.remove(f);
        }
        (PathElement::Key(k), Value::Array(a)) => a.retain(|i| !key_matches(i, k)),
        (PathElement::Value(v), Value::Array(a)) => {
            let want: Value = serde_json::from_str(v).unwrap_or(Value::Null);
            a.retain(|i| *i != want);
        }
        _ => {}
    }
}

/// Merges an applied configuration into a live value, following the schema's merge strategy.
pub(super) fn ssa_merge(live: &Value, applied: &Value, schema: Option<&Value>) -> Value {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) if !is_atomic_map(schema) => {
            let mut out = l.clone();
            for (k, av) in a {
                if av.is_null() {
                    out.remove(k);
                    continue;
                }
                let merged = match l.get(k) {
                    Some(lv) => ssa_merge(lv, av, child_schema(schema, k)),
                    None => av.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(l), Value::Array(a)) => match list_type(schema) {
            ListType::Atomic => applied.clone(),
            ListType::Set => {
                let mut out = l.clone();
                for v in a {
                    if !out.contains(v) {
                        out.push(v.clone());
                    }
                }
                Value::Array(out)
            }
            ListType::Map(keys) => {
                let item_schema = schema.and_then(|s| s.get("items"));
                let mut out = l.clone();
                for item in a {
                    let Ok(k) = item_key(item, &keys) else {
                        continue;
                    };
                    match out.iter().position(|o| key_matches(o, &k)) {
                        Some(i) => out[i] = ssa_merge(&out[i], item, item_schema),
                        None => out.push(item.clone()),
                    }
                }
                Value::Array(out)
            }
        },
        _ => applied.clone(),
    }
}

/// Whether `path` is a key field of a map-list item (it goes away only with the item).
pub(super) fn is_key_field(path: &[PathElement]) -> bool {
    match path {
        [.., PathElement::Key(k), PathElement::Field(f)] => {
            serde_json::from_str::<Map<String, Value>>(k).is_ok_and(|m| m.contains_key(f))
        }
        _ => false,
    }
}

/// Whether `path` names a value (not just the identity of a list item) that can conflict.
pub(super) fn is_value_path(path: &[PathElement]) -> bool {
    matches!(path.last(), Some(PathElement::Field(_)))
}

/// Server-side apply of `applied` by `manager` onto `live` (None: the object does not exist
/// yet), through a subresource (`"status"`; `""` is the main resource). `schema` is the
/// openAPIV3Schema of a custom resource (for `x-kubernetes-list-type` /
/// `x-kubernetes-list-map-keys`), None for built-in kinds. Returns the merged object and updates
/// `owners`. Fields this manager applied before and no longer applies are removed. Like
/// kube-apiserver, a manager's applies to the main resource and to `/status` are tracked as
/// separate entries, so applying status does not drop what the same manager applied to the
/// main resource (e.g. a finalizer).
pub fn server_side_apply_to(
    live: Option<&Value>,
    applied: &Value,
    schema: Option<&Value>,
    manager: &str,
    subresource: &str,
    force: bool,
    owners: &mut ManagedFields,
) -> Result<Value, ApplyError> {
    let Some(applied_map) = applied.as_object() else {
        return Err(ApplyError::Invalid(format!(
            "the applied configuration must be an object, got {}",
            json_type(applied)
        )));
    };
    let eff = effective_schema(schema);
    let applied_set = field_set(applied, &eff).map_err(ApplyError::Invalid)?;
    let config = owned_view(applied);

    // The starting point: the live object, or a new one with the applied identity.
    let mut base = match live {
        Some(l) => l.clone(),
        None => {
            let mut m = Map::new();
            for k in ["apiVersion", "kind"] {
                if let Some(v) = applied_map.get(k) {
                    m.insert(k.into(), v.clone());
                }
            }
            let mut meta = Map::new();
            if let Some(am) = applied_map.get("metadata").and_then(Value::as_object) {
                for k in ["name", "namespace", "generateName"] {
                    if let Some(v) = am.get(k) {
                        meta.insert(k.into(), v.clone());
                    }
                }
            }
            m.insert("metadata".into(), Value::Object(meta));
            Value::Object(m)
        }
    };

    // Conflicts: fields another manager owns whose value the apply would change.
    let mut conflicts = Vec::new();
    for path in applied_set.iter().filter(|p| is_value_path(p)) {
        let (Some(new), Some(old)) = (get_at(&config, path), get_at(&base, path)) else {
            continue;
        };
        if new == old {
            continue;
        }
        for e in &owners.entries {
            if e.manager != manager && e.fields.contains(path) {
                conflicts.push(Conflict {
                    manager: e.manager.clone(),
                    field: format_path(path),
                });
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(ApplyError::Conflicts(conflicts));
    }

    let previous: BTreeSet<FieldPath> = owners
        .entries
        .iter()
        .filter(|e| e.is(manager, Operation::Apply, subresource))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();

    let mut merged = ssa_merge(&base, &config, Some(&eff));

    // Fields this manager applied before and no longer applies go away unless someone else
    // owns them (or something below them) too. Shallow paths first: removing a list item
    // removes its fields; a kept item keeps its key fields.
    let mut dropped: Vec<&FieldPath> = previous.difference(&applied_set).collect();
    dropped.sort_by_key(|p| p.len());
    for path in dropped {
        if is_key_field(path) {
            continue;
        }
        let shared = owners.entries.iter().any(|e| {
            !e.is(manager, Operation::Apply, subresource)
                && e.fields.iter().any(|f| f.starts_with(path))
        });
        let still_applied = applied_set.iter().any(|f| f.starts_with(path));
        if !shared && !still_applied {
            remove_at(&mut merged, path);
        }
    }
    base = merged;

    // Ownership: the manager owns exactly what it applied; forced fields leave other managers;
    // the same manager's Update entry gives up what it now applies.
    for e in &mut owners.entries {
        let changed_here = |p: &FieldPath| {
            force
                && conflicts
                    .iter()
                    .any(|c| c.manager == e.manager && c.field == format_path(p))
        };
        if e.is(manager, Operation::Update, subresource) {
            e.fields.retain(|p| !applied_set.contains(p));
        } else if e.manager != manager {
            let keep: BTreeSet<FieldPath> = e
                .fields
                .iter()
                .filter(|p| !changed_here(p))
                .cloned()
                .collect();
            e.fields = keep;
        }
    }
    owners
        .entry_mut(manager, Operation::Apply, subresource)
        .fields = applied_set;
    owners.prune(&base);
    Ok(base)
}

/// Records a non-apply write (create, update, patch) by `manager` through a subresource
/// (`"status"`, or `""`): it takes ownership of the fields it changed or set. `schema` is the
/// CRD schema, so map lists are tracked per item.
pub fn record_update_to(
    old: Option<&Value>,
    new: &Value,
    schema: Option<&Value>,
    manager: &str,
    subresource: &str,
    owners: &mut ManagedFields,
) {
    let eff = effective_schema(schema);
    let new_set = field_set(new, &eff).unwrap_or_default();
    let new_view = owned_view(new);
    let old_view = old.map(owned_view);
    let changed: BTreeSet<FieldPath> = new_set
        .into_iter()
        .filter(|p| match &old_view {
            None => true,
            Some(o) => get_at(o, p) != get_at(&new_view, p),
        })
        .collect();
    if !changed.is_empty() {
        for e in &mut owners.entries {
            if !e.is(manager, Operation::Update, subresource) {
                e.fields
                    .retain(|p| !changed.contains(p) || !is_value_path(p));
            }
        }
        owners
            .entry_mut(manager, Operation::Update, subresource)
            .fields
            .extend(changed);
    }
    owners.prune(new);
}
