//! Pruning of unknown fields and defaulting, as a structural schema prescribes.

use super::*;

pub(super) fn prune(
    schema: &Value,
    value: &mut Value,
    path: &str,
    root: bool,
    pruned: &mut Vec<String>,
) {
    match value {
        Value::Object(map) => {
            let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields")
                || schema.get("additionalProperties") == Some(&Value::Bool(true));
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                if is_meta_key(schema, &key, root) {
                    continue;
                }
                let p = child_path(path, &key);
                match field_schema(schema, &key) {
                    Some(sub) => {
                        let nullable = flag(sub, "nullable");
                        if map[&key].is_null() && !nullable && sub.get("default").is_none() {
                            // kube-apiserver drops nulls the schema does not allow.
                            map.remove(&key);
                        } else if let Some(v) = map.get_mut(&key) {
                            prune(sub, v, &p, false, pruned);
                        }
                    }
                    None if preserve => {}
                    None => {
                        map.remove(&key);
                        pruned.push(format!(".{p}"));
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune(item_schema, item, &format!("{path}[{i}]"), false, pruned);
                }
            }
        }
        _ => {}
    }
}

pub(super) fn default(schema: &Value, value: &mut Value, root: bool) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (key, sub) in props {
                    if is_meta_key(schema, key, root) {
                        continue;
                    }
                    let Some(d) = sub.get("default") else {
                        continue;
                    };
                    let missing = match map.get(key) {
                        None => true,
                        Some(Value::Null) => !flag(sub, "nullable"),
                        Some(_) => false,
                    };
                    if missing {
                        map.insert(key.clone(), d.clone());
                    }
                }
            }
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                if is_meta_key(schema, &key, root) {
                    continue;
                }
                if let (Some(sub), Some(v)) = (field_schema(schema, &key), map.get_mut(&key)) {
                    default(sub, v, false);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    default(item_schema, item, false);
                }
            }
        }
        _ => {}
    }
}
