//! The standard introspection query (graphql-js `getIntrospectionQuery` with
//! every option on) answered in full, locally.

mod gql_common;

use gql_common::{outputs, request, schema};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use terminus_core::graphql::{demo, Execution, Limits, Schema};
use terminus_core::UpstreamEvent;

const INTROSPECTION_QUERY: &str = r#"
    query IntrospectionQuery {
      __schema {
        description
        queryType { name }
        mutationType { name }
        subscriptionType { name }
        types {
          ...FullType
        }
        directives {
          name
          description
          isRepeatable
          locations
          args(includeDeprecated: true) {
            ...InputValue
          }
        }
      }
    }

    fragment FullType on __Type {
      kind
      name
      description
      specifiedByURL
      fields(includeDeprecated: true) {
        name
        description
        args(includeDeprecated: true) {
          ...InputValue
        }
        type {
          ...TypeRef
        }
        isDeprecated
        deprecationReason
      }
      inputFields(includeDeprecated: true) {
        ...InputValue
      }
      interfaces {
        ...TypeRef
      }
      enumValues(includeDeprecated: true) {
        name
        description
        isDeprecated
        deprecationReason
      }
      possibleTypes {
        ...TypeRef
      }
    }

    fragment InputValue on __InputValue {
      name
      description
      type { ...TypeRef }
      defaultValue
      isDeprecated
      deprecationReason
    }

    fragment TypeRef on __Type {
      kind
      name
      ofType {
        kind
        name
        ofType {
          kind
          name
          ofType {
            kind
            name
            ofType {
              kind
              name
              ofType {
                kind
                name
                ofType {
                  kind
                  name
                  ofType {
                    kind
                    name
                    ofType {
                      kind
                      name
                    }
                  }
                }
              }
            }
          }
        }
      }
    }
"#;

fn introspect(schema: &Schema) -> Value {
    let prepared = schema
        .prepare(
            &request(INTROSPECTION_QUERY, json!({}), None),
            &Limits::default(),
        )
        .expect("the introspection query validates within the default limits");
    let mut exec = Execution::new(prepared);
    assert!(
        exec.poll_call().is_none(),
        "introspection makes no upstream call"
    );
    let out = outputs(&mut exec);
    assert_eq!(out.len(), 2);
    assert_eq!(out[1], UpstreamEvent::Complete);
    let UpstreamEvent::Next(result) = &out[0] else {
        panic!("{out:?}")
    };
    assert!(result.get("errors").is_none(), "{result:#}");
    result["data"]["__schema"].clone()
}

/// Every named type a type reference reaches, checking the wrappers' shape.
fn named_in_ref(r: &Value, out: &mut BTreeSet<String>) {
    match r["kind"].as_str().unwrap() {
        "NON_NULL" | "LIST" => {
            assert!(r["name"].is_null());
            named_in_ref(&r["ofType"], out);
        }
        _ => {
            out.insert(r["name"].as_str().unwrap().to_string());
        }
    }
}

fn type_ref_text(r: &Value) -> String {
    match r["kind"].as_str().unwrap() {
        "NON_NULL" => format!("{}!", type_ref_text(&r["ofType"])),
        "LIST" => format!("[{}]", type_ref_text(&r["ofType"])),
        _ => r["name"].as_str().unwrap().to_string(),
    }
}

