//! `gatehouse openapi`: well-known public documents (the OpenAPI Initiative's petstore-expanded,
//! OpenAPI 3.0.0, and Swagger's "Petstore - OpenAPI 3.0" of swagger-api/swagger-petstore, 3.0.4,
//! 19 operations) round tripped through a rule: every operation comes out at the path clients
//! use, with its parameters, responses and components, as OpenAPI 3.1; plain rules are described
//! from their match.

mod common;

use gatehouse_contract::openapi_document;
use serde_json::Value;
use std::collections::BTreeSet;

const PETSTORE: &str = include_str!("fixtures/petstore-expanded.yaml");
const PETSTORE_V3: &str = include_str!("fixtures/swagger-petstore-v3.yaml");

/// The operations of a document as (path, method, operationId).
fn operations(doc: &Value) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if [
                "get", "put", "post", "delete", "patch", "head", "options", "trace",
            ]
            .contains(&method.as_str())
            {
                let id = op["operationId"].as_str().unwrap_or("").to_string();
                out.insert((path.clone(), method.clone(), id));
            }
        }
    }
    out
}

/// A YAML fixture as JSON, read the way the config crate reads it (through a config).
fn source_document(file: &str, text: &str) -> Value {
    let route = format!(
        "kind: Route\nmetadata: {{name: src}}\nspec:\n  rules:\n    - backends: [{{backend: a}}]\n      openapi: {{file: {file}}}\n"
    );
    let (_d, config) = common::config(&route, &[(file, text)]);
    (*config.routes[0].rules[0].openapi.as_ref().unwrap().document).clone()
}

fn route(prefix: &str, rewrite: &str, file: &str) -> String {
    format!(
        "kind: Route\nmetadata: {{name: pets}}\nspec:\n  hosts: [api.example.com]\n  rules:\n    - match: {{path: {{prefix: {prefix}}}}}\n      rewrite: {{pathPrefix: {rewrite}}}\n      backends: [{{backend: a}}]\n      timeout: 5s\n      openapi: {{file: {file}}}\n"
    )
}

#[test]
fn petstore_expanded_comes_out_under_the_prefix_clients_use() {
    let src = source_document("petstore.yaml", PETSTORE);
    let (_d, config) = common::config(
        &route("/v1", "/", "petstore.yaml"),
        &[("petstore.yaml", PETSTORE)],
    );
    let out = openapi_document(&config).unwrap();
    assert_eq!(out["openapi"], "3.1.0");
    let want: BTreeSet<_> = operations(&src)
        .into_iter()
        .map(|(p, m, id)| (format!("/v1{p}"), m, id))
        .collect();
    assert_eq!(operations(&out), want);
    assert_eq!(want.len(), 4);
    let get = &out["paths"]["/v1/pets/{id}"]["get"];
    assert_eq!(
        get["parameters"],
        src["paths"]["/pets/{id}"]["get"]["parameters"]
    );
    assert_eq!(
        get["responses"],
        src["paths"]["/pets/{id}"]["get"]["responses"]
    );
    assert_eq!(get["servers"][0]["url"], "http://api.example.com");
    assert_eq!(get["x-gatehouse-timeout"], "5s");
    assert_eq!(out["components"]["schemas"], src["components"]["schemas"]);
    assert_eq!(out["servers"][0]["url"], "http://api.example.com");
}

#[test]
fn swagger_petstore_v3_round_trips_with_every_operation_and_component() {
    let src = source_document("petstore3.yaml", PETSTORE_V3);
    let (_d, config) = common::config(
        &route("/", "/", "petstore3.yaml"),
        &[("petstore3.yaml", PETSTORE_V3)],
    );
    let out = openapi_document(&config).unwrap();
    assert_eq!(operations(&out), operations(&src));
    assert_eq!(operations(&out).len(), 19);
    for section in ["schemas", "requestBodies", "securitySchemes"] {
        assert_eq!(
            out["components"][section], src["components"][section],
            "{section}"
        );
    }
    let find = &out["paths"]["/pet/findByStatus"]["get"];
    assert_eq!(
        find["security"],
        src["paths"]["/pet/findByStatus"]["get"]["security"]
    );
}

