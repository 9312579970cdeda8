//! An in-process gateway started from YAML in a temporary directory, with admin and listeners on
//! ephemeral ports, for tests that drive reloads and read the admin API.

use gatehouse_gateway::{ConfigSource, Gateway};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// A running gateway and its config directory.
pub struct TestGateway {
    /// The gateway.
    pub gw: Arc<Gateway>,
    /// Admin address.
    pub admin: SocketAddr,
    /// The config directory (`config.yaml` inside).
    pub dir: tempfile::TempDir,
}

/// `apiVersion` line every test document needs.
pub const HEADER: &str = "apiVersion: gatehouse.dev/v1alpha1\n";

/// The documents most tests start with: a Gateway with the access log off and listener `web` on a
/// free port. Append `---` and the backends and routes under test.
pub const GATEWAY_AND_WEB: &str = r#"
kind: Gateway
metadata: {name: g}
spec: {accessLog: {enabled: false}}
---
kind: Listener
metadata: {name: web}
spec: {address: "127.0.0.1:0", protocol: HTTP}
"#;

impl TestGateway {
    /// Starts from `yaml` (documents separated by `---`; each gets the apiVersion line). Panics
    /// with every config error if it is invalid.
    pub async fn start(yaml: &str) -> TestGateway {
        Self::start_in(tempfile::tempdir().expect("temp dir"), yaml).await
    }

    /// As `start`, in a directory the test prepared (with certificates, say).
    pub async fn start_in(dir: tempfile::TempDir, yaml: &str) -> TestGateway {
        Self::try_start_on(dir, yaml, 1)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// As `start`, with each listener accepting on `workers` sockets (SO_REUSEPORT), as the binary
    /// does with several workers (all served by the test's runtime). The start error is returned.
    pub async fn try_start_workers(yaml: &str, workers: usize) -> Result<TestGateway, String> {
        Self::try_start_on(tempfile::tempdir().expect("temp dir"), yaml, workers).await
    }

    async fn try_start_on(
        dir: tempfile::TempDir,
        yaml: &str,
        workers: usize,
    ) -> Result<TestGateway, String> {
        std::fs::write(dir.path().join("config.yaml"), with_api_version(yaml))
            .expect("write config");
        let source = ConfigSource::Path(dir.path().to_path_buf());
        let config = source
            .load()
            .unwrap_or_else(|e| panic!("invalid test config:\n{e}"));
        let handles = vec![tokio::runtime::Handle::current(); workers.max(1)];
        let gw = Gateway::start_on(source, config, handles)
            .await
            .map_err(|e| e.to_string())?;
        let admin =
            gatehouse_gateway::admin::serve(gw.clone(), "127.0.0.1:0".parse().expect("addr"))
                .await
                .expect("admin bind");
        Ok(TestGateway { gw, admin, dir })
    }

    /// The bound address of listener `name` (in namespace `default`).
    pub async fn addr(&self, name: &str) -> SocketAddr {
        let addrs = self.gw.listener_addrs().await;
        *addrs
            .get(&format!("default/{name}"))
            .unwrap_or_else(|| panic!("no listener {name}: {addrs:?}"))
    }

    /// `http://addr` of listener `name`.
    pub async fn url(&self, name: &str) -> String {
        format!("http://{}", self.addr(name).await)
    }

    /// Path of the config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    /// Replaces the config file (does not reload).
    pub fn write(&self, yaml: &str) {
        // Write then rename, as config tools do, so a reader never sees half a file.
        let tmp = self.dir.path().join(".config.yaml.tmp");
        std::fs::write(&tmp, with_api_version(yaml)).expect("write config");
        std::fs::rename(&tmp, self.config_path()).expect("rename config");
    }
}

/// The smallest useful config: listener `web` on a free port (with `listener_extra` added to its
/// spec, e.g. `"timeouts: {idle: 400ms}"`), every request routed to one backend at `upstream`,
/// access log off.
pub fn one_route(upstream: std::net::SocketAddr, listener_extra: &str) -> String {
    let extra = if listener_extra.is_empty() {
        String::new()
    } else {
        format!(", {listener_extra}")
    };
    format!(
        "kind: Gateway\nmetadata: {{name: g}}\nspec: {{accessLog: {{enabled: false}}}}\n---\nkind: Listener\nmetadata: {{name: web}}\nspec: {{address: \"127.0.0.1:0\", protocol: HTTP{extra}}}\n---\nkind: Backend\nmetadata: {{name: up}}\nspec: {{endpoints: [\"{upstream}\"]}}\n---\nkind: Route\nmetadata: {{name: r}}\nspec:\n  rules:\n    - backends: [{{backend: up}}]\n"
    )
}

/// Adds the apiVersion line to every document of `yaml` that lacks one.
pub fn with_api_version(yaml: &str) -> String {
    yaml.split("\n---\n")
        .map(|doc| {
            if doc.contains("apiVersion:") {
                doc.to_string()
            } else {
                format!("{HEADER}{}", doc.trim_start_matches('\n'))
            }
        })
        .collect::<Vec<_>>()
        .join("\n---\n")
}
