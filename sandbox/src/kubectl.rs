//! Running the real `kubectl` against the sandbox, for tests.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;

/// What a kubectl run printed.
#[derive(Debug)]
pub struct KubectlOutput {
    /// The exit code (`kubectl auth can-i` exits 1 for "no").
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl super::Sandbox {
    /// Runs `kubectl ARGS` as the cluster admin, with a kubeconfig and cache in `dir` (written on
    /// the first run), for at most 30 seconds.
    pub async fn kubectl(&self, dir: &Path, args: &[&str]) -> anyhow::Result<KubectlOutput> {
        let kubeconfig = dir.join("kubeconfig");
        if !kubeconfig.exists() {
            self.write_kubeconfig(&kubeconfig)?;
        }
        let out = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::process::Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .arg("--cache-dir")
                .arg(dir.join("cache"))
                .args(args)
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .with_context(|| format!("kubectl {args:?} timed out"))?
        .context("running kubectl")?;
        Ok(KubectlOutput {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}
