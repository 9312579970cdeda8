//! Request validation against a rule's OpenAPI document: the operation is found by method and the
//! path clients use, then path and query parameters and the JSON body are checked against their
//! schemas; every refusal is one precise message for a 400. Off unless `validateRequests: true`.

mod common;

use gatehouse_contract::RequestValidator;

const PETSTORE: &str = include_str!("fixtures/petstore-expanded.yaml");

const TASKS: &str = r##"
openapi: 3.1.0
info: {title: Tasks, version: "1"}
paths:
  /tasks:
    get:
      parameters:
        - {name: state, in: query, schema: {type: string, enum: [open, done]}}
        - {name: limit, in: query, required: true, schema: {type: integer, minimum: 1, maximum: 100}}
        - {name: tag, in: query, schema: {type: array, items: {type: string, pattern: "^[a-z]+$"}}}
      responses: {"200": {description: ok}}
    post:
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: "#/components/schemas/NewTask"}
      responses: {"201": {description: created}}
  /tasks/mine:
    get:
      responses: {"200": {description: ok}}
  /tasks/{id}:
    get:
      parameters:
        - {name: id, in: path, required: true, schema: {type: integer}}
      responses: {"200": {description: ok}}
components:
  schemas:
    NewTask:
      type: object
      additionalProperties: false
      required: [title]
      properties:
        title: {type: string, minLength: 1, maxLength: 20}
        priority: {type: [string, "null"], enum: [low, high, null]}
        owner:
          type: object
          required: [id]
          properties: {id: {type: integer}}
        tags: {type: array, maxItems: 2, items: {type: string}}
"##;

fn validator(doc: &str, validate: bool) -> Option<RequestValidator> {
    let routes = format!(
        "kind: Route\nmetadata: {{name: tasks}}\nspec:\n  rules:\n    - match: {{path: {{prefix: /v1}}}}\n      rewrite: {{pathPrefix: /}}\n      backends: [{{backend: a}}]\n      openapi: {{file: doc.yaml, validateRequests: {validate}}}\n"
    );
    let (_d, config) = common::config(&routes, &[("doc.yaml", doc)]);
    let route = &config.routes[0];
    RequestValidator::for_rule(route, &route.rules[0]).map(|v| v.unwrap())
}

const JSON: Option<&str> = Some("application/json");

#[test]
fn no_validator_unless_asked_for() {
    assert!(validator(TASKS, false).is_none());
    assert!(validator(TASKS, true).is_some());
}

#[test]
fn operations_are_found_by_method_and_the_client_path() {
    let v = validator(TASKS, true).unwrap();
    assert_eq!(v.validate("GET", "/v1/tasks/7", None, None, None), Ok(()));
    // A literal segment wins over a template.
    assert_eq!(
        v.validate("GET", "/v1/tasks/mine", None, None, None),
        Ok(())
    );
    assert_eq!(
        v.validate("DELETE", "/v1/tasks/7", None, None, None),
        Err("method DELETE is not an operation of `/v1/tasks/7` in the API description".into())
    );
    assert_eq!(
        v.validate("GET", "/v1/nothing", None, None, None),
        Err("`/v1/nothing` is not a path of the API description".into())
    );
}

#[test]
fn path_and_query_parameters_are_checked_against_their_schemas() {
    let v = validator(TASKS, true).unwrap();
    let get = |path: &str, q: &str| v.validate("GET", path, Some(q), None, None);
    assert_eq!(
        get("/v1/tasks/x7", ""),
        Err("path parameter `id`: expected integer, found a string".into())
    );
    assert_eq!(get("/v1/tasks", "state=open&limit=10&tag=a&tag=b"), Ok(()));
    assert_eq!(
        get("/v1/tasks", "state=open"),
        Err("query parameter `limit` is required".into())
    );
    assert_eq!(
        get("/v1/tasks", "limit=0"),
        Err("query parameter `limit`: below the minimum 1".into())
    );
    assert_eq!(
        get("/v1/tasks", "limit=ten"),
        Err("query parameter `limit`: expected integer, found a string".into())
    );
    assert_eq!(
        get("/v1/tasks", "limit=5&state=archived"),
        Err("query parameter `state`: \"archived\" is not one of \"open\", \"done\"".into())
    );
    assert_eq!(
        get("/v1/tasks", "limit=5&tag=ok&tag=NO"),
        Err("query parameter `tag`[1]: does not match the pattern `^[a-z]+$`".into())
    );
}

