//! The start-up check of a schema's `@grpc` fields against the compiled
//! descriptors of their upstreams, so a typo is a start-up error with
//! `file:line:col` and a fix, never a silent null at run time.
//!
//! For every root field with `@grpc`:
//!
//! - the method exists, is not client-streaming, and its kind matches the
//!   root type (a `Subscription` field needs a server-streaming method; a
//!   `Query` or `Mutation` field a unary one);
//! - every argument (and, recursively, every input-object field) names a
//!   request field, by proto name or proto3 JSON name, of a compatible type
//!   (the table in `docs/schema.md`): lists to repeated fields, input objects
//!   to messages, enums value by value; an argument named after a `oneof` is
//!   a `@oneOf` input object whose fields are that oneof's members;
//!   `@grpc(request: "arg")` maps that argument onto the whole request;
//! - the `result:` path resolves in the response message, and every output
//!   field (by `@from`, proto or JSON name, or by its own name) resolves to a
//!   response field of a compatible type, recursively through object types.
//!
//! It reads the SDL (positions come from its syntax tree); the schema has
//! been loaded and checked by `terminus_core::graphql::Schema::parse` first.

use graphql_parser::schema::{self as ast, Definition, TypeDefinition, TypeExtension};
use graphql_parser::Pos;
use prost_reflect::{
    DescriptorPool, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor,
};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use terminus_core::graphql::lower_camel;

type Doc = ast::Document<'static, String>;
type Field = ast::Field<'static, String>;
type InputValue = ast::InputValue<'static, String>;
type Type = ast::Type<'static, String>;
type Directive = ast::Directive<'static, String>;

/// One mismatch between the schema and a proto. `Display` is
/// `file:line:col: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckError {
    /// The schema file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong and what would fix it.
    pub message: String,
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// Checks every `@grpc` field of `sdl` (read from `file`) against the
/// descriptors `pools` gives for each upstream name. An upstream it gives
/// none for is skipped (the server reports unconfigured upstreams). Returns
/// every mismatch, in the order of the SDL.
pub fn check_schema(
    sdl: &str,
    file: &str,
    pools: &dyn Fn(&str) -> Option<DescriptorPool>,
) -> Result<(), Vec<CheckError>> {
    let doc: Doc = match graphql_parser::parse_schema::<String>(sdl) {
        Ok(doc) => doc.into_static(),
        Err(error) => {
            return Err(vec![CheckError {
                file: file.to_owned(),
                line: 1,
                column: 1,
                message: error.to_string(),
            }])
        }
    };
    let mut checker = Checker::new(&doc, file);
    for (kind, root) in checker.roots.clone() {
        let Some(Def::Object(fields)) = checker.types.get(root.as_str()) else {
            continue;
        };
        for field in fields.clone() {
            if let Some(directive) = field.directives.iter().find(|d| d.name == "grpc") {
                checker.root_field(kind, &root, field, directive, pools);
            }
        }
    }
    if checker.errors.is_empty() {
        Ok(())
    } else {
        Err(checker.errors)
    }
}

/// The root types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Root {
    Query,
    Mutation,
    Subscription,
}

/// A named type of the SDL, with the definitions of `extend type` merged.
#[derive(Debug, Clone)]
enum Def<'a> {
    Scalar,
    Object(Vec<&'a Field>),
    Enum(Vec<&'a ast::EnumValue<'static, String>>),
    Input {
        fields: Vec<&'a InputValue>,
        one_of: bool,
    },
    /// Interfaces and unions (refused by the core's loader).
    Other,
}

/// The scalars Terminus knows by name; any other scalar the SDL declares
/// passes values through and fits every proto type.
const KNOWN_SCALARS: [&str; 11] = [
    "Int",
    "Float",
    "String",
    "Boolean",
    "ID",
    "Int64",
    "UInt64",
    "Bytes",
    "Timestamp",
    "Duration",
    "JSON",
];

/// A proto field's value class, wrappers unwrapped.
#[derive(Debug, Clone)]
enum Proto {
    I32,
    U32,
    I64,
    U64,
    Float,
    Bool,
    Str,
    Bytes,
    Timestamp,
    Duration,
    FieldMask,
    /// Struct, Value, ListValue, Any, Empty: free-form JSON.
    Json,
    Enum(EnumDescriptor),
    Message(MessageDescriptor),
}

