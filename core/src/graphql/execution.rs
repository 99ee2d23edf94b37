//! The execution state machine of one prepared operation.
//!
//! It plans one upstream call per root field that needs one (`__typename`
//! and introspection are answered locally), hands the calls out through
//! [`Execution::poll_call`], takes their events through
//! [`Execution::handle_call_event`] and produces the operation's events for
//! the connection through [`Execution::poll_output`]:
//!
//! - query: the root fields' calls run at once; when all have answered, one
//!   `Next({data, errors?})`, then `Complete`. A failed call makes its field
//!   null with an error carrying the failure's code and the field's `path`;
//!   a null in a non-null root field makes `data` null, and the calls still
//!   running are given up ([`Execution::poll_cancel`]).
//! - mutation: the same, except the root fields run one after another, as
//!   the spec requires.
//! - subscription: each stream item becomes one `Next`; the stream's end
//!   becomes `Complete`, its failure `Error([...])` with the failure's code.
//!   For `@live`, a poll whose rows equal the previous poll's emits nothing.

use super::batch;
use super::budget::ResponseBudget;
use super::errors::{GraphQLError, PathSegment};
use super::introspection;
use super::plan::PreparedOperation;
use super::schema::{OperationKind, Resolver, Schema, TypeKind, TypeRef};
use super::shape::{Propagate, Shaper};
use super::sql::SqlStatement;
use super::validate::Limits;
use crate::operation::{EncodedPayload, OperationRequest, UpstreamEvent};
use crate::share::SharedItem;
use crate::upstream::{FailureKind, RequestContext, UpstreamCall, UpstreamFailure};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, VecDeque};

/// Names one upstream call of one execution. Never reused within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallId(pub u64);

impl std::fmt::Display for CallId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "call#{}", self.0)
    }
}

/// What the host reports about a call.
#[derive(Debug, Clone, PartialEq)]
pub enum CallEvent {
    /// One result: the unary response, one stream message, the SQL rows (an
    /// array of row objects), `{"affectedRows", "lastInsertId"}` for a
    /// statement that changes rows, or one poll's rows for live SQL.
    Item(Value),
    /// The call failed. Terminal for the call.
    Failed(UpstreamFailure),
    /// The call ended normally. Terminal for the call.
    End,
    /// One message of a `@shared` stream (core/src/share.rs), the same
    /// for every subscriber: its result is encoded once per distinct
    /// selection and reused ([`UpstreamEvent::NextEncoded`]).
    Shared(SharedItem),
    /// This subscriber of a `@shared` stream lagged behind it and skipped
    /// this many messages (`LagPolicy::Skip`, core/src/share.rs): the
    /// next result says so in `extensions.skipped`. Ignored outside a
    /// subscription.
    Skipped(u64),
}

impl CallEvent {
    /// Whether this event ends its call (`Failed`, `End`); items
    /// (`Item`, `Shared`) and `Skipped` do not.
    pub fn is_terminal(&self) -> bool {
        matches!(self, CallEvent::Failed(_) | CallEvent::End)
    }
}

/// Where a root field stands.
#[derive(Debug)]
enum FieldState {
    /// Not started yet (mutations run their fields in order).
    Waiting,
    /// The call is running; `reselecting` once the `@sql(reselect:)` query
    /// was issued after the statement.
    Running { call: CallId, reselecting: bool },
    /// The field's value has arrived and its relations (nested `@sql`
    /// fields, `core/src/graphql/batch.rs`) are being fetched level by level.
    Relating(Box<Relating>),
    /// Shaped, once: the value (`None`: a null that reaches `data`) and the
    /// field's errors.
    Done {
        value: Option<Value>,
        errors: Vec<GraphQLError>,
    },
}

/// A root field waiting for its relations: its source value, into which
/// each level's rows are stitched, and the relation jobs so far.
#[derive(Debug)]
struct Relating {
    value: Value,
    jobs: Vec<batch::JobCalls>,
}

/// Relation statements of one execution: identical statements (same text
/// and values) run once and share their rows.
#[derive(Debug, Default)]
struct RelationCalls {
    /// In flight: the call's signature and the (root field, job) pairs
    /// waiting for it.
    running: HashMap<CallId, (String, Vec<(usize, usize)>)>,
    /// Signature of a running statement to its call.
    by_signature: HashMap<String, CallId>,
    /// Rows of the statements that have answered, by signature.
    answered: HashMap<String, Vec<Value>>,
}

/// The execution of one prepared operation: the state behind
/// [`Execution`] once its request prepared.
#[derive(Debug)]
struct Running {
    op: PreparedOperation,
    states: Vec<FieldState>,
    calls: VecDeque<(CallId, UpstreamCall)>,
    outputs: VecDeque<UpstreamEvent>,
    cancels: VecDeque<CallId>,
    next_call: u64,
    /// The terminal output has been queued.
    done: bool,
    /// `@live`: the rows of the last emitted poll.
    last_live: Option<Value>,
    /// `@shared` messages skipped since the last result
    /// ([`CallEvent::Skipped`]), told in the next one.
    skipped: u64,
    /// Query and mutation: bytes of the one result charged so far against
    /// `max_response_bytes` (`core/src/graphql/budget.rs`).
    response_used: usize,
    /// Handed to every gRPC call (its metadata source).
    context: RequestContext,
    /// Relation statements (nested `@sql` fields).
    relations: RelationCalls,
    /// The selection signature of the subscription's field, for reusing
    /// a shared message's encoding (see `shape_signature`).
    shape_sig: Option<std::sync::Arc<str>>,
}

