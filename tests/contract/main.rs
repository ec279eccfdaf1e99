//! Wire compatibility with Project-W v0.6.0 (issue 3, item 7), read from the documents alone:
//! `openapi/projectw-v0.6.0.json` (Project-W's contract, copied unchanged from the shared
//! contract file) against `openapi/openapi.json` (Scribe's, generated and committed; the
//! drift check keeps it equal to the code).
//!
//! For every contract operation Scribe implements (same path and method): operation id,
//! tags, parameters (name, location, required), request body media types, and documented
//! responses (every contract status with its media types; Scribe may document more, e.g.
//! 413 or 429). Every component schema such an operation uses must exist in Scribe's document
//! with the same property names, required list and enum values. Contract operations not
//! implemented yet are listed, not failed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use scribe_tests::repo_root;
use scribe_tests::serde_json::Value;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn load(relative: &str) -> Value {
    let path = repo_root().join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "read {}: {e}{}",
            path.display(),
            if relative.ends_with("openapi.json") {
                " (generate it with `cargo run -p scribe-server -- openapi --write`)"
            } else {
                ""
            }
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Follows a local `$ref` (`#/components/...`) until a non-reference value.
fn resolve<'a>(doc: &'a Value, mut value: &'a Value) -> &'a Value {
    for _ in 0..32 {
        match value.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let pointer = reference
                    .strip_prefix('#')
                    .unwrap_or_else(|| panic!("non-local $ref {reference}"));
                value = doc
                    .pointer(pointer)
                    .unwrap_or_else(|| panic!("dangling $ref {reference}"));
            }
            None => return value,
        }
    }
    panic!("$ref cycle at {value}");
}

/// `(method, path)` → operation object, for every operation of a document.
fn operations(doc: &Value) -> BTreeMap<(String, String), &Value> {
    let mut out = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths").iter() {
        for method in METHODS {
            if let Some(operation) = item.get(method) {
                out.insert((method.to_string(), path.clone()), operation);
            }
        }
    }
    out
}

/// `(in, name, required)`, path-level parameters included; header names compare
/// case-insensitively (HTTP does).
fn parameters(doc: &Value, path: &str, operation: &Value) -> BTreeSet<(String, String, bool)> {
    let path_level = doc["paths"][path].get("parameters");
    let op_level = operation.get("parameters");
    [path_level, op_level]
        .into_iter()
        .flatten()
        .flat_map(|list| list.as_array().cloned().unwrap_or_default())
        .map(|parameter| {
            let parameter = resolve(doc, &parameter).clone();
            let location = parameter["in"].as_str().unwrap_or("").to_string();
            let mut name = parameter["name"].as_str().unwrap_or("").to_string();
            if location == "header" {
                name = name.to_lowercase();
            }
            let required = parameter["required"].as_bool().unwrap_or(false);
            (location, name, required)
        })
        .collect()
}

fn body_media_types(doc: &Value, operation: &Value) -> BTreeSet<String> {
    operation
        .get("requestBody")
        .map(|body| resolve(doc, body))
        .and_then(|body| body.get("content"))
        .and_then(Value::as_object)
        .map(|content| content.keys().cloned().collect())
        .unwrap_or_default()
}