impl Proto {
    fn of(kind: &Kind) -> Proto {
        match kind {
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Proto::I32,
            Kind::Uint32 | Kind::Fixed32 => Proto::U32,
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Proto::I64,
            Kind::Uint64 | Kind::Fixed64 => Proto::U64,
            Kind::Float | Kind::Double => Proto::Float,
            Kind::Bool => Proto::Bool,
            Kind::String => Proto::Str,
            Kind::Bytes => Proto::Bytes,
            Kind::Enum(e) => Proto::Enum(e.clone()),
            Kind::Message(m) => match m.full_name() {
                "google.protobuf.Timestamp" => Proto::Timestamp,
                "google.protobuf.Duration" => Proto::Duration,
                "google.protobuf.FieldMask" => Proto::FieldMask,
                "google.protobuf.Struct"
                | "google.protobuf.Value"
                | "google.protobuf.ListValue"
                | "google.protobuf.Any"
                | "google.protobuf.Empty" => Proto::Json,
                "google.protobuf.DoubleValue" | "google.protobuf.FloatValue" => Proto::Float,
                "google.protobuf.Int64Value" => Proto::I64,
                "google.protobuf.UInt64Value" => Proto::U64,
                "google.protobuf.Int32Value" => Proto::I32,
                "google.protobuf.UInt32Value" => Proto::U32,
                "google.protobuf.BoolValue" => Proto::Bool,
                "google.protobuf.StringValue" => Proto::Str,
                "google.protobuf.BytesValue" => Proto::Bytes,
                _ => Proto::Message(m.clone()),
            },
        }
    }

    /// How the proto type is written in messages.
    fn describe(kind: &Kind) -> String {
        match kind {
            Kind::Message(m) => m.full_name().to_owned(),
            Kind::Enum(e) => format!("enum {}", e.full_name()),
            other => format!("{other:?}").to_lowercase(),
        }
    }

    /// The GraphQL scalars that fit this proto type; the first is the one
    /// to suggest.
    fn scalars(&self) -> &'static [&'static str] {
        match self {
            Proto::I32 => &["Int", "Int64", "Float", "ID"],
            Proto::U32 => &["Int", "UInt64", "Int64", "Float", "ID"],
            Proto::I64 => &["Int64", "Int", "String", "ID", "Float"],
            Proto::U64 => &["UInt64", "Int", "String", "ID", "Float"],
            Proto::Float => &["Float"],
            Proto::Bool => &["Boolean"],
            Proto::Str => &["String", "ID"],
            Proto::Bytes => &["Bytes", "String"],
            Proto::Timestamp => &["Timestamp", "String"],
            Proto::Duration => &["Duration", "String"],
            Proto::FieldMask => &["String"],
            Proto::Json => &["JSON"],
            Proto::Enum(_) => &["String"],
            Proto::Message(_) => &[],
        }
    }
}

/// Which way values flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Input,
    Output,
}

struct Checker<'a> {
    file: String,
    types: HashMap<&'a str, Def<'a>>,
    roots: Vec<(Root, String)>,
    errors: Vec<CheckError>,
    /// (GraphQL type, message, flow) pairs already checked, so recursive
    /// types end and shared types are checked (and reported) once.
    seen: HashSet<(String, String, bool)>,
}

impl<'a> Checker<'a> {
    fn new(doc: &'a Doc, file: &str) -> Self {
        let mut types: HashMap<&str, Def<'a>> = HashMap::new();
        let mut schema_roots: Option<&ast::SchemaDefinition<'static, String>> = None;
        for definition in &doc.definitions {
            match definition {
                Definition::SchemaDefinition(schema) => schema_roots = Some(schema),
                Definition::TypeDefinition(t) => {
                    let (name, def) = match t {
                        TypeDefinition::Scalar(s) => (&s.name, Def::Scalar),
                        TypeDefinition::Object(o) => {
                            (&o.name, Def::Object(o.fields.iter().collect()))
                        }
                        TypeDefinition::Enum(e) => (&e.name, Def::Enum(e.values.iter().collect())),
                        TypeDefinition::InputObject(i) => (
                            &i.name,
                            Def::Input {
                                fields: i.fields.iter().collect(),
                                one_of: i.directives.iter().any(|d| d.name == "oneOf"),
                            },
                        ),
                        TypeDefinition::Interface(i) => (&i.name, Def::Other),
                        TypeDefinition::Union(u) => (&u.name, Def::Other),
                    };
                    types.insert(name.as_str(), def);
                }
                _ => {}
            }
        }
        for definition in &doc.definitions {
            if let Definition::TypeExtension(TypeExtension::Object(extension)) = definition {
                if let Some(Def::Object(fields)) = types.get_mut(extension.name.as_str()) {
                    fields.extend(extension.fields.iter());
                }
            }
        }
        let name = |explicit: Option<&Option<String>>, default: &str| -> Option<String> {
            match explicit {
                Some(explicit) => explicit.clone(),
                None => types.contains_key(default).then(|| default.to_owned()),
            }
        };
        let mut roots = Vec::new();
        for (root, default, explicit) in [
            (Root::Query, "Query", schema_roots.map(|s| &s.query)),
            (
                Root::Mutation,
                "Mutation",
                schema_roots.map(|s| &s.mutation),
            ),
            (
                Root::Subscription,
                "Subscription",
                schema_roots.map(|s| &s.subscription),
            ),
        ] {
            if let Some(name) = name(explicit, default) {
                roots.push((root, name));
            }
        }
        Checker {
            file: file.to_owned(),
            types,
            roots,
            errors: Vec::new(),
            seen: HashSet::new(),
        }
    }

