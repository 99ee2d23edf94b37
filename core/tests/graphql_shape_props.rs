//! Property: random selection sets over random upstream JSON never panic,
//! always produce one result then Complete, and the result is shaped
//! consistently with the selection and the schema (keys in selection order,
//! leaf types respected, non-null never null, every error's path leads to a
//! null).

use proptest::prelude::*;
use serde_json::{Map, Value};
use terminus_core::graphql::{CallEvent, Execution, Limits, Schema};
use terminus_core::{OperationRequest, UpstreamEvent};

const SDL: &str = r#"
enum Mood { HAPPY SAD }
type Query {
  node: Node @grpc(upstream: "p", method: "p.P/Node")
  nodes: [Node!] @grpc(upstream: "p", method: "p.P/Nodes", result: "items")
  must: Node! @sql(db: "d", query: "SELECT * FROM n")
  rows: [Node]! @sql(db: "d", query: "SELECT * FROM n")
}
type Node {
  id: ID!
  name: String
  count: Int!
  ratio: Float
  flag: Boolean
  mood: Mood
  child: Node
  strict: Node!
  children: [Node!]
  tags: [String]
  labels: [String!]!
}
"#;

/// The schema, loaded once for all cases.
static SCHEMA: std::sync::LazyLock<Schema> =
    std::sync::LazyLock::new(|| Schema::parse(SDL, "props.graphql").unwrap());

/// (field name, type as written in the SDL)
const NODE_FIELDS: &[(&str, &str)] = &[
    ("id", "ID!"),
    ("name", "String"),
    ("count", "Int!"),
    ("ratio", "Float"),
    ("flag", "Boolean"),
    ("mood", "Mood"),
    ("child", "Node"),
    ("strict", "Node!"),
    ("children", "[Node!]"),
    ("tags", "[String]"),
    ("labels", "[String!]!"),
    ("__typename", "String!"),
];
const ROOT_FIELDS: &[(&str, &str)] = &[
    ("node", "Node"),
    ("nodes", "[Node!]"),
    ("must", "Node!"),
    ("rows", "[Node]!"),
    ("__typename", "String!"),
];

/// The test's own picture of a selection: response key, type, children.
#[derive(Debug, Clone)]
struct Sel {
    key: String,
    ty: &'static str,
    children: Vec<Sel>,
}

/// A tiny deterministic generator driven by proptest's seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn gen_set(
    rng: &mut Rng,
    fields: &[(&str, &'static str)],
    depth: usize,
    text: &mut String,
    out: &mut Vec<Sel>,
) {
    let n = 1 + rng.below(4);
    text.push('{');
    for _ in 0..n {
        let (name, ty) = fields[rng.below(fields.len())];
        let alias = rng.below(3) == 0;
        let key = if alias {
            format!("a{}", out.len())
        } else {
            name.to_string()
        };
        if out.iter().any(|s| s.key == key) {
            continue;
        }
        let is_object = ty.contains("Node");
        if is_object && depth >= 3 {
            continue;
        }
        let wrap = rng.below(5) == 0;
        if wrap {
            text.push_str(" ... on ");
            text.push_str(if fields.len() == ROOT_FIELDS.len() {
                "Query"
            } else {
                "Node"
            });
            text.push_str(" {");
        }
        text.push(' ');
        if alias {
            text.push_str(&key);
            text.push_str(": ");
        }
        text.push_str(name);
        let mut children = Vec::new();
        if is_object {
            text.push(' ');
            gen_set(rng, NODE_FIELDS, depth + 1, text, &mut children);
            if children.is_empty() {
                children.push(Sel {
                    key: "id".into(),
                    ty: "ID!",
                    children: Vec::new(),
                });
                text.pop();
                text.push_str(" id }");
            }
        }
        if wrap {
            text.push_str(" }");
        }
        out.push(Sel { key, ty, children });
    }
    text.push_str(" }");
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-5i64..5).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e3f64..1e3).prop_map(Value::from),
        prop::sample::select(vec!["HAPPY", "SAD", "12", "x", "", "3.5", "99999999999"])
            .prop_map(Value::from),
    ];
    let keys = prop::sample::select(vec![
        "id", "name", "count", "ratio", "flag", "mood", "child", "strict", "children", "tags",
        "labels", "items", "zz",
    ]);
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((keys.clone(), inner), 0..8).prop_map(|kv| Value::Object(
                kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
        ]
    })
}

