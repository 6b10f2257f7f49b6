//! An in-memory Kubernetes API server: the cluster channel-operator's tests and
//! `channel-operator dev` run against. The production build of the operator does not include it.
//!
//! It serves namespaces, core/v1 secrets and events, events.k8s.io/v1 events,
//! coordination.k8s.io/v1 leases, CustomResourceDefinitions and the custom resources of every
//! installed CRD over the Kubernetes REST API on 127.0.0.1, with kube-apiserver's semantics for
//! resourceVersions, patches, watches, finalizers, garbage collection and validation. The
//! package's README.md says what it does and does not emulate.
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! use kube_sandbox::Sandbox;
//! use kube::CustomResourceExt;
//! let sb = Sandbox::start(0).await?;
//! sb.install_crd(&channel_operator::crd::Channel::crd()).await?;
//! let client = sb.client();
//! # let _ = client; Ok(()) }
//! ```

mod authn;
mod discovery;
mod faults;
mod kubectl;
mod net;
mod partition;
mod patch;
mod protobuf;
mod rbac;
mod resources;
mod schema;
mod selector;
mod server;
mod status;
mod store;
mod table;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

pub use faults::{AuditEvent, Faults};
pub use kubectl::KubectlOutput;
use server::Shared;
pub use store::DEFAULT_WATCH_WINDOW;

/// A running sandbox API server. Dropping it (or [`Sandbox::shutdown`]) stops serving.
pub struct Sandbox {
    shared: Arc<Shared>,
}

impl Sandbox {
    /// Starts the in-memory API server on 127.0.0.1:port (0 = the OS picks).
    pub async fn start(port: u16) -> anyhow::Result<Sandbox> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| format!("binding 127.0.0.1:{port}"))?;
        Self::serve(listener)
    }

    /// Serves on an already bound listener (`channel-operator dev --sandbox-addr`).
    pub fn serve(listener: tokio::net::TcpListener) -> anyhow::Result<Sandbox> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            store: Mutex::new(store::Store::new(resources::builtins())),
            faults: Mutex::default(),
            addr,
            serving: Mutex::default(),
            auth: Default::default(),
            partitions: Default::default(),
        });
        net::serve(&shared, listener);
        Ok(Sandbox { shared })
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// "http://127.0.0.1:PORT"
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// A `kube::Client` talking to the sandbox over HTTP (default namespace "default") as the
    /// cluster admin (group `system:masters`), like a cluster creator's kubeconfig.
    pub fn client(&self) -> kube::Client {
        let uri: http::Uri = self.url().parse().expect("a valid URL");
        let config = kube::Config::new(uri);
        kube::Client::try_from(config).expect("a client for a plain-HTTP URL")
    }

    /// A client whose every request is made as `user` with `groups` (plus
    /// `system:authenticated`) and authorized by the RBAC objects stored in the sandbox.
    pub fn client_as(&self, user: &str, groups: &[&str]) -> kube::Client {
        self.client_with_token(&self.token_for(user, groups))
    }

    /// A client acting as the ServiceAccount `namespace/name` (user
    /// `system:serviceaccount:<ns>:<name>`, groups `system:serviceaccounts`,
    /// `system:serviceaccounts:<ns>`, `system:authenticated`), as a pod with its token would.
    /// Its requests are answered 401 Unauthorized while that ServiceAccount does not exist.
    pub fn service_account_client(&self, namespace: &str, name: &str) -> kube::Client {
        let token = self
            .shared
            .auth
            .issue(authn::UserInfo::service_account(namespace, name));
        self.client_with_token(&token)
    }

    /// A bearer token for `user` and `groups` (for `kubectl --token` or raw HTTP requests).
    pub fn token_for(&self, user: &str, groups: &[&str]) -> String {
        self.shared.auth.issue(authn::UserInfo::new(user, groups))
    }

    /// The message of every 403 Forbidden the sandbox's authorization has answered so far (a
    /// test of least privilege asserts it stays empty).
    pub fn denials(&self) -> Vec<String> {
        self.shared.auth.denials()
    }

    fn client_with_token(&self, token: &str) -> kube::Client {
        let uri: http::Uri = self.url().parse().expect("a valid URL");
        let mut config = kube::Config::new(uri);
        config.auth_info = serde_json::from_value(serde_json::json!({ "token": token }))
            .expect("an AuthInfo with a token");
        kube::Client::try_from(config).expect("a client for a plain-HTTP URL")
    }

    /// Writes a kubeconfig for the sandbox: cluster, user (no credentials: the cluster admin,
    /// group `system:masters`) and context `channel-operator-sandbox`, set as current-context.
    pub fn write_kubeconfig(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let name = "channel-operator-sandbox";
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: {name}\n  cluster:\n    server: {url}\nusers:\n- name: {name}\n  user: {{}}\ncontexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {name}\n    namespace: default\ncurrent-context: {name}\npreferences: {{}}\n",
            url = self.url()
        );
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }

    /// Writes a kubeconfig like [`Sandbox::write_kubeconfig`] whose user authenticates as `user`
    /// with `groups` (a bearer token), so that a process using it can be told apart, e.g. cut off
    /// by [`Faults::partition`].
    pub fn write_kubeconfig_as(
        &self,
        path: &Path,
        user: &str,
        groups: &[&str],
    ) -> anyhow::Result<()> {
        self.write_kubeconfig(path)?;
        let token = self.token_for(user, groups);
        let text = std::fs::read_to_string(path)?
            .replace("  user: {}\n", &format!("  user:\n    token: {token}\n"));
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }

    /// The fault-injection handle.
    pub fn faults(&self) -> Faults {
        Faults {
            shared: self.shared.clone(),
        }
    }

    /// Creates the CRD and returns once its resources are served.
    pub async fn install_crd(&self, crd: &CustomResourceDefinition) -> anyhow::Result<()> {
        let api: kube::Api<CustomResourceDefinition> = kube::Api::all(self.client());
        api.create(&Default::default(), crd)
            .await
            .context("creating the CRD")?;
        // Served as soon as the create returns; make sure discovery agrees.
        let spec = &crd.spec;
        let version = spec
            .versions
            .iter()
            .find(|v| v.served)
            .map(|v| v.name.clone())
            .context("the CRD serves no version")?;
        let path = format!("/apis/{}/{}", spec.group, version);
        let st = self.shared.lock();
        anyhow::ensure!(
            discovery::resource_list(&st, &spec.group, &version).is_some(),
            "{path} is not served after creating the CRD"
        );
        Ok(())
    }

    /// Stops serving: open watches end and the port is released.
    pub async fn shutdown(mut self) {
        self.stop().await;
    }

    async fn stop(&mut self) {
        self.shared.lock().watch_cancel.cancel();
        if let Some(task) = net::stop(&self.shared) {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.shared.lock().watch_cancel.cancel();
        net::stop(&self.shared);
    }
}
