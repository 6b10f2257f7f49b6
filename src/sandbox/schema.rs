//! Structural-schema handling of custom resources as kube-apiserver does it: pruning of unknown
//! fields, defaulting, OpenAPI v3 validation and CEL rules (`x-kubernetes-validations`).
//! CONTRACT (owned by the sandbox-pure helper): signatures below are used by the server.

use serde_json::Value;

/// One invalid field, as a `StatusCause` of a 422 Invalid Status.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    /// kube-apiserver's cause reason: FieldValueInvalid, FieldValueRequired,
    /// FieldValueNotSupported, FieldValueTypeInvalid, FieldValueTooLong, ...
    pub reason: &'static str,
    /// The field path, e.g. `spec.name`.
    pub field: String,
    /// The whole message, e.g. `spec.name: Invalid value: "": spec.name in body should be at least 1 chars long`.
    pub message: String,
}

/// What schema processing did to an object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SchemaOutcome {
    /// Paths of unknown fields that were pruned, e.g. `.spec.foo` (a Strict field validation
    /// request fails on these; Warn returns them as warnings).
    pub pruned: Vec<String>,
    /// Validation errors; non-empty means 422 Invalid.
    pub errors: Vec<FieldError>,
}

/// Prunes unknown fields, applies defaults, then validates `object` against `schema` (the CRD
/// version's `openAPIV3Schema`), including CEL rules; `old` is the stored object on updates (for
/// transition rules such as `self == oldSelf`). `apiVersion`, `kind` and `metadata` are left to the
/// server.
pub fn prune_default_validate(
    _schema: &Value,
    _object: &mut Value,
    _old: Option<&Value>,
) -> SchemaOutcome {
    todo!("sandbox-pure")
}
