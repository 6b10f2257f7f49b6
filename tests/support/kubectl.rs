//! `kubectl get channels` as a user runs it against a sandbox's kubeconfig, for the tests that
//! check what kubectl shows of a process they started.

use std::path::Path;

/// The table `kubectl get channels` prints (default namespace), failing the test if kubectl
/// fails. Async: the sandbox answering kubectl may run on the caller's runtime.
pub async fn get_channels(kubeconfig: &Path, cache_dir: &Path) -> String {
    let out = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache_dir)
        .args(["get", "channels"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
