//! `graphql`: arbitrary query text and variables against the demo schemas
//! through `Execution::start` (validation, planning, shaping), with
//! arbitrary upstream results. Never a panic; every error is spec-shaped (an
//! object with a string `message`); every result is `{data?, errors?}`; the
//! output sequence is one result then `Complete` for queries and mutations,
//! results then one terminal event for subscriptions; once every call has
//! failed, the execution has finished.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use std::sync::OnceLock;
use terminus_core::graphql::{
    demo, CallEvent, CallId, Execution, Limits, OperationKind, Schema, Step as ExecStep,
};
use terminus_core::{FailureKind, OperationRequest, UpstreamCall, UpstreamEvent, UpstreamFailure};
use terminus_fuzz::{check_execution_result, check_graphql_errors, ArbJson, ArbObject, ArbQuery};

fn schemas() -> &'static [Schema; 2] {
    static SCHEMAS: OnceLock<[Schema; 2]> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        [
            Schema::parse(demo::SCHEMA_SDL, demo::SCHEMA_FILE).expect("demo schema"),
            Schema::parse(demo::SCHEMA_WITH_MYSQL_SDL, "demo_mysql.graphql")
                .expect("demo mysql schema"),
        ]
    })
}

#[derive(Debug, Arbitrary)]
enum Failure {
    Unavailable,
    Timeout,
    Busy,
    Failed,
    BadInput,
}

impl Failure {
    fn kind(&self) -> FailureKind {
        match self {
            Failure::Unavailable => FailureKind::Unavailable,
            Failure::Timeout => FailureKind::Timeout,
            Failure::Busy => FailureKind::Busy,
            Failure::Failed => FailureKind::Failed,
            Failure::BadInput => FailureKind::BadInput,
        }
    }
}

/// What the upstream answers: plausible values for the call's kind (so
/// shaping is reached), or anything.
#[derive(Debug, Arbitrary)]
enum ItemSpec {
    /// What the demo upstream would answer for the call.
    Plausible(u32),
    /// Rows: a list of objects.
    Rows(Vec<ArbObject>),
    /// Any object.
    Object(ArbObject),
    /// Any JSON.
    Any(ArbJson),
}