/// status → media types of each documented response.
fn responses(doc: &Value, operation: &Value) -> BTreeMap<String, BTreeSet<String>> {
    operation
        .get("responses")
        .and_then(Value::as_object)
        .map(|responses| {
            responses
                .iter()
                .map(|(status, response)| {
                    let media = resolve(doc, response)
                        .get("content")
                        .and_then(Value::as_object)
                        .map(|c| c.keys().cloned().collect())
                        .unwrap_or_default();
                    (status.clone(), media)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn string_set(value: Option<&Value>) -> BTreeSet<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Names of the component schemas `value` refers to, transitively.
fn referenced_schemas(doc: &Value, value: &Value, found: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                if key == "$ref" {
                    let reference = inner.as_str().unwrap_or("");
                    if let Some(name) = reference.strip_prefix("#/components/schemas/") {
                        if found.insert(name.to_string()) {
                            let schema = doc["components"]["schemas"]
                                .get(name)
                                .unwrap_or_else(|| panic!("dangling $ref {reference}"));
                            referenced_schemas(doc, schema, found);
                        }
                    } else if let Some(pointer) = reference.strip_prefix('#') {
                        // A shared response or parameter: look inside it.
                        if let Some(target) = doc.pointer(pointer) {
                            referenced_schemas(doc, target, found);
                        }
                    }
                } else {
                    referenced_schemas(doc, inner, found);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                referenced_schemas(doc, item, found);
            }
        }
        _ => {}
    }
}

fn describe_difference<T: Ord + std::fmt::Debug>(
    contract: &BTreeSet<T>,
    scribe: &BTreeSet<T>,
) -> String {
    let missing: Vec<_> = contract.difference(scribe).collect();
    let extra: Vec<_> = scribe.difference(contract).collect();
    format!("missing {missing:?}, extra {extra:?}")
}

/// Compares one contract operation with Scribe's; pushes every mismatch.
fn compare_operation(
    contract: &Value,
    scribe: &Value,
    (method, path): &(String, String),
    ours: &Value,
    theirs: &Value,
    problems: &mut Vec<String>,
) {
    let at = format!("{} {path}", method.to_uppercase());

    if theirs.get("operationId") != ours.get("operationId") {
        problems.push(format!(
            "{at}: operationId {} (contract {})",
            ours.get("operationId").unwrap_or(&Value::Null),
            theirs.get("operationId").unwrap_or(&Value::Null)
        ));
    }
    let (their_tags, our_tags) = (string_set(theirs.get("tags")), string_set(ours.get("tags")));
    if their_tags != our_tags {
        problems.push(format!("{at}: tags {our_tags:?} (contract {their_tags:?})"));
    }

    let (their_params, our_params) = (
        parameters(contract, path, theirs),
        parameters(scribe, path, ours),
    );
    if their_params != our_params {
        problems.push(format!(
            "{at}: parameters (in, name, required) differ: {}",
            describe_difference(&their_params, &our_params)
        ));
    }

    let (their_body, our_body) = (
        body_media_types(contract, theirs),
        body_media_types(scribe, ours),
    );
    if their_body != our_body {
        problems.push(format!(
            "{at}: request body media types {our_body:?} (contract {their_body:?})"
        ));
    }

    let (their_responses, our_responses) = (responses(contract, theirs), responses(scribe, ours));
    for (status, their_media) in &their_responses {
        match our_responses.get(status) {
            None => problems.push(format!("{at}: response {status} not documented")),
            Some(our_media) if !their_media.is_subset(our_media) => problems.push(format!(
                "{at}: response {status} media types {our_media:?} (contract {their_media:?})"
            )),
            Some(_) => {}
        }
    }
}

/// Compares the contract's component schema `name` with Scribe's.
fn compare_schema(contract: &Value, scribe: &Value, name: &str, problems: &mut Vec<String>) {
    let theirs = &contract["components"]["schemas"][name];
    let Some(ours) = scribe["components"]["schemas"].get(name) else {
        problems.push(format!("schema {name}: missing from openapi/openapi.json"));
        return;
    };
    let ours = resolve(scribe, ours);
    let keys = |schema: &Value| -> BTreeSet<String> {
        schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    };
    let (their_props, our_props) = (keys(theirs), keys(ours));
    if their_props != our_props {
        problems.push(format!(
            "schema {name}: properties differ: {}",
            describe_difference(&their_props, &our_props)
        ));
    }
    let (their_required, our_required) = (
        string_set(theirs.get("required")),
        string_set(ours.get("required")),
    );
    if their_required != our_required {
        problems.push(format!(
            "schema {name}: required differs: {}",
            describe_difference(&their_required, &our_required)
        ));
    }
    let (their_enum, our_enum) = (string_set(theirs.get("enum")), string_set(ours.get("enum")));
    if their_enum != our_enum {
        problems.push(format!(
            "schema {name}: enum values differ: {}",
            describe_difference(&their_enum, &our_enum)
        ));
    }
}

#[test]
fn scribe_matches_the_project_w_contract_for_every_implemented_operation() {
    let contract = load("openapi/projectw-v0.6.0.json");
    let scribe = load("openapi/openapi.json");
    let ours = operations(&scribe);

    let mut problems = Vec::new();
    let mut missing = Vec::new();
    let mut schemas = BTreeSet::new();
    let mut implemented = 0;
    for (key, theirs) in operations(&contract) {
        match ours.get(&key) {
            Some(op) => {
                implemented += 1;
                compare_operation(&contract, &scribe, &key, op, theirs, &mut problems);
                referenced_schemas(&contract, theirs, &mut schemas);
            }
            None => missing.push(format!(
                "{} {} ({})",
                key.0.to_uppercase(),
                key.1,
                theirs["operationId"].as_str().unwrap_or("?")
            )),
        }
    }
    for name in &schemas {
        compare_schema(&contract, &scribe, name, &mut problems);
    }

    eprintln!(
        "Project-W v0.6.0 contract: {implemented} operations implemented and compared, \
         {} not implemented yet:",
        missing.len()
    );
    for operation in &missing {
        eprintln!("  - {operation}");
    }
    assert!(
        problems.is_empty(),
        "openapi/openapi.json differs from the Project-W v0.6.0 contract in {} places:\n  - {}",
        problems.len(),
        problems.join("\n  - ")
    );
}

#[test]
fn scribe_document_is_openapi_3_1_with_tag_prefixed_operation_ids() {
    let scribe = load("openapi/openapi.json");
    let version = scribe["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1."), "openapi: {version:?}");

    // STYLE: operation ids stay `{tag}-{name}`, and are unique.
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for ((method, path), operation) in operations(&scribe) {
        let at = format!("{} {path}", method.to_uppercase());
        let Some(id) = operation.get("operationId").and_then(Value::as_str) else {
            problems.push(format!("{at}: no operationId"));
            continue;
        };
        if !seen.insert(id.to_string()) {
            problems.push(format!("{at}: duplicate operationId {id}"));
        }
        if let Some(tag) = operation["tags"].get(0).and_then(Value::as_str) {
            if !id.starts_with(&format!("{tag}-")) {
                problems.push(format!(
                    "{at}: operationId {id} doesn't start with `{tag}-`"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The contract copy is the file this test was written against, unchanged.
#[test]
fn contract_copy_is_project_w_v0_6_0() {
    let contract = load("openapi/projectw-v0.6.0.json");
    assert_eq!(contract["info"]["title"], "Project-W");
    assert_eq!(contract["info"]["version"], "0.6.0");
    assert_eq!(operations(&contract).len(), 42);
    assert!(Path::new(&repo_root().join("openapi/projectw-v0.6.0.json")).is_file());
}
