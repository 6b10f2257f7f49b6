//! CEL rules (`x-kubernetes-validations`), including transition rules.

use super::*;

/// A copy of `schema` without the rules of its descendants, so the CEL evaluator runs only
/// this node's rules (the walk below visits each node itself).
pub(super) fn only_own_rules(schema: &Value) -> Value {
    pub(super) fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("x-kubernetes-validations");
                for (_, child) in m.iter_mut() {
                    strip(child);
                }
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut out = schema.clone();
    if let Value::Object(m) = &mut out {
        for (k, child) in m.iter_mut() {
            if k != "x-kubernetes-validations" {
                strip(child);
            }
        }
    }
    out
}

thread_local! {
    static CEL: kube::core::cel::Validator = kube::core::cel::Validator::new();
}

pub(super) fn cel(
    schema: &Value,
    value: &Value,
    old: Option<&Value>,
    path: &str,
    root: bool,
    errors: &mut Vec<FieldError>,
) {
    if value.is_null() {
        return;
    }
    if schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .is_some_and(|r| !r.is_empty())
    {
        let node_type = schema
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_else(|| json_type(value));
        let own = only_own_rules(schema);
        let result = CEL.with(|v| v.validate(&own, value, old));
        if let Err(errs) = result {
            for e in errs.into_vec() {
                let field = match e.field_path.as_str() {
                    "" => path.to_string(),
                    fp if fp.starts_with('.') && path.is_empty() => fp[1..].to_string(),
                    fp if fp.starts_with('.') || fp.starts_with('[') => format!("{path}{fp}"),
                    fp => child_path(path, fp),
                };
                errors.push(cel_error(field, node_type, &e.message, e.reason.as_deref()));
            }
        }
    }
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if is_meta_key(schema, key, root) {
                    continue;
                }
                if let Some(sub) = field_schema(schema, key) {
                    let o = old.and_then(|o| o.get(key));
                    cel(sub, v, o, &child_path(path, key), false, errors);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    let o = old_item(schema, old, item);
                    cel(item_schema, item, o, &format!("{path}[{i}]"), false, errors);
                }
            }
        }
        _ => {}
    }
}

pub(super) fn cel_error(
    field: String,
    node_type: &str,
    message: &str,
    reason: Option<&str>,
) -> FieldError {
    match reason {
        Some("FieldValueForbidden") => FieldError {
            reason: "FieldValueForbidden",
            message: format!("{field}: Forbidden: {message}"),
            field,
        },
        Some("FieldValueRequired") => FieldError {
            reason: "FieldValueRequired",
            message: format!("{field}: Required value: {message}"),
            field,
        },
        Some("FieldValueDuplicate") => FieldError {
            reason: "FieldValueDuplicate",
            message: format!("{field}: Duplicate value: \"{node_type}\""),
            field,
        },
        _ => FieldError {
            reason: "FieldValueInvalid",
            message: format!("{field}: Invalid value: \"{node_type}\": {message}"),
            field,
        },
    }
}