fn plausible(call: &UpstreamCall, n: u32) -> Value {
    match call {
        UpstreamCall::Grpc {
            streaming: true, ..
        } => json!({ "seq": n }),
        UpstreamCall::Grpc { .. } => json!({ "message": format!("Hello, {n}!") }),
        UpstreamCall::Sql {
            returns_rows: false,
            ..
        } => json!({ "affectedRows": 1, "lastInsertId": n }),
        UpstreamCall::Sql { .. } | UpstreamCall::LiveSql { .. } => {
            json!([{ "id": n, "text": "hi", "created_at": "2026-01-01 00:00:00" }])
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Step {
    /// An item for the n-th call handed out.
    Item(u8, ItemSpec),
    /// The n-th call failed.
    Fail(u8, Failure, String),
    /// The n-th call ended.
    End(u8),
    /// An event for a call that was never handed out.
    Unknown(u64, ItemSpec),
}

#[derive(Debug, Arbitrary)]
struct Scenario {
    with_mysql: bool,
    query: ArbQuery,
    operation_name: Option<String>,
    variables: ArbObject,
    extensions: ArbObject,
    small_limits: bool,
    steps: Vec<Step>,
}

struct Run {
    exec: Execution,
    /// `None`: the request did not prepare.
    kind: Option<OperationKind>,
    calls: Vec<(CallId, UpstreamCall)>,
    outputs: Vec<UpstreamEvent>,
}

impl Run {
    fn drain(&mut self) {
        while let Some(step) = self.exec.poll() {
            let output = match step {
                ExecStep::Call(id, call) => {
                    self.calls.push((id, call));
                    continue;
                }
                ExecStep::Cancel(_) => continue,
                ExecStep::Output(output) => output,
            };
            assert!(
                !self.outputs.last().is_some_and(UpstreamEvent::is_terminal),
                "output after the terminal event: {output:?}"
            );
            match &output {
                UpstreamEvent::Next(_) | UpstreamEvent::NextEncoded(_) => {
                    let result = output.next_value().expect("a result that parses");
                    if let Err(e) = check_execution_result(&result) {
                        panic!("{e}");
                    }
                    if self.kind != Some(OperationKind::Subscription) {
                        assert!(
                            self.outputs.is_empty(),
                            "a query or mutation produced a second result: {output:?}"
                        );
                    }
                }
                UpstreamEvent::Error(errors) => {
                    if let Err(e) = check_graphql_errors(errors) {
                        panic!("{e}");
                    }
                }
                UpstreamEvent::Complete => {}
            }
            self.outputs.push(output);
        }
    }

    fn call(&self, n: u8) -> Option<(CallId, &UpstreamCall)> {
        (!self.calls.is_empty()).then(|| {
            let (id, call) = &self.calls[usize::from(n) % self.calls.len()];
            (*id, call)
        })
    }
}

fn item(spec: &ItemSpec, call: Option<&UpstreamCall>) -> Value {
    match spec {
        ItemSpec::Plausible(n) => call.map_or(Value::Null, |c| plausible(c, *n)),
        ItemSpec::Rows(rows) => {
            Value::Array(rows.iter().map(|r| Value::Object(r.0.clone())).collect())
        }
        ItemSpec::Object(o) => Value::Object(o.0.clone()),
        ItemSpec::Any(v) => v.0.clone(),
    }
}

fuzz_target!(|scenario: Scenario| {
    let schema = &schemas()[usize::from(scenario.with_mysql)];
    let request = OperationRequest {
        id: "1".into(),
        query: scenario.query.0.clone(),
        operation_name: scenario.operation_name.clone(),
        variables: scenario.variables.0.clone(),
        extensions: scenario.extensions.0.clone(),
    };
    let limits = if scenario.small_limits {
        Limits {
            max_depth: 3,
            max_fields: 8,
            max_aliases: 2,
            max_query_bytes: 256,
            max_cost: 60,
            list_cost: 10,
            max_schema_fields: 1,
            max_response_bytes: 512,
            max_sql_row_count: 100,
        }
    } else {
        Limits::default()
    };
    // `Execution::start`: a request that does not prepare ends with its
    // errors as the only output (checked as spec-shaped in `drain`).
    let exec = Execution::start(schema, &request, &limits);
    let kind = exec.kind();
    let mut run = Run {
        exec,
        kind,
        calls: Vec::new(),
        outputs: Vec::new(),
    };
    run.drain();
    for step in scenario.steps.iter().take(64) {
        match step {
            Step::Item(n, spec) => {
                if let Some((id, call)) = run.call(*n) {
                    let value = item(spec, Some(call));
                    run.exec.handle_call_event(id, CallEvent::Item(value));
                }
            }
            Step::Fail(n, failure, message) => {
                if let Some((id, _)) = run.call(*n) {
                    let failure = UpstreamFailure::new(failure.kind(), message.clone());
                    run.exec.handle_call_event(id, CallEvent::Failed(failure));
                }
            }
            Step::End(n) => {
                if let Some((id, _)) = run.call(*n) {
                    run.exec.handle_call_event(id, CallEvent::End);
                }
            }
            Step::Unknown(raw, spec) => {
                let id = CallId(*raw);
                if !run.calls.iter().any(|(c, _)| *c == id) {
                    run.exec
                        .handle_call_event(id, CallEvent::Item(item(spec, None)));
                    assert!(
                        run.exec.poll_output().is_none(),
                        "an unknown call produced output"
                    );
                }
            }
        }
        run.drain();
    }
    // The end: every call fails (calls of mutations run one after another,
    // so keep failing the new ones). The operation must end.
    while !run.exec.is_finished() {
        let before = run.calls.len();
        let ids: Vec<CallId> = run.calls.iter().map(|(id, _)| *id).collect();
        for id in ids {
            let failure = UpstreamFailure::new(FailureKind::Unavailable, "gone");
            run.exec.handle_call_event(id, CallEvent::Failed(failure));
        }
        run.drain();
        // A failure either ends the operation or lets the next call start.
        assert!(
            run.exec.is_finished() || run.calls.len() > before,
            "every call failed and the execution has not ended: {:?}",
            run.outputs
        );
    }
    assert!(
        run.outputs.last().is_some_and(UpstreamEvent::is_terminal),
        "finished without a terminal event: {:?}",
        run.outputs
    );
    if kind.is_none() {
        assert!(
            run.calls.is_empty() && matches!(run.outputs.as_slice(), [UpstreamEvent::Error(_)]),
            "a request that did not prepare: {:?}",
            run.outputs
        );
    }
    if kind != Some(OperationKind::Subscription) {
        let shape_ok = matches!(
            run.outputs.as_slice(),
            [UpstreamEvent::Next(_), UpstreamEvent::Complete] | [UpstreamEvent::Error(_)]
        );
        assert!(shape_ok, "query/mutation outputs: {:?}", run.outputs);
    }
});