    fn error(&mut self, pos: Pos, message: String) {
        let error = CheckError {
            file: self.file.clone(),
            line: pos.line,
            column: pos.column,
            message,
        };
        // A type reached both as input and as output may report twice.
        if !self.errors.contains(&error) {
            self.errors.push(error);
        }
    }

    fn root_field(
        &mut self,
        root: Root,
        root_name: &str,
        field: &'a Field,
        directive: &'a Directive,
        pools: &dyn Fn(&str) -> Option<DescriptorPool>,
    ) {
        let arg = |name: &str| {
            directive
                .arguments
                .iter()
                .find_map(|(key, value)| match value {
                    ast::Value::String(text) if key == name => Some(text.clone()),
                    _ => None,
                })
        };
        let (Some(upstream), Some(method_name)) = (arg("upstream"), arg("method")) else {
            return;
        };
        let Some(pool) = pools(&upstream) else {
            return;
        };
        let at = format!("{root_name}.{}", field.name);
        let Some(method) = self.method(&pool, &upstream, &method_name, directive.position, &at)
        else {
            return;
        };
        if method.is_client_streaming() {
            self.error(
                directive.position,
                format!(
                    "{at}: {method_name} is client-streaming, which Terminus does not call; \
                     map the field to a unary or server-streaming method"
                ),
            );
            return;
        }
        // With the wrong kind of method, its messages are not the ones meant
        // either: report the kind alone.
        match (root, method.is_server_streaming()) {
            (Root::Subscription, false) => {
                return self.error(
                    directive.position,
                    format!(
                        "{at}: {method_name} is unary, but a Subscription field needs a \
                     server-streaming method; move the field to Query or Mutation, or map \
                     it to a method that returns a stream"
                    ),
                )
            }
            (Root::Query | Root::Mutation, true) => {
                return self.error(
                    directive.position,
                    format!(
                        "{at}: {method_name} is server-streaming, so it belongs on Subscription; \
                     move the field there, or map it to a unary method"
                    ),
                )
            }
            _ => {}
        }
        let input = method.input();
        let whole = arg("request");
        if let Some(name) = &whole {
            if !field.arguments.iter().any(|a| &a.name == name) {
                self.error(
                    directive.position,
                    format!(
                        "{at}: @grpc(request: {name:?}) names no argument of the field; \
                         add the argument `{name}: {}Input!` or name one of: {}",
                        input.name(),
                        list(field.arguments.iter().map(|a| a.name.as_str()))
                    ),
                );
            }
        }
        for argument in &field.arguments {
            if whole.as_deref() == Some(argument.name.as_str()) {
                self.whole_message(argument, &input, &at);
            } else {
                self.input_value(argument, &input, &format!("{at}({})", argument.name));
            }
        }
        self.output_root(field, directive, &method, &arg("result"), &at);
    }

    /// Finds `package.Service/Method`, or reports what is missing.
    fn method(
        &mut self,
        pool: &DescriptorPool,
        upstream: &str,
        name: &str,
        pos: Pos,
        at: &str,
    ) -> Option<MethodDescriptor> {
        let path = name.trim_start_matches('/');
        let Some((service_name, method_name)) = path.rsplit_once('/') else {
            self.error(
                pos,
                format!("{at}: method {name:?} is not of the form package.Service/Method"),
            );
            return None;
        };
        let Some(service) = pool.get_service_by_name(service_name) else {
            let services: Vec<String> = pool.services().map(|s| s.full_name().to_owned()).collect();
            self.error(
                pos,
                format!(
                    "{at}: upstream {upstream:?} has no service {service_name}{}; its services: {}",
                    did_you_mean(service_name, services.iter().map(String::as_str)),
                    list(services.iter().map(String::as_str))
                ),
            );
            return None;
        };
        let found = service.methods().find(|m| m.name() == method_name);
        if found.is_none() {
            let methods: Vec<String> = service.methods().map(|m| m.name().to_owned()).collect();
            self.error(
                pos,
                format!(
                    "{at}: service {service_name} has no method {method_name}{}; its methods: {}",
                    did_you_mean(method_name, methods.iter().map(String::as_str)),
                    list(methods.iter().map(String::as_str))
                ),
            );
        }
        found
    }