/// Checks `value` against a selection of type `ty`; `Err` describes the
/// inconsistency.
fn check(value: &Value, ty: &str, children: &[Sel]) -> Result<(), String> {
    if let Some(inner) = ty.strip_suffix('!') {
        if value.is_null() {
            return Err(format!("null in non-null {ty}"));
        }
        return check(value, inner, children);
    }
    if value.is_null() {
        return Ok(());
    }
    if let Some(item) = ty.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        let items = value
            .as_array()
            .ok_or(format!("{ty} is not a list: {value}"))?;
        return items.iter().try_for_each(|v| check(v, item, children));
    }
    match ty {
        "ID" | "String" => value
            .is_string()
            .then_some(())
            .ok_or(format!("{ty}: {value}")),
        "Int" => value
            .as_i64()
            .filter(|i| i32::try_from(*i).is_ok())
            .map(|_| ())
            .ok_or(format!("Int: {value}")),
        "Float" => value
            .is_number()
            .then_some(())
            .ok_or(format!("Float: {value}")),
        "Boolean" => value
            .is_boolean()
            .then_some(())
            .ok_or(format!("Boolean: {value}")),
        "Mood" => matches!(value.as_str(), Some("HAPPY" | "SAD"))
            .then_some(())
            .ok_or(format!("Mood: {value}")),
        "Node" => check_object(value, children, "Node"),
        other => Err(format!("unknown type {other}")),
    }
}

fn check_object(value: &Value, children: &[Sel], typename: &str) -> Result<(), String> {
    let obj = value.as_object().ok_or(format!("not an object: {value}"))?;
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    let expected: Vec<&str> = children.iter().map(|s| s.key.as_str()).collect();
    if keys != expected {
        return Err(format!("keys {keys:?} != selection {expected:?}"));
    }
    for s in children {
        if s.ty == "String!" && s.key.ends_with("typename") && obj[&s.key] != typename {
            return Err(format!("__typename {} != {typename}", obj[&s.key]));
        }
        check(&obj[&s.key], s.ty, &s.children)?;
    }
    Ok(())
}

fn run(schema: &Schema, query: &str, upstream: &Value) -> Value {
    let request = OperationRequest {
        id: "p".into(),
        query: query.into(),
        operation_name: None,
        variables: Map::new(),
        extensions: Map::new(),
    };
    let prepared = schema
        .prepare(&request, &Limits::default())
        .unwrap_or_else(|e| panic!("generated query invalid: {query}\n{e:?}"));
    let mut exec = Execution::new(prepared);
    let calls: Vec<_> = std::iter::from_fn(|| exec.poll_call()).collect();
    for (id, _) in &calls {
        exec.handle_call_event(*id, CallEvent::Item(upstream.clone()));
        exec.handle_call_event(*id, CallEvent::End);
    }
    let out: Vec<UpstreamEvent> = std::iter::from_fn(|| exec.poll_output()).collect();
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out[1], UpstreamEvent::Complete);
    assert!(exec.is_finished());
    match &out[0] {
        UpstreamEvent::Next(v) => v.clone(),
        other => panic!("{other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_selections_over_random_json_shape_consistently(seed in any::<u64>(), upstream in arb_json()) {
        let schema = &*SCHEMA;
        let mut rng = Rng(seed | 1);
        let mut text = String::new();
        let mut root = Vec::new();
        gen_set(&mut rng, ROOT_FIELDS, 1, &mut text, &mut root);
        prop_assume!(!root.is_empty());

        let result = run(schema, &text, &upstream);
        // Deterministic.
        prop_assert_eq!(&result, &run(schema, &text, &upstream));

        let data = &result["data"];
        if !data.is_null() {
            if let Err(e) = check_object(data, &root, "Query") {
                return Err(TestCaseError::fail(format!("{e}\nquery {text}\nupstream {upstream}\nresult {result}")));
            }
        } else {
            // data is null only when a non-null root field failed.
            prop_assert!(result["errors"].as_array().is_some_and(|e| !e.is_empty()), "{}", result);
        }
        for err in result["errors"].as_array().into_iter().flatten() {
            prop_assert!(err["message"].is_string());
            prop_assert!(err["extensions"]["code"].is_string());
            let path = err["path"].as_array().expect("shaping errors have a path");
            prop_assert!(!path.is_empty());
            // Following the path reaches a null (or stops at a nulled parent).
            let mut at = data;
            let mut reached_null = at.is_null();
            for seg in path {
                if at.is_null() { reached_null = true; break; }
                at = match seg {
                    Value::String(k) => &at[k.as_str()],
                    Value::Number(i) => &at[i.as_u64().unwrap() as usize],
                    _ => panic!("bad path segment {seg}"),
                };
            }
            prop_assert!(reached_null || at.is_null(), "error path {:?} leads to {} in {}", path, at, result);
        }
    }
}

