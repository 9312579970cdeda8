//! File paths in manifests: relative ones resolve against the manifest's own directory, whatever
//! the working directory of the process.

use gatehouse_config::{load_sources, LogTarget, SourceFile};
use std::path::PathBuf;

const CONFIG: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Gateway
metadata: {name: edge}
spec:
  accessLog: {path: logs/access.log}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Listener
metadata: {name: tls}
spec:
  address: "127.0.0.1:0"
  protocol: HTTPS
  tls: {certificates: [{certFile: certs/a.pem, keyFile: /etc/keys/a-key.pem}]}
"#;

fn load(name: &str, text: &str) -> gatehouse_config::Config {
    load_sources(&[SourceFile {
        name: name.into(),
        text: text.into(),
    }])
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_relative_access_log_path_resolves_like_certificate_paths() {
    let c = load("/srv/gw/edge.yaml", CONFIG);
    assert_eq!(
        c.gateway.access_log.target,
        LogTarget::File(PathBuf::from("/srv/gw/logs/access.log"))
    );
    let cert = &c.listeners[0].tls.as_ref().unwrap().certificates[0];
    assert_eq!(cert.cert_file, PathBuf::from("/srv/gw/certs/a.pem"));
    assert_eq!(cert.key_file, PathBuf::from("/etc/keys/a-key.pem"));
}

#[test]
fn absolute_and_standard_stream_targets_stay_as_written() {
    for (written, want) in [
        ("/var/log/gw.log", LogTarget::File("/var/log/gw.log".into())),
        ("stdout", LogTarget::Stdout),
        ("stderr", LogTarget::Stderr),
    ] {
        let c = load(
            "/srv/gw/edge.yaml",
            &CONFIG.replace("logs/access.log", written),
        );
        assert_eq!(c.gateway.access_log.target, want);
    }
}
