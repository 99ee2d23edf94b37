//! The pure GraphQL layer: schema loading with the Terminus directives,
//! validation, coercion, introspection, planning of upstream calls, the
//! execution state machine and result shaping.
//!
//! ```text
//! Schema::parse(sdl, file) ──> Schema
//! schema.prepare(&request, &limits) ──> PreparedOperation  (or spec-shaped errors)
//! Execution::new(prepared)
//!   poll_call() ──> (CallId, UpstreamCall)        the host runs it
//!   handle_call_event(CallId, CallEvent)          the host reports it
//!   poll_output() ──> UpstreamEvent               for the connection
//!   poll_cancel() ──> CallId                      the host drops it
//! ```
//!
//! The directives are documented in `docs/schema.md`.

mod coerce;
pub mod demo;
mod errors;
mod execution;
mod introspection;
mod scalars;
mod schema;
mod shape;
pub mod sql;
mod validate;

pub use errors::{
    GraphQLError, PathSegment, BAD_USER_INPUT, INTERNAL_SERVER_ERROR, PARSE_FAILED,
    VALIDATION_FAILED,
};
pub use execution::{CallEvent, CallId, Execution};
pub use scalars::{is_terminus_scalar, SCALARS};
pub use schema::{
    parse_duration, parse_every, OperationKind, Resolver, Schema, SchemaError, TypeRef,
    UpstreamNames, MIN_LIVE_EVERY,
};
pub use validate::{Limits, PreparedOperation};