#[test]
fn json_bodies_are_checked_with_the_failing_field_named() {
    let v = validator(TASKS, true).unwrap();
    let post = |body: &str| v.validate("POST", "/v1/tasks", None, JSON, Some(body.as_bytes()));
    assert_eq!(
        post(r#"{"title": "write", "priority": null, "owner": {"id": 3}, "tags": ["a"]}"#),
        Ok(())
    );
    assert_eq!(
        post(r#"{"priority": "low"}"#),
        Err("request body.title: required field missing".into())
    );
    assert_eq!(
        post(r#"{"title": 7}"#),
        Err("request body.title: expected string, found a number".into())
    );
    assert_eq!(
        post(r#"{"title": ""}"#),
        Err("request body.title: shorter than 1 characters".into())
    );
    assert_eq!(
        post(r#"{"title": "a", "colour": "red"}"#),
        Err("request body.colour: unknown field".into())
    );
    assert_eq!(
        post(r#"{"title": "a", "owner": {}}"#),
        Err("request body.owner.id: required field missing".into())
    );
    assert_eq!(
        post(r#"{"title": "a", "tags": ["a", "b", "c"]}"#),
        Err("request body.tags: more than 2 items".into())
    );
    assert_eq!(
        post(r#"{"title": "a", "priority": "urgent"}"#),
        Err("request body.priority: \"urgent\" is not one of \"low\", \"high\", null".into())
    );
    assert!(post("{\"title\": ")
        .unwrap_err()
        .starts_with("the request body is not valid JSON: "));
    assert_eq!(
        v.validate("POST", "/v1/tasks", None, JSON, None),
        Err("a request body is required".into())
    );
    assert_eq!(
        v.validate("POST", "/v1/tasks", None, Some("text/plain"), Some(b"hi")),
        Err("content type `text/plain` is not accepted; expected application/json".into())
    );
    // Parameters on the content type do not matter.
    let ct = Some("application/json; charset=utf-8");
    assert_eq!(
        v.validate("POST", "/v1/tasks", None, ct, Some(br#"{"title": "a"}"#)),
        Ok(())
    );
}

#[test]
fn the_petstore_composed_schemas_validate() {
    // petstore-expanded (OpenAPI 3.0): NewPet requires `name`; ids are int64 path parameters.
    let v = validator(PETSTORE, true).unwrap();
    let post = |body: &str| v.validate("POST", "/v1/pets", None, JSON, Some(body.as_bytes()));
    assert_eq!(post(r#"{"name": "Rex", "tag": "dog"}"#), Ok(()));
    assert_eq!(
        post(r#"{"tag": "dog"}"#),
        Err("request body.name: required field missing".into())
    );
    assert_eq!(
        v.validate("GET", "/v1/pets", Some("limit=2&tags=a&tags=b"), None, None),
        Ok(())
    );
    assert_eq!(
        v.validate("DELETE", "/v1/pets/abc", None, None, None),
        Err("path parameter `id`: expected integer, found a string".into())
    );
}

/// The figure for the README: one validated POST with a small JSON body.
/// `cargo test -p gatehouse-contract --test validation -- --ignored --nocapture`
#[test]
#[ignore = "a measurement, not a check"]
fn validation_cost() {
    let v = validator(TASKS, true).unwrap();
    let body = br#"{"title": "write the report", "priority": "high", "owner": {"id": 3}, "tags": ["a", "b"]}"#;
    let n = 200_000;
    let start = std::time::Instant::now();
    for _ in 0..n {
        assert!(v
            .validate("POST", "/v1/tasks", None, JSON, Some(body))
            .is_ok());
    }
    let post = start.elapsed() / n;
    let start = std::time::Instant::now();
    for _ in 0..n {
        assert!(v
            .validate("GET", "/v1/tasks", Some("state=open&limit=10"), None, None)
            .is_ok());
    }
    let get = start.elapsed() / n;
    // Calibration on this (shared, debug-built) machine: parsing the body alone.
    let start = std::time::Instant::now();
    for _ in 0..n {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert!(v.is_object());
    }
    let parse = start.elapsed() / n;
    println!("validated POST with JSON body: {post:?}/request; GET with 2 query parameters: {get:?}/request; parsing the POST body alone: {parse:?}");
}