/// The execution of one operation, from the client's request to its
/// terminal event: the one host loop that the gateway (WebSocket and POST),
/// the wasm simulator and the fuzz targets all drive. See the module
/// documentation.
///
/// ```text
/// Execution::start(&schema, &request, &limits)
/// loop:
///   poll() ──> Step::Call(id, call)      the host starts the call
///              Step::Cancel(id)          the host drops the call
///              Step::Output(event)       the host delivers it to the connection
///   handle_call_event(id, event)         the host reports a call's event
/// until is_finished()
/// ```
#[derive(Debug)]
pub struct Execution {
    state: State,
}

#[derive(Debug)]
enum State {
    /// The request did not prepare: its errors, as one terminal
    /// `UpstreamEvent::Error`, until the host takes them.
    Rejected(VecDeque<UpstreamEvent>),
    /// The request prepared and runs.
    Running(Box<Running>),
}

/// The next thing the host does for an [`Execution`].
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Start this upstream call; report its events with
    /// [`Execution::handle_call_event`].
    Call(CallId, UpstreamCall),
    /// Drop this call: the execution no longer needs it.
    Cancel(CallId),
    /// Deliver this event to the operation's connection.
    Output(UpstreamEvent),
}

impl Execution {
    /// Starts an operation: prepares `request` against `schema` within
    /// `limits` and runs it. A request that does not prepare (parse,
    /// validation or variable errors) yields those errors as its first and
    /// terminal output, an `UpstreamEvent::Error`; otherwise the first calls
    /// (or, when nothing needs an upstream, the result) are ready in
    /// [`poll`](Self::poll).
    pub fn start(schema: &Schema, request: &OperationRequest, limits: &Limits) -> Self {
        Execution::start_with(
            schema,
            request,
            limits,
            Map::new(),
            RequestContext::default(),
        )
    }

    /// [`start`](Self::start) for a caller with verified token `claims`,
    /// which `:auth.<claim>` SQL parameters bind, and the request's
    /// `context`, which every gRPC call carries for its metadata.
    pub fn start_with(
        schema: &Schema,
        request: &OperationRequest,
        limits: &Limits,
        claims: Map<String, Value>,
        context: RequestContext,
    ) -> Self {
        match schema.prepare(request, limits) {
            Ok(mut prepared) => {
                prepared.set_claims(claims);
                Execution::with_context(prepared, context)
            }
            Err(errors) => Execution {
                state: State::Rejected(VecDeque::from([UpstreamEvent::Error(errors)])),
            },
        }
    }

    /// An operation refused before it was prepared (a persisted-query
    /// error, core/src/graphql/persisted.rs): `errors` are its first and
    /// terminal output, as for a request that does not prepare.
    pub fn refused(errors: Vec<GraphQLError>) -> Self {
        Execution {
            state: State::Rejected(VecDeque::from([UpstreamEvent::Error(
                super::errors::to_values(&errors),
            )])),
        }
    }

    /// Starts executing an operation that is already prepared: the first
    /// calls are ready in [`poll_call`](Self::poll_call) (or, when nothing
    /// needs an upstream, the result is ready in
    /// [`poll_output`](Self::poll_output)).
    pub fn new(op: PreparedOperation) -> Self {
        Execution::with_context(op, RequestContext::default())
    }

    /// [`Execution::new`] for a request with `context` (its forwarded
    /// headers, `connection_init` fields, claims), which every gRPC call of
    /// the operation carries for its metadata.
    pub fn with_context(op: PreparedOperation, context: RequestContext) -> Self {
        Execution {
            state: State::Running(Box::new(Running::new(op, context))),
        }
    }

    /// Query, mutation or subscription; `None` when the request did not
    /// prepare.
    pub fn kind(&self) -> Option<OperationKind> {
        match &self.state {
            State::Rejected(_) => None,
            State::Running(run) => Some(run.op.kind),
        }
    }

    /// The caller's claims the operation runs with; `None` when the request
    /// did not prepare.
    pub fn claims(&self) -> Option<&Map<String, Value>> {
        match &self.state {
            State::Rejected(_) => None,
            State::Running(run) => Some(run.op.claims()),
        }
    }

    /// The response keys of the root fields, in order (none when the
    /// request did not prepare).
    pub fn root_keys(&self) -> Vec<&str> {
        match &self.state {
            State::Rejected(_) => Vec::new(),
            State::Running(run) => run.op.root_keys(),
        }
    }

