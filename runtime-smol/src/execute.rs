//! Running one GraphQL operation against the upstreams.
//!
//! The core's [`Execution`] (started with `Execution::start_with`) decides
//! which calls to make, turns a request that does not prepare into its
//! errors and shapes the calls' results; this module only makes the calls. Each call is a future owned
//! and polled by the operation's task (in its `calls` table), and the
//! operation's task is owned by its connection's table: dropping the
//! operation drops its calls in the same step, which resets gRPC streams
//! and kills SQL queries at once.

use crate::gateway::Gateway;
use crate::grpc::GrpcUpstream;
use crate::share::{slow_subscriber, SharedEvent, StreamReport};
use crate::upstreams::{unavailable, Upstreams};
use async_channel::Sender;
use futures_lite::{FutureExt, StreamExt};
use serde_json::Value;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use terminus_core::graphql::{
    CallEvent, CallId, Execution, GraphQLError, Step, INTERNAL_SERVER_ERROR,
};
use terminus_core::share::{ShareKey, StreamEnd};
use terminus_core::{CallTimeouts, OpId, RequestContext, UpstreamCall, UpstreamEvent};

/// Runs `execution` to its end, sending every event for `op` to `out`.
///
/// Returns after the terminal event was sent, or when `out` is closed (the
/// connection is gone). Sending waits when `out` is full, so a slow client
/// slows its upstreams down instead of growing a queue.
///
/// With `reloads`, a hot reload of that gateway hands the execution the
/// new schema; the core decides whether it keeps running
/// (`Execution::handle_reload`). The calls keep `upstreams`, the clients
/// the operation started with, to its end.
pub async fn run_operation(
    mut execution: Execution,
    upstreams: Arc<Upstreams>,
    op: OpId,
    out: Sender<(OpId, UpstreamEvent)>,
    reloads: Option<Arc<Gateway>>,
) {
    // A hot reload wakes this listener. It is registered once and renewed
    // only after it fired, not once per message: the gateway's reload
    // `Event` is shared by every operation.
    let mut reload = reloads
        .as_ref()
        .map(|gateway| (gateway.reloaded.listen(), gateway.live().generation));
    // One slot: the calls are polled by this task (below), which takes
    // each event out before it polls them again, so a deeper queue would
    // only hold more slots (about 120 bytes each) for every operation's
    // whole life (docs/BENCHMARKS.md, "Lean connections"). A call whose
    // event finds the slot taken waits for this task, as before.
    let (call_tx, call_rx) = async_channel::bounded::<(CallId, CallEvent)>(1);
    // The calls in flight, owned here and polled by this task (not tasks of
    // their own): removing one drops (cancels) it at once, and dropping the
    // operation drops them in the same step, so a mass disconnect resets
    // the upstream streams without a second round of task cancellations
    // (docs/BENCHMARKS.md, "Lateness and reclaim").
    let mut calls: HashMap<CallId, CallFuture> = HashMap::new();
    loop {
        while let Some(step) = execution.poll() {
            match step {
                Step::Call(call_id, call) => {
                    let future: CallFuture =
                        Box::pin(run_call(call, upstreams.clone(), call_id, call_tx.clone()));
                    calls.insert(call_id, future);
                }
                Step::Cancel(call_id) => {
                    calls.remove(&call_id);
                }
                Step::Output(event) => {
                    let terminal = event.is_terminal();
                    if out.send((op, event)).await.is_err() || terminal {
                        return;
                    }
                }
            }
        }
        if execution.is_finished() {
            return;
        }
        // The calls make progress while this task waits; a finished call
        // is dropped (its terminal event is in the channel).
        let drive_calls = std::future::poll_fn(|cx| {
            calls.retain(|_, call| call.as_mut().poll(cx).is_pending());
            std::task::Poll::<Option<_>>::Pending
        });
        // `call_tx` is held here, so the channel never closes under us.
        let next = async { Some(call_rx.recv().await) };
        let reloaded = async {
            match &mut reload {
                Some((listener, _)) => listener.await,
                None => std::future::pending().await,
            }
            None
        };
        let Some(received) = drive_calls.or(next).or(reloaded).await else {
            if let (Some(gateway), Some((listener, seen))) = (&reloads, &mut reload) {
                // Listen again before reading the generation, so that a
                // reload in between still wakes the next wait.
                *listener = gateway.reloaded.listen();
                let live = gateway.live();
                if live.generation != *seen {
                    *seen = live.generation;
                    execution.handle_reload(&live.schema, &live.upstream_names);
                }
            }
            continue;
        };
        let Ok((call_id, event)) = received else {
            return;
        };
        if event.is_terminal() {
            calls.remove(&call_id);
        }
        execution.handle_call_event(call_id, event);
    }
}

/// One upstream call of an operation ([`run_call`]), polled by the
/// operation's task.
type CallFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// [`run_operation`] for a WebSocket connection, with a panic confined to
/// the operation: it is counted in `terminus_panics_total`, logged, and the
/// operation ends with an `INTERNAL_SERVER_ERROR` GraphQL error, so the
/// connection never waits for an end that would not come. `panic_for_test`
/// is the `testing.panic_trigger` hook.
pub async fn run_operation_guarded(
    gateway: Arc<Gateway>,
    execution: Execution,
    op: OpId,
    out: Sender<(OpId, UpstreamEvent)>,
    panic_for_test: bool,
) {
    let upstreams = gateway.live().upstreams.clone();
    let events = out.clone();
    let reloads = gateway.clone();
    let run = async move {
        // The `testing.panic_trigger` hook (off by default).
        assert!(
            !panic_for_test,
            "testing.panic_trigger: this operation's task was asked to panic"
        );
        run_operation(execution, upstreams, op, events, Some(reloads)).await;
    };
    if let Err(panic) = AssertUnwindSafe(run).catch_unwind().await {
        gateway.metrics.panics_total.fetch_add(1, Ordering::Relaxed);
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(%op, panic = %message, "operation task panicked");
        let error = GraphQLError::new("Internal server error", INTERNAL_SERVER_ERROR).to_value();
        let _ = out.send((op, UpstreamEvent::Error(vec![error]))).await;
    }
}