    /// An argument or input field against the fields of `message`.
    fn input_value(&mut self, value: &'a InputValue, message: &MessageDescriptor, at: &str) {
        if let Some(proto) = find_field(message, &value.name) {
            self.fits(&value.value_type, &proto, Flow::Input, value.position, at);
            return;
        }
        if let Some(oneof) = message
            .oneofs()
            .filter(|o| !o.is_synthetic())
            .find(|o| o.name() == value.name || lower_camel(o.name()) == value.name)
        {
            let named = named(&value.value_type).to_owned();
            match self.types.get(named.as_str()).cloned() {
                Some(Def::Input { fields, one_of }) => {
                    if !one_of {
                        self.error(
                            value.position,
                            format!(
                                "{at}: {named} stands for oneof {} of {}, so at most one of its \
                                 fields may be set: declare it `input {named} @oneOf`",
                                oneof.name(),
                                message.full_name()
                            ),
                        );
                    }
                    if is_list(&value.value_type) {
                        self.error(
                            value.position,
                            format!(
                                "{at}: oneof {} is not repeated; use {named}, not a list",
                                oneof.name()
                            ),
                        );
                    }
                    for member in fields {
                        let inner = format!("{named}.{}", member.name);
                        match oneof.fields().find(|f| matches_name(f, &member.name)) {
                            Some(proto) => self.fits(
                                &member.value_type,
                                &proto,
                                Flow::Input,
                                member.position,
                                &inner,
                            ),
                            None => {
                                let names: Vec<String> =
                                    oneof.fields().map(|f| f.json_name().to_owned()).collect();
                                self.error(
                                    member.position,
                                    format!(
                                        "{inner}: oneof {} of {} has no member {}{}; its members: {}",
                                        oneof.name(),
                                        message.full_name(),
                                        member.name,
                                        did_you_mean(&member.name, names.iter().map(String::as_str)),
                                        list(names.iter().map(String::as_str))
                                    ),
                                );
                            }
                        }
                    }
                }
                _ => self.error(
                    value.position,
                    format!(
                        "{at}: {} is oneof {} of {}; its type must be a @oneOf input object \
                         with one field per member ({})",
                        value.name,
                        oneof.name(),
                        message.full_name(),
                        list(
                            oneof
                                .fields()
                                .map(|f| f.json_name().to_owned())
                                .collect::<Vec<_>>()
                                .iter()
                                .map(String::as_str)
                        )
                    ),
                ),
            }
            return;
        }
        let names = field_names(message);
        self.error(
            value.position,
            format!(
                "{at}: request message {} has no field {}{}; rename it to one of: {}",
                message.full_name(),
                value.name,
                did_you_mean(&value.name, names.iter().map(String::as_str)),
                list(names.iter().map(String::as_str))
            ),
        );
    }

    /// `@grpc(request:)`: the argument is the whole request message.
    fn whole_message(&mut self, argument: &'a InputValue, message: &MessageDescriptor, at: &str) {
        let at = format!("{at}({})", argument.name);
        if is_list(&argument.value_type) {
            self.error(
                argument.position,
                format!(
                    "{at}: the request is one {} message, not a list",
                    message.full_name()
                ),
            );
            return;
        }
        let named = named(&argument.value_type).to_owned();
        self.message_type(&named, message, Flow::Input, argument.position, &at);
    }

