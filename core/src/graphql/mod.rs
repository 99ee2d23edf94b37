//! The pure GraphQL layer: schema loading with the Terminus directives,
//! validation, coercion, introspection, planning of upstream calls, the
//! execution state machine and result shaping.
//!
//! ```text
//! Schema::parse(sdl, file) ──> Schema
//! Execution::start(&schema, &request, &limits)    prepare errors become its
//!                                                 first (terminal) output
//!   poll() ──> Step::Call(CallId, UpstreamCall)   the host runs it
//!              Step::Cancel(CallId)               the host drops it
//!              Step::Output(UpstreamEvent)        for the connection
//!   handle_call_event(CallId, CallEvent)          the host reports it
//! ```
//!
//! The directives are documented in `docs/schema.md`.
//!
//! Modules by concern:
//!
//! | module | owns |
//! | --- | --- |
//! | `schema` | the schema's types (`Schema`, `TypeRef`, `Resolver`, ...) |
//! | `load` | `Schema::parse`: SDL and the Terminus directives, whole-schema checks |
//! | `builtins` | the standard scalars, introspection types, visible directives |
//! | `prepare` | `Schema::prepare` as its named steps |
//! | `validate` | the steps before planning: size, parse, document rules, limits, variables |
//! | `cost` | the cost rule of an operation (`max_cost`, `list_cost`) |
//! | `budget` | `max_response_bytes`, charged while a result is built |
//! | `plan` | the field tree of the chosen operation (`PreparedOperation`) |
//! | `coerce` | input values: literals and JSON to coerced JSON |
//! | `execution` | the `Execution` state machine of one operation |
//! | `introspection` | answers `__schema` / `__type` from the schema |
//! | `names` | lowerCamelCase and snake_case spellings of names |
//! | `shape` | upstream results into the selection set, errors with `path` |
//! | `errors` | spec-shaped GraphQL errors and their codes |
//! | `sql` | `@sql` / `@live` statements with named parameters |
//! | `sql_bounds` | the row-count rule: arguments bound to `LIMIT` / `OFFSET` |
//! | `columns` | the start-up check of SQL fields against their statements' columns |
//! | `batch` | relations: nested `@sql` fields, one statement per level, stitched |
//! | `demo` | the demo schemas that `terminus demo` serves |
//! | `persisted` | persisted queries: APQ and trusted documents, the bounded cache |

mod batch;
mod budget;
mod builtins;
mod coerce;
mod columns;
mod cost;
pub mod demo;
mod errors;
mod execution;
mod introspection;
mod load;
mod names;
pub use names::lower_camel;
pub mod persisted;
mod plan;
mod prepare;
mod reload;
pub use reload::SCHEMA_RELOADED;
mod scalars;
mod schema;
mod shape;
pub mod sql;
mod sql_bounds;
mod validate;

pub use batch::{live_cohort, RelationSql, KEY_COLUMN, MAX_KEYS_PER_STATEMENT};
pub use columns::ColumnCheck;
pub use errors::{
    GraphQLError, PathSegment, BAD_USER_INPUT, INTERNAL_SERVER_ERROR, PARSE_FAILED,
    RESPONSE_TOO_LARGE, VALIDATION_FAILED,
};
pub use execution::{CallEvent, CallId, Execution, Step};
pub use load::{parse_duration, parse_every, MIN_LIVE_EVERY};
pub use plan::PreparedOperation;
pub use scalars::{is_terminus_scalar, SCALARS};
pub use schema::{OperationKind, Resolver, Schema, SchemaError, TypeRef, UpstreamNames};
pub use validate::Limits;
