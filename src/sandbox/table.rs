//! `meta.k8s.io/v1` Table responses (what `kubectl get` asks for) and the JSONPath subset that
//! additionalPrinterColumns use.
//! CONTRACT (owned by the sandbox-pure helper): signatures below are used by the server.

use serde_json::Value;

/// One column of a Table.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    /// Header, e.g. "Name".
    pub name: String,
    /// OpenAPI type: string, integer, number, boolean, date.
    pub type_: String,
    /// OpenAPI format, e.g. "name" for the Name column.
    pub format: String,
    /// Description shown by `kubectl explain`-like tools.
    pub description: String,
    /// 0 shows by default; higher shows with `-o wide`.
    pub priority: i32,
    /// JSONPath of the value, e.g. `.spec.source`.
    pub json_path: String,
}

/// Evaluates a kubectl-style JSONPath (`.a.b`, `[n]`, `[*]`, `[?(@.k=="v")]`) against an object.
pub fn jsonpath(_object: &Value, _path: &str) -> Result<Vec<Value>, String> {
    todo!("sandbox-pure")
}

/// Columns for a built-in resource (plural name, e.g. "secrets") as kube-apiserver prints them.
pub fn builtin_columns(_resource: &str) -> Vec<Column> {
    todo!("sandbox-pure")
}

/// Columns for a custom resource: Name, then its additionalPrinterColumns (None: Name and Age).
pub fn custom_columns(_additional_printer_columns: Option<&Value>) -> Vec<Column> {
    todo!("sandbox-pure")
}

/// Builds a Table of `objects` (full objects, as stored). `include_object` is the
/// `includeObject` query parameter (None, Metadata default, Object). `list_metadata` is the
/// list's resourceVersion/continue.
pub fn table(
    _columns: &[Column],
    _objects: &[Value],
    _include_object: &str,
    _list_metadata: Value,
) -> Value {
    todo!("sandbox-pure")
}
