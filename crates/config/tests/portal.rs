//! `Gateway.spec.portal`: the two ways to mount the developer portal, and every mistake reported
//! with its position and field path.

use gatehouse_config::{load_sources, PortalMount, SourceFile};

fn load(yaml: &str) -> Result<gatehouse_config::Config, String> {
    load_sources(&[SourceFile {
        name: "gw.yaml".into(),
        text: yaml.into(),
    }])
    .map_err(|e| e.to_string())
}

const LISTENER: &str = r#"
---
apiVersion: gatehouse.dev/v1alpha1
kind: Listener
metadata: {name: public}
spec: {address: 127.0.0.1:8080, protocol: HTTP}
"#;

fn gateway(portal: &str) -> String {
    format!(
        "apiVersion: gatehouse.dev/v1alpha1\nkind: Gateway\nmetadata: {{name: edge}}\nspec:\n  portal: {portal}\n{LISTENER}"
    )
}

#[test]
fn address_and_path_prefix_mounts_load_and_round_trip() {
    let c = load(&gateway(
        r#"{address: "127.0.0.1:8081", title: "Example APIs"}"#,
    ))
    .unwrap();
    let p = c.gateway.portal.clone().unwrap();
    assert_eq!(
        p.mount,
        PortalMount::Address("127.0.0.1:8081".parse().unwrap())
    );
    assert_eq!(p.title, "Example APIs");
    let manifests = serde_json::to_string(&c.to_manifests()).unwrap();
    assert!(manifests.contains(r#""portal":{"address":"127.0.0.1:8081","title":"Example APIs"}"#));

    let c = load(&gateway("{pathPrefix: /portal/}")).unwrap();
    let p = c.gateway.portal.unwrap();
    assert_eq!(
        p.mount,
        PortalMount::PathPrefix("/portal".into()),
        "trailing slash dropped"
    );
    assert_eq!(p.title, "API portal", "default title");
}

#[test]
fn no_portal_section_means_no_portal() {
    let c = load(LISTENER).unwrap();
    assert!(c.gateway.portal.is_none());
}

#[test]
fn both_or_neither_mount_is_an_error_with_position() {
    let e = load(&gateway("{address: 127.0.0.1:8081, pathPrefix: /portal}")).unwrap_err();
    assert!(
        e.contains("gw.yaml:5:")
            && e.contains("spec.portal.pathPrefix: set either `address`")
            && e.contains("not both"),
        "{e}"
    );
    let e = load(&gateway("{title: Docs}")).unwrap_err();
    assert!(
        e.contains("gw.yaml:5:") && e.contains("spec.portal: the portal needs `address`"),
        "{e}"
    );
}

#[test]
fn bad_values_are_all_reported_at_once() {
    let yaml = format!(
        "{}\n---\n{}",
        "apiVersion: gatehouse.dev/v1alpha1\nkind: Gateway\nmetadata: {name: edge}\nspec:\n  portal: {pathPrefix: /, title: \"\"}\n  drainTimeout: 5",
        "apiVersion: gatehouse.dev/v1alpha1\nkind: Backend\nmetadata: {name: b}\nspec: {endpoints: [\"127.0.0.1:1\"]}"
    );
    let e = load(&yaml).unwrap_err();
    assert!(
        e.contains("spec.portal.title: title must not be empty"),
        "{e}"
    );
    assert!(
        e.contains("spec.drainTimeout"),
        "other errors still reported: {e}"
    );
    for bad in ["/", "portal", "/a//b", "/a/../b", "/a b", "/<x>"] {
        let e = load(&gateway(&format!("{{pathPrefix: \"{bad}\"}}"))).unwrap_err();
        assert!(
            e.contains("spec.portal.pathPrefix: invalid path prefix"),
            "{bad}: {e}"
        );
    }
    let e = load(&gateway("{address: nowhere}")).unwrap_err();
    assert!(
        e.contains("spec.portal.address: invalid address `nowhere`"),
        "{e}"
    );
}

#[test]
fn unknown_field_gets_did_you_mean() {
    let e = load(&gateway("{adress: 127.0.0.1:8081}")).unwrap_err();
    assert!(e.contains("adress") && e.contains("address"), "{e}");
}

#[test]
fn address_held_by_a_listener_or_the_admin_api_is_an_error() {
    let e = load(&gateway("{address: 127.0.0.1:8080}")).unwrap_err();
    assert!(
        e.contains("spec.portal.address: address 127.0.0.1:8080 is already used by Listener default/public"),
        "{e}"
    );
    let e = load(&gateway("{address: 127.0.0.1:9901}")).unwrap_err();
    assert!(e.contains("already used by the admin API"), "{e}");
}