#[test]
fn the_standard_introspection_query_is_answered_in_full() {
    let s = introspect(&schema());
    assert_eq!(s["queryType"], json!({"name": "Query"}));
    assert_eq!(s["mutationType"], json!({"name": "Mutation"}));
    assert_eq!(s["subscriptionType"], json!({"name": "Subscription"}));

    let types: HashMap<String, &Value> = s["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap().to_string(), t))
        .collect();
    let names: BTreeSet<&str> = types.keys().map(String::as_str).collect();
    for expected in [
        "Query",
        "Mutation",
        "Subscription",
        "User",
        "Color",
        "Filter",
        "Inner",
        "JSON",
        "String",
        "Int",
        "Float",
        "Boolean",
        "ID",
        "__Schema",
        "__Type",
        "__TypeKind",
        "__Field",
        "__InputValue",
        "__EnumValue",
        "__Directive",
        "__DirectiveLocation",
    ] {
        assert!(
            names.contains(expected),
            "{expected} missing from {names:?}"
        );
    }
    assert!(!names.contains("__Meta"));

    // Every type reached by any reference is in `types` (what
    // buildClientSchema needs), and every type has the full set of keys.
    let mut reached = BTreeSet::new();
    for t in types.values() {
        for key in [
            "kind",
            "name",
            "description",
            "specifiedByURL",
            "fields",
            "inputFields",
            "interfaces",
            "enumValues",
            "possibleTypes",
        ] {
            assert!(t.get(key).is_some(), "{key} missing on {}", t["name"]);
        }
        for f in t["fields"].as_array().into_iter().flatten() {
            named_in_ref(&f["type"], &mut reached);
            for a in f["args"].as_array().unwrap() {
                named_in_ref(&a["type"], &mut reached);
            }
        }
        for f in t["inputFields"].as_array().into_iter().flatten() {
            named_in_ref(&f["type"], &mut reached);
        }
        match t["kind"].as_str().unwrap() {
            "OBJECT" => {
                assert!(t["fields"].is_array() && t["interfaces"] == json!([]));
                assert!(t["inputFields"].is_null() && t["enumValues"].is_null());
            }
            "INPUT_OBJECT" => assert!(t["inputFields"].is_array() && t["fields"].is_null()),
            "ENUM" => assert!(t["enumValues"].is_array() && t["fields"].is_null()),
            "SCALAR" => assert!(t["fields"].is_null() && t["enumValues"].is_null()),
            other => panic!("unexpected kind {other}"),
        }
    }
    for r in &reached {
        assert!(
            names.contains(r.as_str()),
            "{r} is referenced but not listed"
        );
    }

    // Fields, arguments, defaults, descriptions, deprecations.
    let query = types["Query"];
    let field = |name: &str| -> &Value {
        query["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap()
    };
    assert_eq!(field("user")["description"], "One user.");
    assert_eq!(type_ref_text(&field("users")["type"]), "[User!]!");
    let users_args = field("users")["args"].as_array().unwrap();
    assert_eq!(users_args[1]["name"], "first");
    assert_eq!(users_args[1]["defaultValue"], "10");
    assert_eq!(type_ref_text(&users_args[0]["type"]), "Filter");
    assert_eq!(field("old")["isDeprecated"], true);
    assert_eq!(field("old")["deprecationReason"], "No longer supported");
    let filter_fields = types["Filter"]["inputFields"].as_array().unwrap();
    assert_eq!(filter_fields[0]["defaultValue"], "RED");
    let old = types["Color"]["enumValues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "OLD")
        .unwrap();
    assert_eq!(old["deprecationReason"], "use RED");
    assert_eq!(
        types["JSON"]["specifiedByURL"],
        "https://www.rfc-editor.org/rfc/rfc8259"
    );
    assert_eq!(types["JSON"]["description"], "Any JSON value.");
    let email = types["User"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "email")
        .unwrap();
    assert_eq!(type_ref_text(&email["type"]), "String");

    // Directives: the standard ones only, never Terminus's own.
    let directives: BTreeSet<&str> = s["directives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        directives,
        BTreeSet::from(["deprecated", "include", "oneOf", "skip", "specifiedBy"])
    );
    let skip = s["directives"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "skip")
        .unwrap();
    assert_eq!(
        skip["locations"],
        json!(["FIELD", "FRAGMENT_SPREAD", "INLINE_FRAGMENT"])
    );
    assert_eq!(skip["isRepeatable"], false);
    assert_eq!(type_ref_text(&skip["args"][0]["type"]), "Boolean!");
}

#[test]
fn the_demo_schema_introspects_without_internal_directives() {
    let schema = Schema::parse(demo::SCHEMA_SDL, demo::SCHEMA_FILE).unwrap();
    let s = introspect(&schema);
    let text = s.to_string();
    for internal in ["grpc", "terminus.demo.v1", "upstream"] {
        assert!(!text.contains(internal), "introspection leaks {internal}");
    }
    let tick = s["types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "Tick")
        .unwrap();
    assert_eq!(tick["fields"][0]["name"], "seq");
    assert_eq!(type_ref_text(&tick["fields"][0]["type"]), "Int!");
}

#[test]
fn deprecated_members_are_hidden_unless_asked_for() {
    let prepared = schema()
        .prepare(
            &request(
                "{ __type(name: \"Color\") { enumValues { name } all: enumValues(includeDeprecated: true) { name } } q: __type(name: \"Query\") { fields { name } } none: __type(name: \"Nope\") { name } }",
                json!({}),
                None,
            ),
            &Limits::default(),
        )
        .unwrap();
    let mut exec = Execution::new(prepared);
    let UpstreamEvent::Next(r) = exec.poll_output().unwrap() else {
        panic!()
    };
    assert_eq!(
        r["data"]["__type"]["enumValues"].as_array().unwrap().len(),
        3
    );
    assert_eq!(r["data"]["__type"]["all"].as_array().unwrap().len(), 4);
    let fields: Vec<&str> = r["data"]["q"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(!fields.contains(&"old") && fields.contains(&"users"));
    assert_eq!(r["data"]["none"], Value::Null);
}

#[test]
fn the_introspection_query_needs_depth_14() {
    let schema = schema();
    let req = request(INTROSPECTION_QUERY, json!({}), None);
    let at = |max_depth| Limits {
        max_depth,
        ..Limits::default()
    };
    assert!(schema.prepare(&req, &at(14)).is_ok());
    assert!(schema.prepare(&req, &at(13)).is_err());
}
