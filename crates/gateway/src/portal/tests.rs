//! The portal's model and pages from a hand-written OpenAPI document: grouping by host and
//! version, `$ref`s, authentication in words, examples, and escaping of every document string.

use super::catalogue::Catalogue;
use super::pages::{self, Shell};
use serde_json::json;

fn doc() -> serde_json::Value {
    json!({
        "openapi": "3.1.0",
        "paths": {
            "/v1/pets/{petId}": {
                "parameters": [{"name": "petId", "in": "path", "required": true, "schema": {"type": "string", "example": "7"}}],
                "get": {
                    "summary": "Show a pet <script>alert(1)</script>",
                    "servers": [{"url": "https://api.example.com"}, {"url": "http://{subdomain}.example.org", "variables": {"subdomain": {"default": "www"}}}],
                    "parameters": [{"$ref": "#/components/parameters/Verbose"}],
                    "security": [{"key": []}, {"jwt": ["pets.read"]}],
                    "x-gatehouse-timeout": "5s",
                    "x-gatehouse-rate-limit": {"requests": 100, "per": "1m", "burst": 20, "key": {"header": "x-user-id"}},
                    "responses": {"200": {"description": "A pet", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}}}}
                }
            },
            "/pets": {
                "post": {
                    "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}, "example": {"name": "\"</textarea><b>"}}}},
                    "responses": {"201": {"description": "Created"}}
                }
            }
        },
        "components": {
            "parameters": {"Verbose": {"name": "verbose", "in": "query", "schema": {"type": "boolean"}}},
            "schemas": {"Pet": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string"}, "tag": {"type": "string", "enum": ["cat", "dog"]}, "owner": {"$ref": "#/components/schemas/Pet"}}}},
            "securitySchemes": {
                "key": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                "jwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            }
        }
    })
}

#[test]
fn operations_are_grouped_by_host_and_version() {
    let cat = Catalogue::from_openapi(&doc());
    let names: Vec<(String, String, String)> = cat
        .groups
        .iter()
        .map(|g| (g.host.clone(), g.version.clone(), g.slug.clone()))
        .collect();
    assert_eq!(
        names,
        [
            ("*.example.org".into(), "v1".into(), "example-org-v1".into()),
            (
                "api.example.com".into(),
                "v1".into(),
                "api-example-com-v1".into()
            ),
            (
                "any host".into(),
                "unversioned".into(),
                "any-host-unversioned".into()
            ),
        ]
    );
    let op = &cat.groups[1].ops[0];
    assert_eq!(
        (op.method.as_str(), op.path.as_str()),
        ("GET", "/v1/pets/{petId}")
    );
    let params: Vec<_> = op
        .params
        .iter()
        .map(|p| (p.name.as_str(), p.location.as_str(), p.required))
        .collect();
    assert_eq!(
        params,
        [("verbose", "query", false), ("petId", "path", true)]
    );
    assert_eq!(op.params[1].example.as_deref(), Some("7"));
    assert_eq!(
        op.auth,
        [
            vec!["API key in header `x-api-key`".to_string()],
            vec!["JWT bearer token in the Authorization header with scopes pets.read".to_string()]
        ]
    );
    assert!(op.limits.contains(&(
        "rate-limit".into(),
        "100 requests per 1m (burst 20), per header x-user-id".into()
    )));
    assert!(op.limits.contains(&("timeout".into(), "5s".into())));
    // A recursive schema is resolved to a bounded depth, and an example made from it.
    let body = op.responses[0].2.as_ref().unwrap();
    assert!(
        body.generated
            && body
                .example
                .as_deref()
                .unwrap()
                .contains("\"tag\": \"cat\"")
    );
    let post = &cat.groups[2].ops[0];
    assert!(
        !post.body.as_ref().unwrap().generated,
        "the written example wins"
    );
    assert!(post.auth.is_empty());
}

#[test]
fn every_document_string_is_escaped_in_pages() {
    let cat = Catalogue::from_openapi(&doc());
    let shell = Shell {
        title: "A & B",
        base: "/portal",
        try_url: "",
        version: "abc",
    };
    let pages: Vec<String> = cat.groups.iter().map(|g| pages::group(&shell, g)).collect();
    let all = pages.join("\n") + &pages::index(&shell, &cat);
    assert!(!all.contains("<script>alert"), "summary escaped");
    assert!(all.contains("Show a pet &lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(
        !all.contains("</textarea><b>"),
        "an example cannot close the try-it textarea"
    );
    assert!(all.contains("&lt;/textarea&gt;&lt;b&gt;"));
    // Labels point at their fields; ids are unique on a page.
    for page in &pages {
        let ids: Vec<&str> = page
            .split(" id=\"")
            .skip(1)
            .filter_map(|s| s.split('"').next())
            .collect();
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(ids.len(), unique.len(), "duplicate ids");
        for target in page
            .split("<label for=\"")
            .skip(1)
            .filter_map(|s| s.split('"').next())
        {
            assert!(ids.contains(&target), "label for missing id {target}");
        }
    }
}

#[test]
fn empty_or_malformed_documents_render_an_empty_catalogue() {
    for d in [
        json!({}),
        json!({"paths": []}),
        json!({"paths": {"/x": {"get": 5}}}),
    ] {
        let cat = Catalogue::from_openapi(&d);
        assert!(cat.groups.is_empty());
        let shell = Shell {
            title: "T",
            base: "",
            try_url: "/try",
            version: "",
        };
        assert!(pages::index(&shell, &cat).contains("No API is published yet"));
    }
}