    /// The next thing to do: new calls first, then calls to drop, then
    /// outputs for the connection. `None` until the host reports a call's
    /// event.
    pub fn poll(&mut self) -> Option<Step> {
        if let Some((id, call)) = self.poll_call() {
            return Some(Step::Call(id, call));
        }
        if let Some(id) = self.poll_cancel() {
            return Some(Step::Cancel(id));
        }
        self.poll_output().map(Step::Output)
    }

    /// The next upstream call to make, if any.
    pub fn poll_call(&mut self) -> Option<(CallId, UpstreamCall)> {
        match &mut self.state {
            State::Rejected(_) => None,
            State::Running(run) => run.calls.pop_front(),
        }
    }

    /// The next event for the connection, if any.
    pub fn poll_output(&mut self) -> Option<UpstreamEvent> {
        match &mut self.state {
            State::Rejected(outputs) => outputs.pop_front(),
            State::Running(run) => run.outputs.pop_front(),
        }
    }

    /// The next call the execution no longer needs; the host drops it.
    pub fn poll_cancel(&mut self) -> Option<CallId> {
        match &mut self.state {
            State::Rejected(_) => None,
            State::Running(run) => run.cancels.pop_front(),
        }
    }

    /// Whether the execution has produced its terminal event and the host
    /// has taken every output.
    pub fn is_finished(&self) -> bool {
        match &self.state {
            State::Rejected(outputs) => outputs.is_empty(),
            State::Running(run) => run.done && run.outputs.is_empty(),
        }
    }

    /// The schema and configuration were reloaded: `new` is the schema and
    /// `upstreams` the upstreams now configured. An operation whose root
    /// field or upstream is gone ends with one `SCHEMA_RELOADED` error (its
    /// calls are cancelled); any other keeps running
    /// (`core/src/graphql/reload.rs`). A finished one is left alone.
    pub fn handle_reload(&mut self, new: &Schema, upstreams: &super::UpstreamNames) {
        if let State::Running(run) = &mut self.state {
            if run.done {
                return;
            }
            if let Err(error) = super::reload::verdict(&run.op, new, upstreams) {
                run.abort(error.to_value());
            }
        }
    }

    /// Reports an event of call `call`. Events of unknown or already
    /// answered calls are ignored.
    pub fn handle_call_event(&mut self, call: CallId, event: CallEvent) {
        if let State::Running(run) = &mut self.state {
            run.handle_call_event(call, event);
        }
    }
}

