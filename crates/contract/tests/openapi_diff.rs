//! `gatehouse diff` inside a rule's OpenAPI document: the oasdiff / openapi-diff rules (removed
//! operation, new required parameter or request field, narrowed enum, removed response field,
//! changed type are breaking; the reverse directions are not), with the paths clients use.

mod common;

use gatehouse_contract::{diff, Class};
use Class::{Breaking as B, Informational as I, NonBreaking as N};

const ROUTE: &str = r#"
kind: Route
metadata: {name: tasks}
spec:
  hosts: [api.example.com]
  rules:
    - match: {path: {prefix: /v1/tasks}}
      rewrite: {pathPrefix: /tasks}
      backends: [{backend: a}]
      openapi: {file: tasks.yaml}
"#;

/// A small 3.1 document; each case edits it.
const DOC: &str = r##"
openapi: 3.1.0
info: {title: Tasks, version: "1"}
paths:
  /tasks:
    get:
      operationId: listTasks
      parameters:
        - {name: state, in: query, schema: {type: string, enum: [open, done]}}
      responses:
        "200":
          description: the tasks
          content:
            application/json:
              schema:
                type: array
                items: {$ref: "#/components/schemas/Task"}
    post:
      operationId: createTask
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: "#/components/schemas/NewTask"}
      responses:
        "201":
          description: created
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Task"}
  /tasks/{id}:
    delete:
      operationId: deleteTask
      parameters:
        - {name: id, in: path, required: true, schema: {type: integer}}
      responses:
        "204": {description: deleted}
components:
  schemas:
    NewTask:
      type: object
      required: [title]
      properties:
        title: {type: string}
        priority: {type: string, enum: [low, high]}
    Task:
      type: object
      properties:
        id: {type: integer}
        title: {type: string}
        done: {type: boolean}
"##;

fn changes(new_doc: &str) -> Vec<(Class, &'static str, String)> {
    let (_d1, old) = common::config(ROUTE, &[("tasks.yaml", DOC)]);
    let (_d2, new) = common::config(ROUTE, &[("tasks.yaml", new_doc)]);
    let mut v: Vec<_> = diff(&old, &new)
        .changes
        .into_iter()
        .map(|c| (c.class, c.kind, c.operation))
        .collect();
    v.sort();
    v
}

fn edit(from: &str, to: &str) -> String {
    assert!(DOC.contains(from), "the base document has no `{from}`");
    DOC.replacen(from, to, 1)
}

#[test]
fn an_unchanged_document_reports_nothing() {
    assert_eq!(changes(DOC), vec![]);
}

#[test]
fn a_removed_operation_is_breaking_at_the_path_clients_use() {
    let doc = edit(
        "    delete:\n      operationId: deleteTask",
        "    x-gone:\n      operationId: deleteTask",
    );
    assert_eq!(
        changes(&doc),
        vec![(
            B,
            "api-operation-removed",
            "DELETE api.example.com/v1/tasks/{id}".into()
        )]
    );
}

#[test]
fn an_added_operation_is_not_breaking() {
    let doc = edit(
        "  /tasks/{id}:\n",
        "  /tasks/{id}:\n    get:\n      responses: {\"200\": {description: one}}\n",
    );
    assert_eq!(
        changes(&doc),
        vec![(
            N,
            "api-operation-added",
            "GET api.example.com/v1/tasks/{id}".into()
        )]
    );
}

#[test]
fn parameters_new_required_is_breaking_new_optional_is_not() {
    let list = "GET api.example.com/v1/tasks".to_string();
    let required = edit(
        "        - {name: state,",
        "        - {name: owner, in: query, required: true, schema: {type: string}}\n        - {name: state,",
    );
    assert_eq!(
        changes(&required),
        vec![(B, "new-required-parameter", list.clone())]
    );
    let optional = edit(
        "        - {name: state,",
        "        - {name: owner, in: query, schema: {type: string}}\n        - {name: state,",
    );
    assert_eq!(
        changes(&optional),
        vec![(N, "new-optional-parameter", list)]
    );
}

#[test]
fn request_enums_narrowed_break_and_widened_do_not() {
    let list = "GET api.example.com/v1/tasks".to_string();
    let narrowed = edit("enum: [open, done]", "enum: [open]");
    assert_eq!(changes(&narrowed), vec![(B, "enum-narrowed", list.clone())]);
    let widened = edit("enum: [open, done]", "enum: [open, done, archived]");
    assert_eq!(changes(&widened), vec![(N, "enum-widened", list)]);
}

#[test]
fn a_new_required_request_field_is_breaking() {
    let doc = edit("required: [title]", "required: [title, owner]\n      x: 1");
    let doc = doc.replacen(
        "        title: {type: string}\n        priority",
        "        title: {type: string}\n        owner: {type: string}\n        priority",
        1,
    );
    assert_eq!(
        changes(&doc),
        vec![(
            B,
            "new-required-request-field",
            "POST api.example.com/v1/tasks".into()
        )]
    );
}

#[test]
fn response_fields_removed_break_and_added_do_not() {
    // Task is the response of GET /tasks (as array items) and POST /tasks.
    let removed = edit("        done: {type: boolean}\n", "");
    assert_eq!(
        changes(&removed),
        vec![
            (
                B,
                "response-field-removed",
                "GET api.example.com/v1/tasks".into()
            ),
            (
                B,
                "response-field-removed",
                "POST api.example.com/v1/tasks".into()
            ),
        ]
    );
    let added = edit(
        "        done: {type: boolean}\n",
        "        done: {type: boolean}\n        due: {type: string}\n",
    );
    assert_eq!(
        changes(&added),
        vec![
            (N, "field-added", "GET api.example.com/v1/tasks".into()),
            (N, "field-added", "POST api.example.com/v1/tasks".into()),
        ]
    );
}

#[test]
fn a_changed_type_is_breaking_including_a_response_field_becoming_nullable() {
    let doc = edit(
        "        id: {type: integer}\n",
        "        id: {type: string}\n",
    );
    assert_eq!(
        changes(&doc),
        vec![
            (B, "type-changed", "GET api.example.com/v1/tasks".into()),
            (B, "type-changed", "POST api.example.com/v1/tasks".into()),
        ]
    );
    // A response field that may now be null: clients that assumed a value can break.
    let doc = edit(
        "        done: {type: boolean}\n",
        "        done: {type: [boolean, \"null\"]}\n",
    );
    let got = changes(&doc);
    assert!(
        !got.is_empty() && got.iter().all(|c| c.0 == B && c.1 == "type-changed"),
        "{got:?}"
    );
}

#[test]
fn a_removed_request_field_is_informational() {
    let doc = edit("        priority: {type: string, enum: [low, high]}\n", "");
    assert_eq!(
        changes(&doc),
        vec![(
            I,
            "request-field-removed",
            "POST api.example.com/v1/tasks".into()
        )]
    );
}

#[test]
fn openapi_changes_point_into_the_new_document() {
    let doc = edit("enum: [open, done]", "enum: [open]");
    let (_d1, old) = common::config(ROUTE, &[("tasks.yaml", DOC)]);
    let (d2, new) = common::config(ROUTE, &[("tasks.yaml", &doc)]);
    let report = diff(&old, &new);
    let at = report.changes[0].location.clone().unwrap();
    // Line 6 is `get:` under `/tasks` (the document starts with an empty line).
    assert_eq!(at, format!("{}:6", d2.path().join("tasks.yaml").display()));
}
