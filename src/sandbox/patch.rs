//! Patch types kube-apiserver accepts: JSON merge patch (RFC 7386), JSON patch (RFC 6902),
//! strategic merge patch (built-in types) and server-side apply.
//! CONTRACT (owned by the sandbox-pure helper): signatures below are used by the server.

use serde_json::Value;

/// Why a patch could not be applied.
#[derive(Debug, Clone, PartialEq)]
pub enum PatchError {
    /// The patch document itself is malformed (kube-apiserver: 400 BadRequest).
    BadRequest(String),
    /// The patch is well-formed but cannot be applied, e.g. a failed JSON-patch `test`
    /// operation or a path that does not exist (kube-apiserver: 422 Unprocessable Entity).
    Unprocessable(String),
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(_target: &Value, _patch: &Value) -> Result<Value, PatchError> {
    todo!("sandbox-pure")
}

/// RFC 6902 JSON patch, including `test`.
pub fn json_patch(_target: &Value, _patch: &Value) -> Result<Value, PatchError> {
    todo!("sandbox-pure")
}

/// Strategic merge patch for the built-in kinds the sandbox serves (`kind` is e.g. "Secret").
pub fn strategic_merge_patch(
    _target: &Value,
    _patch: &Value,
    _kind: &str,
) -> Result<Value, PatchError> {
    todo!("sandbox-pure")
}

/// Field ownership of one object, per field manager, kept by the server beside the object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ManagedFields {}

/// A field that an apply would take from another manager.
#[derive(Clone, Debug, PartialEq)]
pub struct Conflict {
    /// The manager that owns the field now.
    pub manager: String,
    /// The field, as kube-apiserver names it, e.g. `.spec.name`.
    pub field: String,
}

/// Why a server-side apply failed.
#[derive(Clone, Debug, PartialEq)]
pub enum ApplyError {
    /// Fields owned by other managers would change and `force` was not set (409 Conflict).
    Conflicts(Vec<Conflict>),
    /// The applied configuration cannot be merged (422).
    Invalid(String),
}

/// Server-side apply of `applied` by `manager` onto `live` (None: the object does not exist yet).
/// `schema` is the openAPIV3Schema of a custom resource (for `x-kubernetes-list-type` /
/// `x-kubernetes-list-map-keys`), None for built-in kinds. Returns the merged object and updates
/// `owners`. Fields this manager applied before and no longer applies are removed.
pub fn server_side_apply(
    _live: Option<&Value>,
    _applied: &Value,
    _schema: Option<&Value>,
    _manager: &str,
    _force: bool,
    _owners: &mut ManagedFields,
) -> Result<Value, ApplyError> {
    todo!("sandbox-pure")
}

/// Records a non-apply write (create, update, patch) by `manager`: it takes ownership of the
/// fields it changed or set.
pub fn record_update(
    _old: Option<&Value>,
    _new: &Value,
    _manager: &str,
    _owners: &mut ManagedFields,
) {
    todo!("sandbox-pure")
}
