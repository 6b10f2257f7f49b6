//! Label and field selectors as kube-apiserver parses and matches them.
//! CONTRACT (owned by the sandbox-pure helper): signatures below are used by the server.

use serde_json::Value;

/// A parsed `labelSelector`: `=`, `==`, `!=`, `in`, `notin`, exists (`key`), not exists (`!key`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabelSelector {}

impl LabelSelector {
    /// Parses the query-parameter form. Errors carry kube-apiserver's wording where practical.
    pub fn parse(_s: &str) -> Result<Self, String> {
        todo!("sandbox-pure")
    }

    /// Whether an object's `metadata.labels` (an object, or null/absent) matches.
    pub fn matches(&self, _labels: Option<&Value>) -> bool {
        todo!("sandbox-pure")
    }
}

/// A parsed `fieldSelector`: comma-separated `path=value`, `path==value`, `path!=value`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldSelector {}

impl FieldSelector {
    /// Parses the query-parameter form.
    pub fn parse(_s: &str) -> Result<Self, String> {
        todo!("sandbox-pure")
    }

    /// The field paths this selector uses (e.g. `metadata.name`), so the server can reject
    /// unsupported ones with `field label not supported: <path>`.
    pub fn fields(&self) -> Vec<String> {
        todo!("sandbox-pure")
    }

    /// Whether an object matches; a path is looked up as dot-separated keys in the object.
    pub fn matches(&self, _object: &Value) -> bool {
        todo!("sandbox-pure")
    }
}