/// Makes one upstream call and reports its items, then its end or failure.
async fn run_call(
    call: UpstreamCall,
    upstreams: Arc<Upstreams>,
    call_id: CallId,
    events: Sender<(CallId, CallEvent)>,
) {
    let report = |event: CallEvent| {
        let events = events.clone();
        async move { events.send((call_id, event)).await.is_ok() }
    };
    // The sharing key of a `@shared` stream (core's rule), over the
    // metadata entries this upstream forwards.
    let key = match &call {
        UpstreamCall::Grpc { upstream, .. } => upstreams.grpc(upstream).and_then(|client| {
            ShareKey::of_call(&call, |k| {
                client.context_keys().any(|forwarded| forwarded == k)
            })
        }),
        _ => None,
    };
    match call {
        UpstreamCall::Grpc {
            upstream,
            method,
            request,
            streaming,
            timeouts,
            context,
            ..
        } => {
            let Some(client) = upstreams.grpc(&upstream) else {
                report(CallEvent::Failed(unavailable("gRPC upstream", &upstream))).await;
                return;
            };
            if let Some(key) = key {
                let field = format!("{upstream} {method}");
                let client = client.clone();
                let mut subscription = upstreams.shared().subscribe(key, &field, move |report| {
                    Box::pin(run_shared_stream(
                        client, method, request, timeouts, context, report,
                    ))
                });
                let queue = upstreams.shared().queue();
                loop {
                    match subscription.next().await {
                        Some(SharedEvent::Item(message)) => {
                            if !report(CallEvent::Shared(message)).await {
                                return;
                            }
                        }
                        Some(SharedEvent::Skipped(n)) => {
                            if !report(CallEvent::Skipped(n)).await {
                                return;
                            }
                        }
                        Some(SharedEvent::End(StreamEnd::Complete)) => {
                            report(CallEvent::End).await;
                            return;
                        }
                        Some(SharedEvent::End(StreamEnd::Failed(failure))) => {
                            report(CallEvent::Failed(failure)).await;
                            return;
                        }
                        None => {
                            report(CallEvent::Failed(slow_subscriber(queue))).await;
                            return;
                        }
                    }
                }
            }
            if streaming {
                // The call's larger futures are boxed while they run, so
                // that the state a live stream keeps for its whole life
                // (this future, inside its operation's task) holds only
                // the stream (docs/BENCHMARKS.md, "Lean connections").
                let started =
                    Box::pin(client.server_streaming_in(&method, request, timeouts, &context))
                        .await;
                let mut stream = match started {
                    Ok(stream) => stream,
                    Err(failure) => {
                        report(CallEvent::Failed(failure)).await;
                        return;
                    }
                };
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(message) => {
                            if !report(CallEvent::Item(message)).await {
                                return;
                            }
                        }
                        Err(failure) => {
                            report(CallEvent::Failed(failure)).await;
                            return;
                        }
                    }
                }
                report(CallEvent::End).await;
            } else {
                match Box::pin(client.unary_in(&method, request, timeouts, &context)).await {
                    Ok(message) => {
                        if report(CallEvent::Item(message)).await {
                            report(CallEvent::End).await;
                        }
                    }
                    Err(failure) => {
                        report(CallEvent::Failed(failure)).await;
                    }
                }
            }
        }
        UpstreamCall::Sql {
            db,
            statement,
            params,
            returns_rows,
        } => {
            let result = Box::pin(upstreams.sql(&db, &statement, &params, returns_rows)).await;
            match result {
                Ok(value) => {
                    if report(CallEvent::Item(value)).await {
                        report(CallEvent::End).await;
                    }
                }
                Err(failure) => {
                    report(CallEvent::Failed(failure)).await;
                }
            }
        }
        UpstreamCall::LiveSql {
            db,
            statement,
            params,
            every,
        } => {
            // One item per poll, until the operation drops this task;
            // identical subscriptions share the poll, and the executor emits
            // only when the rows changed.
            let mut rows = match upstreams.live_sql(&db, &statement, &params, every) {
                Ok(rows) => rows,
                Err(failure) => {
                    report(CallEvent::Failed(failure)).await;
                    return;
                }
            };
            loop {
                match rows.next().await {
                    Ok(value) => {
                        if !report(CallEvent::Item(value)).await {
                            return;
                        }
                    }
                    Err(failure) => {
                        report(CallEvent::Failed(failure)).await;
                        return;
                    }
                }
            }
        }
    }
}

/// The task of one `@shared` upstream stream, owned by the hub
/// (runtime-smol/src/share.rs): reports each message, then the stream's
/// end or failure. The hub drops it when its last subscriber leaves, which
/// resets the stream.
async fn run_shared_stream(
    client: Arc<GrpcUpstream>,
    method: String,
    request: Value,
    timeouts: CallTimeouts,
    context: RequestContext,
    report: StreamReport,
) {
    let mut stream = match client
        .server_streaming_in(&method, request, timeouts, &context)
        .await
    {
        Ok(stream) => stream,
        Err(failure) => {
            report.end(StreamEnd::Failed(failure));
            return;
        }
    };
    while let Some(item) = stream.next().await {
        match item {
            Ok(message) => report.item(message),
            Err(failure) => {
                report.end(StreamEnd::Failed(failure));
                return;
            }
        }
    }
    report.end(StreamEnd::Complete);
}