/// A generated valid operation with 0 to 3 random token edits: often
/// still valid, often subtly wrong.
fn arb_document() -> impl Strategy<Value = String> {
    let tokens = prop::sample::select(vec![
        "{",
        "}",
        "(",
        ")",
        "[",
        "]",
        ":",
        "...",
        "on",
        "Node",
        "Query",
        "query",
        "subscription",
        "fragment",
        "node",
        "child",
        "strict",
        "tags",
        "mood",
        "HAPPY",
        "__typename",
        "__schema",
        "__type",
        "$v",
        "$w",
        "Int",
        "Int!",
        "@skip(if: $v)",
        "@include(if: true)",
        "null",
        "1",
        "\"s\"",
        "a:",
        "(name: \"Node\")",
        "{ id }",
        "...F",
        "fragment F on Node { id }",
        "query($v: Boolean!)",
        "query($v: Int, $w: [String])",
    ]);
    let edits = prop::collection::vec((0u8..3, any::<prop::sample::Index>(), tokens), 0..4);
    (any::<u64>(), edits).prop_map(|(seed, edits)| {
        let mut rng = Rng(seed | 1);
        let mut text = String::new();
        gen_set(&mut rng, ROOT_FIELDS, 1, &mut text, &mut Vec::new());
        let mut words: Vec<String> = text.split_whitespace().map(str::to_string).collect();
        for (kind, at, token) in edits {
            let i = at.index(words.len() + 1);
            match kind {
                0 => words.insert(i, token.to_string()),
                1 if i < words.len() => {
                    words.remove(i);
                }
                _ if i < words.len() => words[i] = token.to_string(),
                _ => words.push(token.to_string()),
            }
        }
        words.join(" ")
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn any_document_is_prepared_or_refused_with_spec_shaped_errors(
        doc in arb_document(),
        vars in prop::collection::vec((prop::sample::select(vec!["v", "w"]), arb_json()), 0..3),
        upstream in arb_json(),
    ) {
        let schema = &*SCHEMA;
        let request = OperationRequest {
            id: "p".into(),
            query: doc.clone(),
            operation_name: None,
            variables: vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            extensions: Map::new(),
        };
        match schema.prepare(&request, &Limits::default()) {
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                for e in &errors {
                    prop_assert!(e["message"].is_string(), "{}", e);
                    let code = e["extensions"]["code"].as_str().unwrap_or("");
                    prop_assert!(
                        ["GRAPHQL_PARSE_FAILED", "GRAPHQL_VALIDATION_FAILED", "BAD_USER_INPUT"].contains(&code),
                        "{}", e
                    );
                }
            }
            Ok(prepared) => {
                let mut exec = Execution::new(prepared);
                for _ in 0..3 {
                    let calls: Vec<_> = std::iter::from_fn(|| exec.poll_call()).collect();
                    for (id, _) in calls {
                        exec.handle_call_event(id, CallEvent::Item(upstream.clone()));
                        exec.handle_call_event(id, CallEvent::End);
                    }
                }
                let out: Vec<UpstreamEvent> = std::iter::from_fn(|| exec.poll_output()).collect();
                prop_assert!(exec.is_finished(), "{} -> {:?}", doc, out);
                prop_assert!(out.last().is_some_and(UpstreamEvent::is_terminal));
            }
        }
    }
}
