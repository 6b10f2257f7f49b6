//! Strategic merge patch of built-in kinds: merge keys, patch directives and element order.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{json_type, PatchError};

/// How a strategic merge patch treats a list field.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum ListStrategy {
    Replace,
    MergeKey(&'static str),
    PrimitiveSet,
}

/// The `patchStrategy=merge` lists of the Go types of the built-ins the sandbox serves.
pub(super) fn list_strategy(kind: &str, path: &[String]) -> ListStrategy {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    match (kind, p.as_slice()) {
        (_, ["metadata", "ownerReferences"]) => ListStrategy::MergeKey("uid"),
        (_, ["metadata", "finalizers"]) => ListStrategy::PrimitiveSet,
        ("CustomResourceDefinition", ["spec", "versions"]) => ListStrategy::MergeKey("name"),
        _ => ListStrategy::Replace,
    }
}

pub(super) const DELETE_FROM: &str = "$deleteFromPrimitiveList/";
pub(super) const SET_ORDER: &str = "$setElementOrder/";

/// Strategic merge patch for the built-in kinds the sandbox serves (`kind` is e.g. "Secret").
pub fn strategic_merge_patch(
    target: &Value,
    patch: &Value,
    kind: &str,
) -> Result<Value, PatchError> {
    let (Some(t), Some(p)) = (target.as_object(), patch.as_object()) else {
        return Err(PatchError::BadRequest(format!(
            "strategic merge patch must be a JSON object, got {}",
            json_type(patch)
        )));
    };
    Ok(Value::Object(smp_map(t, p, kind, &mut Vec::new())?))
}

/// Merges a patch map into an original map (`$patch: delete` leaves an empty map, as in Go).
pub(super) fn smp_map(
    original: &Map<String, Value>,
    patch: &Map<String, Value>,
    kind: &str,
    path: &mut Vec<String>,
) -> Result<Map<String, Value>, PatchError> {
    match patch.get("$patch") {
        None => {}
        Some(Value::String(d)) if d == "merge" => {}
        Some(Value::String(d)) if d == "delete" => return Ok(Map::new()),
        Some(Value::String(d)) if d == "replace" => {
            let mut fresh = patch.clone();
            fresh.remove("$patch");
            return smp_map(&Map::new(), &fresh, kind, path);
        }
        Some(other) => {
            return Err(PatchError::BadRequest(format!(
                "unknown patch type: {other} in map"
            )))
        }
    }
    let mut orders: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (key, pv) in patch {
        if let Some(field) = key.strip_prefix(SET_ORDER) {
            let order = pv
                .as_array()
                .cloned()
                .ok_or_else(|| PatchError::BadRequest(format!("{key} must be a list")))?;
            orders.insert(field.to_string(), order);
        }
    }
    let mut result = original.clone();
    for (key, pv) in patch {
        if key == "$patch" || key == "$retainKeys" || key.starts_with(SET_ORDER) {
            continue;
        }
        if let Some(field) = key.strip_prefix(DELETE_FROM) {
            let gone = pv
                .as_array()
                .cloned()
                .ok_or_else(|| PatchError::BadRequest(format!("{key} must be a list")))?;
            if let Some(Value::Array(items)) = result.get_mut(field) {
                items.retain(|i| !gone.contains(i));
            }
            continue;
        }
        if key.starts_with('$') {
            return Err(PatchError::BadRequest(format!(
                "unknown patch directive {key}"
            )));
        }
        path.push(key.clone());
        let merged = match (result.get(key), pv) {
            (_, Value::Null) => None,
            (Some(Value::Object(o)), Value::Object(pm)) => {
                Some(Value::Object(smp_map(o, pm, kind, path)?))
            }
            (None | Some(Value::Null), Value::Object(pm)) => {
                Some(Value::Object(smp_map(&Map::new(), pm, kind, path)?))
            }
            (orig, Value::Array(pl)) => {
                let empty = Vec::new();
                let ol = orig.and_then(Value::as_array).unwrap_or(&empty);
                let strategy = list_strategy(kind, path);
                Some(Value::Array(smp_list(
                    ol,
                    pl,
                    strategy,
                    orders.get(key).map(Vec::as_slice),
                    kind,
                    path,
                )?))
            }
            (_, other) => Some(other.clone()),
        };
        path.pop();
        match merged {
            Some(v) => {
                result.insert(key.clone(), v);
            }
            None => {
                result.remove(key);
            }
        }
    }
    // `$setElementOrder` for a list the patch does not otherwise touch reorders it.
    for (field, order) in &orders {
        if patch.contains_key(field) {
            continue;
        }
        path.push(field.clone());
        let strategy = list_strategy(kind, path);
        path.pop();
        if let Some(Value::Array(items)) = result.get_mut(field) {
            let original = items.clone();
            *items = normalize_order(items.clone(), &original, order, strategy);
        }
    }
    if let Some(retain) = patch.get("$retainKeys") {
        let keep: Vec<&str> = retain
            .as_array()
            .ok_or_else(|| PatchError::BadRequest("$retainKeys must be a list".into()))?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        result.retain(|k, _| keep.contains(&k.as_str()));
    }
    Ok(result)
}