    /// The root field's value: the `result:` path, then its type.
    fn output_root(
        &mut self,
        field: &'a Field,
        directive: &'a Directive,
        method: &MethodDescriptor,
        result: &Option<String>,
        at: &str,
    ) {
        let output = method.output();
        let Some(result) = result.as_deref().filter(|r| !r.is_empty()) else {
            if is_list(&field.field_type) {
                self.error(
                    field.position,
                    format!(
                        "{at}: {} returns one {} message, not a list; drop the list, or add \
                         @grpc(result: \"...\") naming a repeated field",
                        method.full_name(),
                        output.full_name()
                    ),
                );
                return;
            }
            let named = named(&field.field_type).to_owned();
            self.message_type(&named, &output, Flow::Output, field.position, at);
            return;
        };
        let mut message = output;
        let parts: Vec<&str> = result.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let Some(proto) = find_field(&message, part) else {
                let names = field_names(&message);
                self.error(
                    directive.position,
                    format!(
                        "{at}: result {result:?}: message {} has no field {part}{}; its fields: {}",
                        message.full_name(),
                        did_you_mean(part, names.iter().map(String::as_str)),
                        list(names.iter().map(String::as_str))
                    ),
                );
                return;
            };
            if i + 1 == parts.len() {
                self.fits(&field.field_type, &proto, Flow::Output, field.position, at);
                return;
            }
            match proto.kind() {
                Kind::Message(next) if !proto.is_list() && !proto.is_map() => message = next,
                _ => {
                    self.error(
                        directive.position,
                        format!(
                            "{at}: result {result:?}: {} of {} is not a single message, so the \
                             path cannot go past it; end the path at {part}",
                            proto.name(),
                            message.full_name()
                        ),
                    );
                    return;
                }
            }
        }
    }

    /// A GraphQL type written where `proto` goes.
    fn fits(&mut self, ty: &Type, proto: &FieldDescriptor, flow: Flow, pos: Pos, at: &str) {
        let named = named(ty).to_owned();
        let list = is_list(ty);
        if matches!(list_depth(ty), n if n > 1) {
            self.error(
                pos,
                format!(
                    "{at}: protobuf has no lists of lists; {} is {ty}",
                    proto.full_name()
                ),
            );
            return;
        }
        if proto.is_map() {
            if !(named == "JSON" || self.is_custom_scalar(&named)) || list {
                self.error(
                    pos,
                    format!(
                        "{at}: {} is a map, which is a JSON object: declare it JSON",
                        proto.full_name()
                    ),
                );
            }
            return;
        }
        // One JSON value may hold a whole repeated field.
        let json_whole = named == "JSON" && !list;
        if proto.is_list() != list && !json_whole {
            let fix = if proto.is_list() {
                format!("it is repeated in the proto: make it [{named}]")
            } else {
                format!("it is a single value in the proto: make it {named}")
            };
            self.error(
                pos,
                format!("{at}: {} is {ty}, but {fix}", proto.full_name()),
            );
            return;
        }
        let class = Proto::of(&proto.kind());
        match class {
            Proto::Message(message) => {
                self.message_type(&named, &message, flow, pos, at);
            }
            Proto::Enum(proto_enum) => self.enum_type(&named, &proto_enum, flow, pos, at),
            other => {
                if !(other.scalars().contains(&named.as_str())
                    || self.is_custom_scalar(&named)
                    || named == "JSON")
                {
                    let want = other.scalars().first().copied().unwrap_or("JSON");
                    self.error(
                        pos,
                        format!(
                            "{at}: {} is {}, which {named} cannot hold; declare it {want}{}",
                            proto.full_name(),
                            Proto::describe(&proto.kind()),
                            if other.scalars().len() > 1 {
                                format!(" (or {})", other.scalars()[1..].join(", "))
                            } else {
                                String::new()
                            }
                        ),
                    );
                }
            }
        }
    }

    fn is_custom_scalar(&self, named: &str) -> bool {
        matches!(self.types.get(named), Some(Def::Scalar)) && !KNOWN_SCALARS.contains(&named)
    }

    /// A GraphQL enum (or String) against a proto enum, value by value.
    fn enum_type(&mut self, named: &str, proto: &EnumDescriptor, flow: Flow, pos: Pos, at: &str) {
        if named == "String" || named == "JSON" || self.is_custom_scalar(named) {
            return;
        }
        let Some(Def::Enum(values)) = self.types.get(named).cloned() else {
            self.error(
                pos,
                format!(
                    "{at}: the proto has enum {} here; declare a GraphQL enum with its values ({}) or use String",
                    proto.full_name(),
                    list(proto.values().map(|v| v.name().to_owned()).collect::<Vec<_>>().iter().map(String::as_str))
                ),
            );
            return;
        };
        if !self.seen.insert((
            named.to_owned(),
            proto.full_name().to_owned(),
            flow == Flow::Input,
        )) {
            return;
        }
        let proto_values: Vec<String> = proto.values().map(|v| v.name().to_owned()).collect();
        let ours: BTreeSet<&str> = values.iter().map(|v| v.name.as_str()).collect();
        if flow == Flow::Input {
            for value in &values {
                if !proto_values.contains(&value.name) {
                    self.error(
                        value.position,
                        format!(
                            "{named}.{}: enum {} has no value {}{}; remove it or rename it to one of: {}",
                            value.name,
                            proto.full_name(),
                            value.name,
                            did_you_mean(&value.name, proto_values.iter().map(String::as_str)),
                            list(proto_values.iter().map(String::as_str))
                        ),
                    );
                }
            }
        } else {
            let missing: Vec<&str> = proto_values
                .iter()
                .map(String::as_str)
                .filter(|v| !ours.contains(v))
                .collect();
            if !missing.is_empty() {
                self.error(
                    pos,
                    format!(
                        "{at}: enum {named} lacks {} of {}, which a response may carry; add {} to enum {named}",
                        list(missing.iter().copied()),
                        proto.full_name(),
                        if missing.len() == 1 { "it" } else { "them" }
                    ),
                );
            }
            for value in &values {
                if !proto_values.contains(&value.name) {
                    self.error(
                        value.position,
                        format!(
                            "{named}.{}: enum {} has no value {}{}; remove it or rename it to one of: {}",
                            value.name,
                            proto.full_name(),
                            value.name,
                            did_you_mean(&value.name, proto_values.iter().map(String::as_str)),
                            list(proto_values.iter().map(String::as_str))
                        ),
                    );
                }
            }
        }
    }

    /// A GraphQL object (output) or input object (input) type against a
    /// message, field by field.
    fn message_type(
        &mut self,
        named: &str,
        message: &MessageDescriptor,
        flow: Flow,
        pos: Pos,
        at: &str,
    ) {
        if named == "JSON" || self.is_custom_scalar(named) {
            return;
        }
        let def = self.types.get(named).cloned();
        match (def, flow) {
            (Some(Def::Object(fields)), Flow::Output) => {
                if !self
                    .seen
                    .insert((named.to_owned(), message.full_name().to_owned(), false))
                {
                    return;
                }
                for field in fields {
                    self.output_field(named, field, message);
                }
            }
            (Some(Def::Input { fields, .. }), Flow::Input) => {
                if !self
                    .seen
                    .insert((named.to_owned(), message.full_name().to_owned(), true))
                {
                    return;
                }
                for field in fields {
                    let inner = format!("{named}.{}", field.name);
                    self.input_value(field, message, &inner);
                }
            }
            _ => {
                let want = match flow {
                    Flow::Output => format!("an object type with fields of {}", message.name()),
                    Flow::Input => format!("an input object with fields of {}", message.name()),
                };
                self.error(
                    pos,
                    format!(
                        "{at}: the proto has message {} here, which {named} cannot hold; use {want} (or JSON)",
                        message.full_name()
                    ),
                );
            }
        }
    }

    /// A field of an object type against the fields of `message`.
    fn output_field(&mut self, type_name: &str, field: &'a Field, message: &MessageDescriptor) {
        let at = format!("{type_name}.{}", field.name);
        let from = field.directives.iter().find(|d| d.name == "from");
        let key = from.and_then(|d| {
            d.arguments.iter().find_map(|(k, v)| match v {
                ast::Value::String(text) if k == "field" => Some(text.clone()),
                _ => None,
            })
        });
        let found = match &key {
            Some(key) => find_field(message, key),
            None => find_field(message, &field.name),
        };
        let Some(proto) = found else {
            let names = field_names(message);
            let wanted = key.as_deref().unwrap_or(&field.name);
            let pos = from.map_or(field.position, |d| d.position);
            let hint = did_you_mean(wanted, names.iter().map(String::as_str));
            self.error(
                pos,
                format!(
                    "{at}: response message {} has no field {wanted}{hint}; rename the field or \
                     add @from(field: \"...\") naming one of: {}",
                    message.full_name(),
                    list(names.iter().map(String::as_str))
                ),
            );
            return;
        };
        self.fits(&field.field_type, &proto, Flow::Output, field.position, &at);
    }
}