#[test]
fn the_emitted_document_reads_back_as_a_rule_document_and_gives_the_same_operations() {
    let (_d, config) = common::config(
        &route("/v1", "/", "petstore.yaml"),
        &[("petstore.yaml", PETSTORE)],
    );
    let first = openapi_document(&config).unwrap();
    let json = serde_json::to_string_pretty(&first).unwrap();
    // The 3.1 output, served by a rule without a rewrite, must come out the same again.
    let again = "kind: Route\nmetadata: {name: pets}\nspec:\n  hosts: [api.example.com]\n  rules:\n    - match: {path: {prefix: /v1}}\n      backends: [{backend: a}]\n      openapi: {file: out.json}\n";
    let (_d2, config2) = common::config(again, &[("out.json", &json)]);
    let second = openapi_document(&config2).unwrap();
    assert_eq!(operations(&second), operations(&first));
    assert_eq!(second["components"], first["components"]);
}

#[test]
fn two_documents_with_clashing_component_names_keep_both() {
    let routes = format!(
        "{}---\nkind: Route\nmetadata: {{name: store}}\nspec:\n  hosts: [api.example.com]\n  rules:\n    - match: {{path: {{prefix: /v3}}}}\n      rewrite: {{pathPrefix: /}}\n      backends: [{{backend: b}}]\n      openapi: {{file: petstore3.yaml}}\n",
        route("/v1", "/", "petstore.yaml")
    );
    let (_d, config) = common::config(
        &routes,
        &[("petstore.yaml", PETSTORE), ("petstore3.yaml", PETSTORE_V3)],
    );
    let out = openapi_document(&config).unwrap();
    let schemas = out["components"]["schemas"].as_object().unwrap();
    // Both define `Pet` differently: the second is renamed and its references follow.
    assert!(schemas.contains_key("Pet") && schemas.contains_key("store_Pet"));
    let r = &out["paths"]["/v3/pet/{petId}"]["get"]["responses"]["200"]["content"]
        ["application/json"]["schema"]["$ref"];
    assert_eq!(r, "#/components/schemas/store_Pet");
    assert_eq!(operations(&out).len(), 4 + 19);
}

#[test]
fn plain_rules_are_described_from_their_match() {
    let routes = r#"
kind: Route
metadata: {name: plain}
spec:
  hosts: ["*.example.com"]
  rules:
    - match:
        path: {exact: /v1/health}
        methods: [GET]
        headers: [{name: x-env, value: prod}]
      directResponse: {status: 200, body: ok}
    - match: {path: {prefix: /v1/files}}
      backends: [{backend: a}]
    - match: {path: {regex: "/v1/items/[0-9]+"}}
      backends: [{backend: b}]
"#;
    let (_d, config) = common::config(routes, &[]);
    let out = openapi_document(&config).unwrap();
    let health = &out["paths"]["/v1/health"];
    assert_eq!(health.as_object().unwrap().len(), 1, "{health}");
    assert_eq!(health["get"]["parameters"][0]["name"], "x-env");
    assert_eq!(health["get"]["parameters"][0]["schema"]["enum"][0], "prod");
    assert_eq!(
        health["get"]["responses"]["200"]["content"]["text/plain; charset=utf-8"]["example"],
        "ok"
    );
    let files = &out["paths"]["/v1/files"];
    assert_eq!(files["post"]["x-gatehouse-match"], "prefix");
    assert_eq!(
        files["get"]["servers"][0]["url"],
        "http://{subdomain}.example.com"
    );
    assert_eq!(
        out["x-gatehouse-regex-rules"][0]["x-gatehouse-match"]["regex"],
        "/v1/items/[0-9]+"
    );
}