pub(super) fn merge_key_of<'a>(item: &'a Value, key: &str) -> Option<&'a Value> {
    item.as_object().and_then(|m| m.get(key))
}

/// The identity of a list item: its merge key, or the value itself for primitive lists.
pub(super) fn identity(item: &Value, strategy: ListStrategy) -> Option<Value> {
    match strategy {
        ListStrategy::MergeKey(key) => merge_key_of(item, key).cloned(),
        _ => Some(item.clone()),
    }
}

/// Orders a merged list like apimachinery's `normalizeElementOrder`: items named by the patch
/// (its list, or `$setElementOrder`) in that order, merged with the server-only items in their
/// original order; an item new to the server goes before the server-only item it meets.
pub(super) fn normalize_order(
    merged: Vec<Value>,
    original: &[Value],
    patch_order: &[Value],
    strategy: ListStrategy,
) -> Vec<Value> {
    let ids_of = |list: &[Value]| -> Vec<Option<Value>> {
        list.iter().map(|i| identity(i, strategy)).collect()
    };
    let patch_ids = ids_of(patch_order);
    let server_ids = ids_of(original);
    let pos = |ids: &[Option<Value>], item: &Value| {
        let id = identity(item, strategy);
        ids.iter().position(|x| id.is_some() && *x == id)
    };
    let (mut from_patch, server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|i| pos(&patch_ids, i).is_some());
    from_patch.sort_by_key(|i| pos(&patch_ids, i));
    let (mut l, mut r) = (
        server_only.into_iter().peekable(),
        from_patch.into_iter().peekable(),
    );
    let mut out = Vec::new();
    loop {
        match (l.peek(), r.peek()) {
            (None, None) => break,
            (Some(_), None) => out.extend(l.next()),
            (None, Some(_)) => out.extend(r.next()),
            (Some(a), Some(b)) => match (pos(&server_ids, a), pos(&server_ids, b)) {
                (Some(x), Some(y)) if x < y => out.extend(l.next()),
                _ => out.extend(r.next()),
            },
        }
    }
    out
}

pub(super) fn smp_list(
    original: &[Value],
    patch: &[Value],
    strategy: ListStrategy,
    set_order: Option<&[Value]>,
    kind: &str,
    path: &mut Vec<String>,
) -> Result<Vec<Value>, PatchError> {
    let merged = match strategy {
        ListStrategy::Replace => {
            // Replaced lists may still carry directives inside their items: strip them.
            return patch
                .iter()
                .map(|v| match v {
                    Value::Object(m) => Ok(Value::Object(smp_map(&Map::new(), m, kind, path)?)),
                    other => Ok(other.clone()),
                })
                .collect();
        }
        ListStrategy::PrimitiveSet => {
            let mut out = original.to_vec();
            for v in patch {
                if !out.contains(v) {
                    out.push(v.clone());
                }
            }
            out
        }
        ListStrategy::MergeKey(key) => {
            if patch
                .iter()
                .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
            {
                let rest: Vec<Value> = patch
                    .iter()
                    .filter(|i| i.get("$patch").is_none())
                    .cloned()
                    .collect();
                return smp_list(&[], &rest, strategy, None, kind, path);
            }
            let mut out = original.to_vec();
            for item in patch {
                let Some(pm) = item.as_object() else {
                    return Err(PatchError::BadRequest(format!(
                        "list {} items must be objects with the merge key {key}",
                        path.join(".")
                    )));
                };
                let Some(k) = pm.get(key) else {
                    return Err(PatchError::BadRequest(format!(
                        "map: {item} does not contain declared merge key: {key}"
                    )));
                };
                let pos = out.iter().position(|o| merge_key_of(o, key) == Some(k));
                let delete = pm.get("$patch").and_then(Value::as_str) == Some("delete");
                match (pos, delete) {
                    (Some(i), true) => {
                        out.remove(i);
                    }
                    (None, true) => {}
                    (Some(i), false) => {
                        let orig = out[i].as_object().cloned().unwrap_or_default();
                        out[i] = Value::Object(smp_map(&orig, pm, kind, path)?);
                    }
                    (None, false) => out.push(Value::Object(smp_map(&Map::new(), pm, kind, path)?)),
                }
            }
            out
        }
    };
    let order = set_order.unwrap_or(patch);
    Ok(normalize_order(merged, original, order, strategy))
}
