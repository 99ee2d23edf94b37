//! Spec-shaped GraphQL errors: `{message, locations, path, extensions: {code}}`.

use graphql_parser::Pos;
use serde_json::{json, Map, Value};

/// `extensions.code` of a document that does not parse.
pub const PARSE_FAILED: &str = "GRAPHQL_PARSE_FAILED";
/// `extensions.code` of a document that parses but breaks a validation rule
/// (or a configured limit).
pub const VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";
/// `extensions.code` of variable values or arguments that do not coerce.
pub const BAD_USER_INPUT: &str = "BAD_USER_INPUT";
/// `extensions.code` of a field whose upstream value cannot be shaped to its
/// declared type (a null for a non-null field, a string for an `Int`, ...).
pub const INTERNAL_SERVER_ERROR: &str = "INTERNAL_SERVER_ERROR";
/// `extensions.code` of an operation stopped because its result grew past
/// `max_response_bytes` (see `core/src/graphql/budget.rs`).
pub const RESPONSE_TOO_LARGE: &str = "RESPONSE_TOO_LARGE";

/// One segment of a response path: an object key or a list index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSegment {
    /// A response key (the alias, or the field name).
    Key(String),
    /// A list index.
    Index(usize),
}

impl PathSegment {
    fn to_value(&self) -> Value {
        match self {
            PathSegment::Key(k) => Value::String(k.clone()),
            PathSegment::Index(i) => Value::from(*i),
        }
    }
}

/// A GraphQL error before it is rendered to JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphQLError {
    /// Human-readable description.
    pub message: String,
    /// Where in the document the error is (1-based line and column).
    pub locations: Vec<Pos>,
    /// The response path of the field the error belongs to (empty: none).
    pub path: Vec<PathSegment>,
    /// The stable `extensions.code`.
    pub code: String,
    /// More `extensions` entries next to `code` (for an upstream failure,
    /// its `grpcStatus` and `details`); boxed, as most errors have none.
    pub extensions: Option<Box<Map<String, Value>>>,
}

/// The message, with the location of the first position and the code:
/// `message (line:column) [CODE]`.
impl std::fmt::Display for GraphQLError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        if let Some(pos) = self.locations.first() {
            write!(f, " ({}:{})", pos.line, pos.column)?;
        }
        write!(f, " [{}]", self.code)
    }
}

impl std::error::Error for GraphQLError {}

impl GraphQLError {
    /// An error with `message` and `code`, no location and no path.
    pub fn new(message: impl Into<String>, code: &str) -> Self {
        GraphQLError {
            message: message.into(),
            locations: Vec::new(),
            path: Vec::new(),
            code: code.to_string(),
            extensions: None,
        }
    }

    /// A validation error at `pos`.
    pub fn validation(message: impl Into<String>, pos: Pos) -> Self {
        GraphQLError::new(message, VALIDATION_FAILED).at(pos)
    }

    /// Adds a location.
    pub fn at(mut self, pos: Pos) -> Self {
        self.locations.push(pos);
        self
    }

    /// Sets the response path.
    pub fn with_path(mut self, path: Vec<PathSegment>) -> Self {
        self.path = path;
        self
    }

    /// Adds the `extensions` entries of `extra` (next to `code`).
    pub fn with_extensions(mut self, extra: Map<String, Value>) -> Self {
        if !extra.is_empty() {
            self.extensions
                .get_or_insert_with(Default::default)
                .extend(extra);
        }
        self
    }

    /// Renders the error in the shape of the GraphQL spec (section 7.1.2).
    pub fn to_value(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("message".into(), Value::String(self.message.clone()));
        if !self.locations.is_empty() {
            obj.insert(
                "locations".into(),
                Value::Array(
                    self.locations
                        .iter()
                        .map(|p| json!({"line": p.line, "column": p.column}))
                        .collect(),
                ),
            );
        }
        if !self.path.is_empty() {
            obj.insert(
                "path".into(),
                Value::Array(self.path.iter().map(PathSegment::to_value).collect()),
            );
        }
        let mut extensions = Map::new();
        extensions.insert("code".into(), Value::String(self.code.clone()));
        for (key, value) in self.extensions.iter().flat_map(|extra| extra.iter()) {
            if key != "code" {
                extensions.insert(key.clone(), value.clone());
            }
        }
        obj.insert("extensions".into(), Value::Object(extensions));
        Value::Object(obj)
    }
}

/// Renders a list of errors.
pub fn to_values(errors: &[GraphQLError]) -> Vec<Value> {
    errors.iter().map(GraphQLError::to_value).collect()
}

/// Turns a graphql-parser parse error into a spec-shaped error, recovering
/// the position from its text ("... Parse error at 3:7\nUnexpected ...")
/// because the parser exposes it only there.
pub fn from_parse_error(text: &str) -> GraphQLError {
    let mut message = clean_parse_message(text.trim_start_matches("query parse error: "));
    let mut err = GraphQLError::new("", PARSE_FAILED);
    if let Some(idx) = text.find("Parse error at ") {
        let rest = &text[idx + "Parse error at ".len()..];
        let coords: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == ':')
            .collect();
        let mut parts = coords.split(':');
        if let (Some(Ok(line)), Some(Ok(column))) = (
            parts.next().map(str::parse::<usize>),
            parts.next().map(str::parse::<usize>),
        ) {
            err = err.at(Pos { line, column });
        }
    }
    message.insert_str(0, "Syntax Error: ");
    err.message = message;
    err
}

/// The parser's message without its position line (the position goes to
/// `locations` or the `file:line:col` prefix) and without the token kinds
/// it prints inside quotes (`` `)[Punctuator]` `` becomes `` `)` ``).
pub(crate) fn clean_parse_message(text: &str) -> String {
    let mut lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Parse error at "))
        .map(str::to_string)
        .collect();
    for line in &mut lines {
        for kind in [
            "Punctuator",
            "Name",
            "IntValue",
            "FloatValue",
            "StringValue",
            "BlockString",
        ] {
            *line = line.replace(&format!("[{kind}]`"), "`");
        }
    }
    lines.join("; ")
}