/// The field of `message` named `name` by its proto name, its proto3 JSON
/// name, or the lowerCamelCase of `name`.
fn find_field(message: &MessageDescriptor, name: &str) -> Option<FieldDescriptor> {
    message.fields().find(|f| matches_name(f, name))
}

fn matches_name(field: &FieldDescriptor, name: &str) -> bool {
    field.name() == name || field.json_name() == name || field.json_name() == lower_camel(name)
}

fn field_names(message: &MessageDescriptor) -> Vec<String> {
    message.fields().map(|f| f.json_name().to_owned()).collect()
}

fn named(ty: &Type) -> &str {
    match ty {
        Type::NamedType(name) => name,
        Type::ListType(inner) | Type::NonNullType(inner) => named(inner),
    }
}

fn is_list(ty: &Type) -> bool {
    list_depth(ty) > 0
}

fn list_depth(ty: &Type) -> usize {
    match ty {
        Type::NamedType(_) => 0,
        Type::ListType(inner) => 1 + list_depth(inner),
        Type::NonNullType(inner) => list_depth(inner),
    }
}

fn list<'s>(names: impl Iterator<Item = &'s str>) -> String {
    let names: Vec<&str> = names.collect();
    if names.is_empty() {
        "(none)".to_owned()
    } else {
        names.join(", ")
    }
}

/// `"; did you mean X?"`-style hint: the closest candidate within a small
/// edit distance (case-insensitive), or nothing.
fn did_you_mean<'s>(wanted: &str, candidates: impl Iterator<Item = &'s str>) -> String {
    let wanted_lower = wanted.to_lowercase();
    let best = candidates
        .map(|c| (distance(&wanted_lower, &c.to_lowercase()), c))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((d, candidate)) if d <= 2.max(wanted.len() / 3) => {
            format!(" (did you mean {candidate}?)")
        }
        _ => String::new(),
    }
}