/// The request message of a `@grpc` field: each argument is a request
/// field, except the `@grpc(request:)` argument, whose fields are.
fn request_from_args(args: &Map<String, Value>, whole: Option<&str>) -> Value {
    // proto3 JSON: an absent or null field is the default, so nulls are left
    // out rather than sent.
    let mut out: Map<String, Value> = match whole.and_then(|name| args.get(name)) {
        Some(Value::Object(fields)) => fields
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        _ => Map::new(),
    };
    for (k, v) in args {
        if Some(k.as_str()) != whole && !v.is_null() {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

fn sql_params(
    statement: &SqlStatement,
    args: &Map<String, Value>,
    extra: Option<&Value>,
    claims: &Map<String, Value>,
) -> Vec<Value> {
    statement
        .params
        .iter()
        .map(|p| {
            if let Some(claim) = super::sql::claim_param(p) {
                // Only from the verified token: a GraphQL argument name
                // cannot contain a dot, so a client cannot supply it.
                return claims.get(claim).cloned().unwrap_or(Value::Null);
            }
            args.get(p)
                .or_else(|| extra.and_then(|e| e.get(p)))
                .cloned()
                .unwrap_or(Value::Null)
        })
        .collect()
}

impl Running {
    fn new(op: PreparedOperation, context: RequestContext) -> Self {
        let mut exec = Running {
            context,
            states: Vec::with_capacity(op.fields.len()),
            op,
            calls: VecDeque::new(),
            outputs: VecDeque::new(),
            cancels: VecDeque::new(),
            next_call: 0,
            done: false,
            last_live: None,
            skipped: 0,
            response_used: 0,
            relations: RelationCalls::default(),
            shape_sig: None,
        };
        let mut budget = ResponseBudget::new(exec.op.max_response_bytes);
        for i in 0..exec.op.fields.len() {
            let f = &exec.op.fields[i];
            let local = match f.name.as_str() {
                "__typename" => Some(Value::String(exec.op.root_type.clone())),
                "__schema" | "__type" => {
                    match introspection::resolve_root(&exec.op.schema, f, &mut budget) {
                        Some(v) => Some(v),
                        None => {
                            exec.fail_too_large(budget);
                            return exec;
                        }
                    }
                }
                _ => None,
            };
            let state = match local {
                Some(value) => FieldState::Done {
                    value: Some(value),
                    errors: Vec::new(),
                },
                None => FieldState::Waiting,
            };
            exec.states.push(state);
        }
        if exec.op.kind == OperationKind::Subscription {
            // Relations are resolved for queries and mutations; a live
            // poll's rows are not stitched (docs/schema.md, "Relations").
            if let Some(err) = batch::subscription_relation_error(&exec.op) {
                exec.outputs
                    .push_back(UpstreamEvent::Error(vec![err.to_value()]));
                exec.done = true;
                exec.states.iter_mut().for_each(|s| {
                    *s = FieldState::Done {
                        value: None,
                        errors: Vec::new(),
                    }
                });
                return exec;
            }
        }
        match exec.op.kind {
            OperationKind::Query => {
                for i in 0..exec.states.len() {
                    exec.start_field(i);
                }
            }
            OperationKind::Mutation | OperationKind::Subscription => exec.start_next_waiting(),
        }
        if exec.op.kind == OperationKind::Subscription && exec.op.fields.is_empty() {
            // `@skip`/`@include` removed the only root field: there is
            // nothing to subscribe to, so the subscription ends at once.
            exec.outputs.push_back(UpstreamEvent::Complete);
            exec.done = true;
        }
        exec.response_used = budget.used();
        exec.maybe_finish();
        exec
    }

    /// Ends the operation because its result grew past
    /// `max_response_bytes`: the calls still running are given up and the
    /// operation ends with one `RESPONSE_TOO_LARGE` error.
    fn fail_too_large(&mut self, budget: ResponseBudget) {
        self.abort(budget.error().to_value());
    }

    /// Ends the operation with one terminal `error`: the calls still
    /// running are given up (the ones never handed out are forgotten, the
    /// others cancelled) and nothing else is sent.
    fn abort(&mut self, error: Value) {
        for i in 0..self.states.len() {
            if let FieldState::Running { call, .. } = self.states[i] {
                match self.calls.iter().position(|(id, _)| *id == call) {
                    // Never handed out: forget it rather than cancel it.
                    Some(at) => {
                        self.calls.remove(at);
                    }
                    None => self.cancels.push_back(call),
                }
            }
            self.states[i] = FieldState::Done {
                value: None,
                errors: Vec::new(),
            };
        }
        self.calls.clear();
        self.outputs.clear();
        self.outputs.push_back(UpstreamEvent::Error(vec![error]));
        self.done = true;
    }

    fn new_call(&mut self, call: UpstreamCall) -> CallId {
        let id = CallId(self.next_call);
        self.next_call += 1;
        self.calls.push_back((id, call));
        id
    }

    fn resolver(&self, i: usize) -> Option<Resolver> {
        let f = &self.op.fields[i];
        self.op
            .schema
            .field(&f.parent, &f.name)
            .and_then(|d| d.resolver.clone())
    }

    fn start_next_waiting(&mut self) {
        if let Some(i) = self
            .states
            .iter()
            .position(|s| matches!(s, FieldState::Waiting))
        {
            self.start_field(i);
        }
    }

    fn start_field(&mut self, i: usize) {
        if !matches!(self.states[i], FieldState::Waiting) {
            return;
        }
        let streaming = self.op.kind == OperationKind::Subscription;
        let args = self.op.fields[i].args.clone();
        let call = match self.resolver(i) {
            Some(Resolver::Grpc {
                upstream,
                method,
                timeouts,
                request,
                shared,
                ..
            }) => UpstreamCall::Grpc {
                upstream,
                method,
                request: request_from_args(&args, request.as_deref()),
                streaming,
                timeouts,
                context: self.context.clone(),
                shared: shared && streaming,
            },
            Some(Resolver::Sql { db, statement, .. }) => UpstreamCall::Sql {
                db,
                params: sql_params(&statement, &args, None, &self.op.claims),
                returns_rows: statement.returns_rows,
                statement: statement.positional,
            },
            Some(Resolver::Live {
                db,
                statement,
                every,
            }) => UpstreamCall::LiveSql {
                db,
                params: sql_params(&statement, &args, None, &self.op.claims),
                statement: statement.positional,
                every,
            },
            None => {
                // Schema loading guarantees a resolver on every root field;
                // answer null rather than panic if that ever changes.
                self.settle(i, Ok(Value::Null));
                return;
            }
        };
        let call = self.new_call(call);
        self.states[i] = FieldState::Running {
            call,
            reselecting: false,
        };
    }

    fn handle_call_event(&mut self, call: CallId, event: CallEvent) {
        if self.done {
            return;
        }
        let event = match event {
            // Only a subscription's stream is shared; anything else takes
            // the message as a plain item.
            CallEvent::Shared(item) if self.op.kind != OperationKind::Subscription => {
                CallEvent::Item(item.value().clone())
            }
            CallEvent::Skipped(_) if self.op.kind != OperationKind::Subscription => return,
            other => other,
        };
        if self.relations.running.contains_key(&call) {
            self.relation_event(call, event);
            if self.op.kind == OperationKind::Mutation {
                self.start_next_waiting();
            }
            self.maybe_finish();
            return;
        }
        let Some(i) = self
            .states
            .iter()
            .position(|s| matches!(s, FieldState::Running { call: c, .. } if *c == call))
        else {
            return;
        };
        if self.op.kind == OperationKind::Subscription {
            self.subscription_event(i, event);
            return;
        }
        let FieldState::Running { reselecting, .. } = self.states[i] else {
            return;
        };
        match event {
            CallEvent::Item(value) => {
                if let (
                    false,
                    Some(Resolver::Sql {
                        db,
                        reselect: Some(reselect),
                        ..
                    }),
                ) = (reselecting, self.resolver(i))
                {
                    let params = sql_params(
                        &reselect,
                        &self.op.fields[i].args,
                        Some(&value),
                        &self.op.claims,
                    );
                    let call = self.new_call(UpstreamCall::Sql {
                        db,
                        statement: reselect.positional,
                        params,
                        returns_rows: true,
                    });
                    self.states[i] = FieldState::Running {
                        call,
                        reselecting: true,
                    };
                    return;
                }
                self.settle(i, Ok(value));
            }
            // Converted to `Item` above, or dropped; kept total.
            CallEvent::Shared(item) => self.settle(i, Ok(item.value().clone())),
            CallEvent::Skipped(_) => return,
            CallEvent::Failed(f) => self.settle(i, Err(f)),
            CallEvent::End => self.settle(
                i,
                Err(UpstreamFailure::new(
                    FailureKind::Failed,
                    "the upstream ended the call without a result",
                )),
            ),
        }
        if self.done {
            return;
        }
        if self.op.kind == OperationKind::Mutation {
            self.start_next_waiting();
        }
        self.maybe_finish();
    }

    fn subscription_event(&mut self, i: usize, event: CallEvent) {
        match event {
            CallEvent::Item(value) => {
                let live = matches!(self.resolver(i), Some(Resolver::Live { .. }));
                if live {
                    if self.last_live.as_ref() == Some(&value) {
                        return;
                    }
                    self.last_live = Some(value.clone());
                }
                if let Some((result, _)) = self.shape_event(i, &value, !live) {
                    let result = self.tell_skipped(result);
                    self.outputs.push_back(UpstreamEvent::Next(result));
                }
            }
            CallEvent::Skipped(n) => self.skipped = self.skipped.saturating_add(n),
            CallEvent::Shared(item) => {
                // Encoded once per distinct selection: reuse the bytes of
                // another subscriber with the same selection. After a skip,
                // this subscriber's own copy of them says how many.
                let shape = self.shape_signature(i);
                if let Some(payload) = item.encoded(&shape) {
                    let payload = self.tell_skipped_encoded(payload);
                    self.outputs.push_back(UpstreamEvent::NextEncoded(payload));
                    return;
                }
                if let Some((result, clean)) = self.shape_event(i, item.value(), true) {
                    if clean {
                        // Without errors the result depends only on the
                        // message and the selection (errors would carry
                        // this document's locations).
                        let payload = EncodedPayload::encode(&result);
                        item.remember(shape, payload.clone());
                        let payload = self.tell_skipped_encoded(payload);
                        self.outputs.push_back(UpstreamEvent::NextEncoded(payload));
                    } else {
                        let result = self.tell_skipped(result);
                        self.outputs.push_back(UpstreamEvent::Next(result));
                    }
                }
            }
            CallEvent::Failed(f) => {
                let field = &self.op.fields[i];
                let err = GraphQLError::new(f.message, f.kind.code())
                    .with_extensions(f.extensions)
                    .at(field.pos)
                    .with_path(vec![PathSegment::Key(field.key.clone())]);
                self.outputs
                    .push_back(UpstreamEvent::Error(vec![err.to_value()]));
                self.states[i] = FieldState::Done {
                    value: None,
                    errors: Vec::new(),
                };
                self.done = true;
            }
            CallEvent::End => {
                self.outputs.push_back(UpstreamEvent::Complete);
                self.states[i] = FieldState::Done {
                    value: None,
                    errors: Vec::new(),
                };
                self.done = true;
            }
        }
    }

    /// `result` with `extensions.skipped` when `@shared` messages were
    /// skipped since the last result ([`CallEvent::Skipped`]).
    fn tell_skipped(&mut self, mut result: Value) -> Value {
        let skipped = std::mem::take(&mut self.skipped);
        if skipped > 0 {
            if let Value::Object(map) = &mut result {
                let extensions = map
                    .entry("extensions")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(extensions) = extensions {
                    extensions.insert("skipped".into(), Value::from(skipped));
                }
            }
        }
        result
    }

    /// [`Self::tell_skipped`] for an encoded result.
    fn tell_skipped_encoded(&mut self, payload: EncodedPayload) -> EncodedPayload {
        match std::mem::take(&mut self.skipped) {
            0 => payload,
            skipped => payload.with_skipped(skipped),
        }
    }

    /// Shapes one stream message of root field `i` into the operation's
    /// result: `Some((result, has no errors))`, or `None` when the result
    /// grew past `max_response_bytes` (the operation then ends with
    /// `RESPONSE_TOO_LARGE`).
    fn shape_event(&mut self, i: usize, value: &Value, coerce: bool) -> Option<(Value, bool)> {
        let budget = ResponseBudget::new(self.op.max_response_bytes);
        let mut shaper = Shaper::new(&self.op.schema, coerce, budget);
        let mut data = Map::new();
        let null_data = self.shape_field(&mut shaper, i, value, &mut data);
        if shaper.budget.exceeded() {
            let budget = shaper.budget;
            drop(data);
            self.fail_too_large(budget);
            return None;
        }
        let clean = shaper.errors.is_empty();
        let result = result_value(
            if null_data {
                Value::Null
            } else {
                Value::Object(data)
            },
            shaper.errors,
        );
        Some((result, clean))
    }

    /// What the result of root field `i` depends on besides the upstream's
    /// message: the field's selection (keys, names, arguments, nested
    /// selections; not document positions) and the response bound.
    /// Subscribers with equal signatures get byte-identical results for a
    /// message whose shaping has no errors. Computed once.
    fn shape_signature(&mut self, i: usize) -> std::sync::Arc<str> {
        if let Some(sig) = &self.shape_sig {
            return sig.clone();
        }
        fn write(f: &super::plan::PlannedField, out: &mut String) {
            use std::fmt::Write as _;
            let _ = write!(
                out,
                "{}:{}.{}:{}:{}{{",
                f.key,
                f.parent,
                f.name,
                f.ty,
                Value::Object(f.args.clone())
            );
            for child in &f.selection {
                write(child, out);
                out.push(',');
            }
            out.push('}');
        }
        let mut out = format!("{}|{}|", self.op.root_type, self.op.max_response_bytes);
        write(&self.op.fields[i], &mut out);
        let sig: std::sync::Arc<str> = std::sync::Arc::from(out);
        self.shape_sig = Some(sig.clone());
        sig
    }

    /// Shapes the upstream value of root field `i` into `data`; returns
    /// whether the null propagated to the whole `data`.
    fn shape_field(
        &self,
        shaper: &mut Shaper<'_>,
        i: usize,
        raw: &Value,
        data: &mut Map<String, Value>,
    ) -> bool {
        let source = self.source_value(i, raw);
        self.shape_source(shaper, i, &source, data)
    }

    /// Shapes root field `i`'s source value (see [`Self::source_value`])
    /// into `data`; returns whether the null propagated to `data`.
    fn shape_source(
        &self,
        shaper: &mut Shaper<'_>,
        i: usize,
        source: &Value,
        data: &mut Map<String, Value>,
    ) -> bool {
        let field = &self.op.fields[i];
        let mut path = vec![PathSegment::Key(field.key.clone())];
        match shaper.complete(field, &field.ty, source, &mut path) {
            Ok(v) => {
                data.insert(field.key.clone(), v);
                false
            }
            Err(Propagate) => true,
        }
    }

    /// The value of root field `i` from its upstream's raw answer: the
    /// `@grpc(result:)` path of the message; for SQL rows, see
    /// [`rows_value`]; for a statement that changed
    /// rows, `{affectedRows, lastInsertId}` (or `affectedRows` alone for a
    /// scalar field).
    fn source_value(&self, i: usize, raw: &Value) -> Value {
        let field = &self.op.fields[i];
        let is_list = matches!(field.ty.nullable(), TypeRef::List(_));
        let is_leaf = self
            .op
            .schema
            .get(field.ty.named())
            .is_some_and(|t| matches!(t.kind, TypeKind::Scalar { .. } | TypeKind::Enum { .. }));
        match self.resolver(i) {
            Some(Resolver::Grpc { result, .. }) => {
                let mut v = raw;
                for part in &result {
                    let next = v
                        .get(part)
                        .or_else(|| v.get(super::shape::lower_camel(part)));
                    match next {
                        Some(n) => v = n,
                        None => {
                            // proto3 JSON omits default values: a missing
                            // result field is its default, which shaping
                            // supplies for non-null leaves.
                            return match self.op.schema.get(field.ty.named()).map(|t| &t.kind) {
                                Some(TypeKind::Scalar { .. }) if field.ty.is_non_null() => {
                                    match field.ty.named() {
                                        "Int" | "Float" => Value::from(0),
                                        "Boolean" => Value::Bool(false),
                                        "String" | "ID" => Value::from(""),
                                        _ => Value::Null,
                                    }
                                }
                                _ => Value::Null,
                            };
                        }
                    }
                }
                v.clone()
            }
            Some(Resolver::Sql {
                statement,
                reselect,
                ..
            }) => {
                let rows_expected = statement.returns_rows || reselect.is_some();
                if rows_expected {
                    rows_value(raw, is_list, is_leaf)
                } else if is_leaf {
                    raw.get("affectedRows").cloned().unwrap_or(Value::Null)
                } else {
                    raw.clone()
                }
            }
            Some(Resolver::Live { .. }) => rows_value(raw, is_list, is_leaf),
            None => raw.clone(),
        }
    }

    /// Shapes root field `i`'s outcome once and records it.
    fn settle(&mut self, i: usize, outcome: Result<Value, UpstreamFailure>) {
        if let Ok(raw) = &outcome {
            let source = self.source_value(i, raw);
            self.settle_source(i, Ok(source));
        } else {
            self.settle_source(i, outcome);
        }
    }

    /// [`Self::settle`] from the field's source value: fetches its
    /// relations first, if its selection has any.
    fn settle_source(&mut self, i: usize, outcome: Result<Value, UpstreamFailure>) {
        let field = &self.op.fields[i];
        if let Ok(source) = &outcome {
            if !matches!(self.states[i], FieldState::Relating(_)) {
                let mut jobs = Vec::new();
                batch::jobs_below(
                    &self.op.schema,
                    field.ty.named(),
                    &field.selection,
                    &[],
                    &mut jobs,
                );
                if !jobs.is_empty() {
                    let relating = Relating {
                        value: source.clone(),
                        jobs: Vec::new(),
                    };
                    self.states[i] = FieldState::Relating(Box::new(relating));
                    for job in jobs {
                        self.launch_job(i, job);
                    }
                    self.maybe_settle_relating(i);
                    return;
                }
            }
        }
        let state = match outcome {
            Ok(source) => {
                let grpc = matches!(self.resolver(i), Some(Resolver::Grpc { .. }));
                let budget =
                    ResponseBudget::with_used(self.op.max_response_bytes, self.response_used);
                let mut shaper = Shaper::new(&self.op.schema, grpc, budget);
                let mut data = Map::new();
                let propagated = self.shape_source(&mut shaper, i, &source, &mut data);
                if shaper.budget.exceeded() {
                    let budget = shaper.budget;
                    drop(data);
                    self.fail_too_large(budget);
                    return;
                }
                self.response_used = shaper.budget.used();
                FieldState::Done {
                    value: if propagated {
                        None
                    } else {
                        data.remove(&field.key)
                    },
                    errors: shaper.errors,
                }
            }
            Err(f) => FieldState::Done {
                value: (!field.ty.is_non_null()).then_some(Value::Null),
                errors: vec![GraphQLError::new(f.message, f.kind.code())
                    .with_extensions(f.extensions)
                    .at(field.pos)
                    .with_path(vec![PathSegment::Key(field.key.clone())])],
            },
        };
        self.states[i] = state;
    }

    /// Query and mutation: emit the result once every root field is
    /// answered, or as soon as a null has propagated to `data`.
    fn maybe_finish(&mut self) {
        if self.done || self.op.kind == OperationKind::Subscription {
            return;
        }
        let mut errors: Vec<GraphQLError> = Vec::new();
        let mut data = Map::new();
        let mut null_data = false;
        let mut pending = false;
        for (field, state) in self.op.fields.iter().zip(&self.states) {
            match state {
                FieldState::Done { value, errors: e } => {
                    errors.extend(e.iter().cloned());
                    match value {
                        Some(v) => {
                            data.insert(field.key.clone(), v.clone());
                        }
                        None => null_data = true,
                    }
                }
                FieldState::Waiting | FieldState::Running { .. } | FieldState::Relating(_) => {
                    pending = true
                }
            }
        }
        if pending && !null_data {
            return;
        }
        // Calls still running cannot change a `data` that is already null.
        let relation_calls: Vec<CallId> = self.relations.running.drain().map(|(c, _)| c).collect();
        for call in relation_calls {
            match self.calls.iter().position(|(id, _)| *id == call) {
                Some(at) => {
                    self.calls.remove(at);
                }
                None => self.cancels.push_back(call),
            }
        }
        for state in &mut self.states {
            if matches!(state, FieldState::Relating(_)) {
                *state = FieldState::Done {
                    value: None,
                    errors: Vec::new(),
                };
            }
            if let FieldState::Running { call, .. } = *state {
                let queued = self.calls.iter().position(|(id, _)| *id == call);
                match queued {
                    // Never handed out: forget it rather than cancel it.
                    Some(at) => {
                        self.calls.remove(at);
                    }
                    None => self.cancels.push_back(call),
                }
                *state = FieldState::Done {
                    value: None,
                    errors: Vec::new(),
                };
            }
        }
        let data = if null_data {
            Value::Null
        } else {
            Value::Object(data)
        };
        self.outputs
            .push_back(UpstreamEvent::Next(result_value(data, errors)));
        self.outputs.push_back(UpstreamEvent::Complete);
        self.done = true;
    }
}

/// Relations (nested `@sql` fields), driven level by level; the planning
/// and stitching are in `core/src/graphql/batch.rs`.
impl Running {
    /// Starts the statements of `job` for root field `i` (state
    /// `Relating`), reusing identical statements of this execution.
    fn launch_job(&mut self, i: usize, job: batch::Job) {
        let FieldState::Relating(relating) = &mut self.states[i] else {
            return;
        };
        let calls =
            match batch::calls_for(&self.op.schema, &job, &mut relating.value, &self.op.claims) {
                Ok(calls) => calls,
                Err(reason) => {
                    let failure = UpstreamFailure::new(
                        FailureKind::BadInput,
                        format!("relation {}.{}: {reason}", job.parent_type, job.field.name),
                    );
                    self.settle_source(i, Err(failure));
                    return;
                }
            };
        let j = relating.jobs.len();
        relating.jobs.push(batch::JobCalls {
            job,
            waiting: calls.len(),
            rows: Vec::new(),
        });
        for call in calls {
            let signature = serde_json::to_string(&match &call {
                UpstreamCall::Sql {
                    db,
                    statement,
                    params,
                    ..
                } => json!([db, statement, params]),
                _ => Value::Null,
            })
            .unwrap_or_default();
            if let Some(rows) = self.relations.answered.get(&signature) {
                if let FieldState::Relating(r) = &mut self.states[i] {
                    r.jobs[j].rows.extend(rows.iter().cloned());
                    r.jobs[j].waiting -= 1;
                }
            } else if let Some(id) = self.relations.by_signature.get(&signature) {
                if let Some((_, waiting)) = self.relations.running.get_mut(id) {
                    waiting.push((i, j));
                }
            } else {
                let id = self.new_call(call);
                self.relations.by_signature.insert(signature.clone(), id);
                self.relations.running.insert(id, (signature, vec![(i, j)]));
            }
        }
        self.maybe_complete_job(i, j);
    }

    /// Stitches job `j` of root field `i` once all its statements have
    /// answered, and launches the next level.
    fn maybe_complete_job(&mut self, i: usize, j: usize) {
        let FieldState::Relating(relating) = &mut self.states[i] else {
            return;
        };
        let Some(calls) = relating.jobs.get_mut(j) else {
            return;
        };
        if calls.waiting > 0 {
            return;
        }
        // Mark it stitched: `usize::MAX` never reaches zero again.
        calls.waiting = usize::MAX;
        let rows = std::mem::take(&mut calls.rows);
        let job = calls.job.clone();
        batch::stitch(&self.op.schema, &job, &mut relating.value, &rows);
        for next in batch::next_level(&self.op.schema, &job) {
            self.launch_job(i, next);
        }
    }

    /// Shapes root field `i` once none of its relation jobs waits.
    fn maybe_settle_relating(&mut self, i: usize) {
        let FieldState::Relating(relating) = &mut self.states[i] else {
            return;
        };
        if relating.jobs.iter().any(|j| j.waiting != usize::MAX) {
            return;
        }
        let value = std::mem::take(&mut relating.value);
        // The state is still `Relating`, so `settle_source` shapes the
        // value rather than starting relations again.
        self.settle_source(i, Ok(value));
    }

    /// An event of a relation statement.
    fn relation_event(&mut self, call: CallId, event: CallEvent) {
        if matches!(event, CallEvent::Skipped(_)) {
            // Not a relation's event: the statement is still running.
            return;
        }
        let Some((signature, waiting)) = self.relations.running.remove(&call) else {
            return;
        };
        self.relations.by_signature.remove(&signature);
        let rows = match event {
            CallEvent::Item(Value::Array(rows)) => rows,
            CallEvent::Item(other) => vec![other],
            CallEvent::Shared(item) => match item.value() {
                Value::Array(rows) => rows.clone(),
                other => vec![other.clone()],
            },
            // Returned early above.
            CallEvent::Skipped(_) => return,
            CallEvent::Failed(failure) => {
                for &(i, j) in &waiting {
                    let FieldState::Relating(r) = &self.states[i] else {
                        continue;
                    };
                    let Some(job) = r.jobs.get(j) else { continue };
                    let mut failure = failure.clone();
                    failure.message = format!(
                        "relation {}.{}: {}",
                        job.job.parent_type, job.job.field.name, failure.message
                    );
                    self.settle_source(i, Err(failure));
                }
                return;
            }
            CallEvent::End => {
                // An answer without rows is an empty result.
                Vec::new()
            }
        };
        for &(i, j) in &waiting {
            if let FieldState::Relating(r) = &mut self.states[i] {
                if let Some(job) = r.jobs.get_mut(j) {
                    job.rows.extend(rows.iter().cloned());
                    job.waiting = job.waiting.saturating_sub(1);
                }
            }
        }
        self.relations.answered.insert(signature, rows);
        for &(i, j) in &waiting {
            self.maybe_complete_job(i, j);
        }
        let mut fields: Vec<usize> = waiting.iter().map(|(i, _)| *i).collect();
        fields.dedup();
        for i in fields {
            self.maybe_settle_relating(i);
        }
    }
}

/// SQL rows as a field's value: the list of rows for a list field, the
/// first row for a single one; for a leaf type, a row stands for its first
/// column (`SELECT COUNT(*) ...` for an `Int!` field).
fn rows_value(raw: &Value, is_list: bool, is_leaf: bool) -> Value {
    let cell = |row: &Value| -> Value {
        match row {
            Value::Object(cols) if is_leaf => cols.values().next().cloned().unwrap_or(Value::Null),
            other => other.clone(),
        }
    };
    match raw {
        Value::Array(rows) if is_list => Value::Array(rows.iter().map(cell).collect()),
        Value::Array(rows) => rows.first().map(cell).unwrap_or(Value::Null),
        other => other.clone(),
    }
}

fn result_value(data: Value, errors: Vec<GraphQLError>) -> Value {
    if errors.is_empty() {
        json!({ "data": data })
    } else {
        let errors: Vec<Value> = errors.iter().map(GraphQLError::to_value).collect();
        json!({ "data": data, "errors": errors })
    }
}