/// Levenshtein distance.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = if ca == *cb {
                previous
            } else {
                1 + previous.min(row[j]).min(row[j + 1])
            };
            previous = current;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOP_SDL: &str = include_str!("../../../tests/grpc-python/shop.graphql");

    fn shop_pool() -> DescriptorPool {
        DescriptorPool::decode(terminus_proto::SHOP_DESCRIPTOR_SET).unwrap()
    }

    fn check(sdl: &str) -> Result<(), Vec<CheckError>> {
        let pool = shop_pool();
        check_schema(sdl, "shop.graphql", &|name| {
            (name == "shop").then(|| pool.clone())
        })
    }

    /// The shop schema with `from` replaced by `to` (which must occur), and
    /// its one error: `(line:col, message)`.
    fn one_error(from: &str, to: &str) -> (String, String) {
        assert!(SHOP_SDL.contains(from), "the shop schema has no {from:?}");
        let sdl = SHOP_SDL.replacen(from, to, 1);
        let errors = check(&sdl).expect_err("the changed schema is refused");
        assert_eq!(errors.len(), 1, "{errors:#?}");
        let error = &errors[0];
        assert!(error.to_string().starts_with("shop.graphql:"), "{error}");
        (
            format!("{}:{}", error.line, error.column),
            error.message.clone(),
        )
    }

    /// 1-based line:col of the first `needle` in `sdl` after `from` -> `to`.
    fn at(from: &str, to: &str, needle: &str) -> String {
        let sdl = SHOP_SDL.replacen(from, to, 1);
        let offset = sdl.find(needle).expect("needle");
        let line = sdl[..offset].matches('\n').count() + 1;
        let column = offset - sdl[..offset].rfind('\n').map_or(0, |i| i + 1) + 1;
        format!("{line}:{column}")
    }

    #[test]
    fn the_shop_schema_matches_its_proto() {
        check(SHOP_SDL).unwrap();
        // An upstream without descriptors here is not checked.
        check_schema(SHOP_SDL, "shop.graphql", &|_| None).unwrap();
    }

    #[test]
    fn the_demo_and_example_schemas_match_their_protos() {
        let demo = DescriptorPool::decode(terminus_proto::FILE_DESCRIPTOR_SET).unwrap();
        let pools = |name: &str| (name == "demo").then(|| demo.clone());
        check_schema(
            terminus_core::graphql::demo::SCHEMA_SDL,
            terminus_core::graphql::demo::SCHEMA_FILE,
            &pools,
        )
        .unwrap();
        check_schema(
            include_str!("../../../examples/schema.graphql"),
            "examples/schema.graphql",
            &pools,
        )
        .unwrap();
    }

    #[test]
    fn a_missing_service_is_refused() {
        let (_, message) = one_error(
            "terminus.shop.v1.Catalog/GetProduct",
            "terminus.shop.v1.Catalogue/GetProduct",
        );
        assert!(
            message.contains("has no service terminus.shop.v1.Catalogue"),
            "{message}"
        );
        assert!(
            message.contains("did you mean terminus.shop.v1.Catalog?"),
            "{message}"
        );
    }

    #[test]
    fn a_missing_method_is_refused_where_the_directive_is() {
        let (pos, message) = one_error("Catalog/GetProduct", "Catalog/GetProdct");
        assert_eq!(
            pos,
            at(
                "Catalog/GetProduct",
                "Catalog/GetProdct",
                "@grpc(upstream: \"shop\", method: \"terminus.shop.v1.Catalog/GetProdct"
            )
        );
        assert!(message.starts_with("Query.product: service terminus.shop.v1.Catalog has no method GetProdct (did you mean GetProduct?)"), "{message}");
    }

    #[test]
    fn a_subscription_on_a_unary_method_is_refused() {
        let (_, message) = one_error("Orders/WatchOrder", "Orders/GetOrder");
        assert!(
            message.contains("is unary, but a Subscription field needs a server-streaming method"),
            "{message}"
        );
    }

    #[test]
    fn a_query_on_a_server_stream_is_refused() {
        let (_, message) = one_error("Inventory/GetStock", "Inventory/WatchStock");
        assert!(
            message.contains("is server-streaming, so it belongs on Subscription"),
            "{message}"
        );
    }

    #[test]
    fn an_argument_the_request_lacks_is_refused() {
        let (pos, message) = one_error("product(sku: String!)", "product(skuu: String!)");
        assert_eq!(
            pos,
            at("product(sku: String!)", "product(skuu: String!)", "skuu")
        );
        assert!(message.contains("request message terminus.shop.v1.GetProductRequest has no field skuu (did you mean sku?)"), "{message}");
    }

    #[test]
    fn an_argument_of_the_wrong_type_is_refused() {
        let (_, message) = one_error("products(pageSize: Int,", "products(pageSize: String,");
        assert!(message.contains("terminus.shop.v1.ListProductsRequest.page_size is int32, which String cannot hold; declare it Int"), "{message}");
    }

    #[test]
    fn a_list_for_a_single_field_and_the_reverse_are_refused() {
        let (_, message) = one_error("watchStock(skus: [String!]", "watchStock(skus: String");
        assert!(
            message.contains("it is repeated in the proto: make it [String]"),
            "{message}"
        );
        let (_, message) = one_error("product(sku: String!)", "product(sku: [String!])");
        assert!(
            message.contains("it is a single value in the proto"),
            "{message}"
        );
    }

    #[test]
    fn an_input_object_field_the_message_lacks_is_refused() {
        let (_, message) = one_error("  iban: String!", "  ibna: String!");
        assert!(message.starts_with("BankTransferInput.ibna: request message terminus.shop.v1.BankTransfer has no field ibna (did you mean iban?)"), "{message}");
    }

    #[test]
    fn an_input_enum_value_the_proto_lacks_is_refused() {
        let (_, message) = one_error("  ACTIVE\n", "  ACTIVE\n  ON_SALE\n");
        assert!(
            message.contains(
                "ProductState.ON_SALE: enum terminus.shop.v1.ProductState has no value ON_SALE"
            ),
            "{message}"
        );
    }

    #[test]
    fn an_output_enum_missing_proto_values_is_refused() {
        let (_, message) = one_error("  SHIPPED\n  CANCELLED\n", "  SHIPPED\n");
        assert!(
            message.contains("enum OrderStatus lacks CANCELLED of terminus.shop.v1.OrderStatus"),
            "{message}"
        );
    }

    #[test]
    fn a_misspelled_output_field_is_refused() {
        let (pos, message) = one_error("  featured: Boolean!", "  featurd: Boolean!");
        assert_eq!(
            pos,
            at("  featured: Boolean!", "  featurd: Boolean!", "featurd")
        );
        assert!(message.starts_with("Product.featurd: response message terminus.shop.v1.Product has no field featurd (did you mean featured?)"), "{message}");
    }

    #[test]
    fn from_accepts_proto_and_json_names_and_refuses_others() {
        check(&SHOP_SDL.replacen(
            "@from(field: \"total_sold\")",
            "@from(field: \"totalSold\")",
            1,
        ))
        .unwrap();
        let (pos, message) = one_error(
            "@from(field: \"total_sold\")",
            "@from(field: \"total_sales\")",
        );
        assert_eq!(
            pos,
            at(
                "@from(field: \"total_sold\")",
                "@from(field: \"total_sales\")",
                "@from"
            )
        );
        assert!(message.contains("has no field total_sales"), "{message}");
    }

    #[test]
    fn a_result_path_the_response_lacks_is_refused() {
        let (_, message) = one_error("result: \"products\"", "result: \"product\"");
        assert!(message.contains("result \"product\": message terminus.shop.v1.ListProductsResponse has no field product (did you mean products?)"), "{message}");
        let (_, message) = one_error("result: \"products\"", "result: \"products.sku\"");
        assert!(message.contains("is not a single message"), "{message}");
    }

    #[test]
    fn an_output_field_of_the_wrong_type_is_refused() {
        let (_, message) = one_error("  name: String!\n  price", "  name: Int!\n  price");
        assert!(
            message.contains(
                "terminus.shop.v1.Product.name is string, which Int cannot hold; declare it String"
            ),
            "{message}"
        );
        let (_, message) = one_error("  total: Int64!", "  total: Boolean!");
        assert!(message.contains("declare it Int64"), "{message}");
        let (_, message) = one_error("  dimensions: Dimensions", "  dimensions: String");
        assert!(
            message.contains("the proto has message terminus.shop.v1.Dimensions here"),
            "{message}"
        );
    }

    #[test]
    fn a_map_must_be_json() {
        let (_, message) = one_error("  attributes: JSON", "  attributes: String");
        assert!(
            message.contains("is a map, which is a JSON object: declare it JSON"),
            "{message}"
        );
    }

    #[test]
    fn oneofs_are_one_of_inputs_of_their_members() {
        let (_, message) = one_error("input PaymentInput @oneOf {", "input PaymentInput {");
        assert!(
            message.contains("declare it `input PaymentInput @oneOf`"),
            "{message}"
        );
        let (_, message) = one_error(
            "  bankTransfer: BankTransferInput\n",
            "  wire: BankTransferInput\n",
        );
        assert!(
            message.contains(
                "oneof payment of terminus.shop.v1.CreateOrderRequest has no member wire"
            ),
            "{message}"
        );
        let (_, message) = one_error("  payment: PaymentInput", "  payment: String");
        assert!(
            message.contains("its type must be a @oneOf input object"),
            "{message}"
        );
    }

    #[test]
    fn request_must_name_an_argument_that_fits_the_whole_message() {
        let sdl = SHOP_SDL.replacen("request: \"input\"", "request: \"order\"", 1);
        let errors = check(&sdl).unwrap_err();
        assert!(
            errors[0]
                .message
                .contains("@grpc(request: \"order\") names no argument"),
            "{errors:#?}"
        );
        // Without request:, `input` is taken for a request field.
        assert!(
            errors[1].message.contains("has no field input"),
            "{errors:#?}"
        );
        let sdl = SHOP_SDL.replacen(
            "createOrder(input: CreateOrderInput!)",
            "createOrder(input: AddressInput!)",
            1,
        );
        let message = check(&sdl).unwrap_err()[0].message.clone();
        assert!(message.starts_with("AddressInput.line1: request message terminus.shop.v1.CreateOrderRequest has no field line1"), "{message}");
    }

    #[test]
    fn every_mismatch_is_reported_at_once() {
        let sdl = SHOP_SDL
            .replacen("Catalog/GetProduct", "Catalog/GetProdct", 1)
            .replacen("  featured: Boolean!", "  featurd: Boolean!", 1);
        assert_eq!(check(&sdl).unwrap_err().len(), 2);
    }
}
