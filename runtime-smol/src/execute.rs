//! Running one GraphQL operation against the upstreams.
//!
//! The core's [`Execution`] (started with `Execution::start_with`) decides
//! which calls to make, turns a request that does not prepare into its
//! errors and shapes the calls' results; this module only makes the calls. Each call is a future owned
//! and polled by the operation's task (in its `calls` table), and the
//! operation's task is owned by its connection's table: dropping the
//! operation drops its calls in the same step, which resets gRPC streams
//! and kills SQL queries at once.

use crate::events::Sender;
use crate::gateway::Gateway;
use crate::grpc::GrpcStream;
use crate::grpc::GrpcUpstream;
use crate::share::{slow_subscriber, SharedEvent, StreamReport};
use crate::upstreams::{unavailable, Upstreams};
use futures_lite::{ready, FutureExt, Stream, StreamExt};
use serde_json::Value;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use terminus_core::graphql::{
    CallEvent, CallId, Execution, GraphQLError, Step, INTERNAL_SERVER_ERROR,
};
use terminus_core::share::{ShareKey, StreamEnd};
use terminus_core::UpstreamFailure;
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
    // The calls in flight, owned here and polled by this task (not tasks of
    // their own), each giving its events only when this task asks for the
    // next one: no queue between a call and its operation, so a call
    // waits while its operation sends (docs/BENCHMARKS.md, "Lean
    // subscriptions"). Removing one drops (cancels) it at once, and
    // dropping the operation drops them in the same step, so a mass
    // disconnect resets the upstream streams without a second round of
    // task cancellations (docs/BENCHMARKS.md, "Lateness and reclaim").
    let mut calls: Vec<(CallId, Call)> = Vec::new();
    // Where the next search for an event starts: after the call that gave
    // the last one, so that a busy call does not starve the others.
    let mut turn = 0;
    loop {
        while let Some(step) = execution.poll() {
            // Only the event is kept across the send (not the step, whose
            // call variant is large): this future's size is what every
            // operation holds for its whole life.
            let event = match step {
                Step::Call(call_id, call) => {
                    // Room for exactly this call: most operations make one,
                    // and a `Vec`'s first growth would make room for four
                    // (1,408 bytes, held for a subscription's life).
                    calls.reserve_exact(1);
                    calls.push((call_id, Call::start(call, &upstreams)));
                    continue;
                }
                Step::Cancel(call_id) => {
                    calls.retain(|(id, _)| *id != call_id);
                    continue;
                }
                Step::Output(event) => event,
            };
            let terminal = event.is_terminal();
            if out.send((op, event)).await.is_err() || terminal {
                return;
            }
        }
        if execution.is_finished() {
            return;
        }
        // The next event of a call, or `None` when a reload woke this task.
        let next = std::future::poll_fn(|cx| {
            let count = calls.len();
            for i in 0..count {
                let at = (turn + i) % count;
                if let Poll::Ready(event) = calls[at].1.poll_event(cx) {
                    turn = at + 1;
                    return Poll::Ready(Some((at, event)));
                }
            }
            if let Some((listener, _)) = &mut reload {
                if Pin::new(listener).poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
            }
            Poll::Pending
        })
        .await;
        let Some((at, event)) = next else {
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
        let call_id = calls[at].0;
        if event.is_terminal() {
            // The call ended: dropped now (order does not matter).
            calls.swap_remove(at);
        }
        execution.handle_call_event(call_id, event);
    }
}

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

/// A future of a call that is boxed while it runs.
type Pending<T> = Pin<Box<dyn Future<Output = Result<T, UpstreamFailure>> + Send>>;

/// One upstream call of an operation, polled by the operation's task for
/// its events ([`Call::poll_event`]): its items, then its end or failure.
/// Dropping it cancels the call (a gRPC stream is reset, an SQL query
/// killed). The larger states are boxed only while they run, so that what
/// a live stream keeps for its whole life is the stream itself
/// (docs/BENCHMARKS.md, "Lean connections").
// The stream is the state a live call keeps for its whole life, in the
// operation's calls table (on the heap already): boxing it would add an
// allocation per stream and save nothing.
#[allow(clippy::large_enum_variant)]
enum Call {
    /// The event to give next, if any (then nothing: the operation drops
    /// the call after its terminal event).
    Then(Option<CallEvent>),
    /// A gRPC server stream, until its response headers.
    Starting(Pending<GrpcStream>),
    /// A gRPC server stream's messages.
    Streaming(GrpcStream),
    /// A call of one answer (unary gRPC, SQL): its item, then its end.
    Answer(Pending<Value>),
    /// A `@shared` stream's subscription, or live SQL's polls (their
    /// `next` borrows them, so each is boxed with its wait).
    Events(Pin<Box<dyn Stream<Item = CallEvent> + Send>>),
}

impl Call {
    /// Starts `call` on `upstreams`.
    fn start(call: UpstreamCall, upstreams: &Arc<Upstreams>) -> Call {
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
                    return Call::Then(Some(CallEvent::Failed(unavailable(
                        "gRPC upstream",
                        &upstream,
                    ))));
                };
                let client = client.clone();
                if let Some(key) = key {
                    let field = format!("{upstream} {method}");
                    let subscription = upstreams.shared().subscribe(key, &field, move |report| {
                        Box::pin(run_shared_stream(
                            client, method, request, timeouts, context, report,
                        ))
                    });
                    let queue = upstreams.shared().queue();
                    let events =
                        futures_lite::stream::unfold(subscription, move |mut sub| async move {
                            let event = match sub.next().await {
                                Some(SharedEvent::Item(message)) => CallEvent::Shared(message),
                                Some(SharedEvent::Skipped(n)) => CallEvent::Skipped(n),
                                Some(SharedEvent::End(StreamEnd::Complete)) => CallEvent::End,
                                Some(SharedEvent::End(StreamEnd::Failed(failure))) => {
                                    CallEvent::Failed(failure)
                                }
                                None => CallEvent::Failed(slow_subscriber(queue)),
                            };
                            Some((event, sub))
                        });
                    Call::Events(Box::pin(events))
                } else if streaming {
                    Call::Starting(Box::pin(async move {
                        client
                            .server_streaming_in(&method, request, timeouts, &context)
                            .await
                    }))
                } else {
                    Call::Answer(Box::pin(async move {
                        client.unary_in(&method, request, timeouts, &context).await
                    }))
                }
            }
            UpstreamCall::Sql {
                db,
                statement,
                params,
                returns_rows,
            } => {
                let upstreams = upstreams.clone();
                Call::Answer(Box::pin(async move {
                    upstreams.sql(&db, &statement, &params, returns_rows).await
                }))
            }
            UpstreamCall::LiveSql {
                db,
                statement,
                params,
                every,
            } => {
                // One item per poll, until the operation drops this call;
                // identical subscriptions share the poll, and the executor
                // emits only when the rows changed.
                match upstreams.live_sql(&db, &statement, &params, every) {
                    Ok(rows) => Call::Events(Box::pin(futures_lite::stream::unfold(
                        rows,
                        |mut rows| async move {
                            let event = match rows.next().await {
                                Ok(value) => CallEvent::Item(value),
                                Err(failure) => CallEvent::Failed(failure),
                            };
                            Some((event, rows))
                        },
                    ))),
                    Err(failure) => Call::Then(Some(CallEvent::Failed(failure))),
                }
            }
        }
    }

    /// The call's next event; after a terminal one, nothing more.
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<CallEvent> {
        loop {
            match self {
                Call::Then(event) => return event.take().map_or(Poll::Pending, Poll::Ready),
                Call::Starting(start) => match ready!(start.as_mut().poll(cx)) {
                    Ok(stream) => *self = Call::Streaming(stream),
                    Err(failure) => {
                        *self = Call::Then(None);
                        return Poll::Ready(CallEvent::Failed(failure));
                    }
                },
                Call::Streaming(stream) => {
                    return Poll::Ready(match ready!(Pin::new(stream).poll_next(cx)) {
                        Some(Ok(message)) => CallEvent::Item(message),
                        Some(Err(failure)) => {
                            *self = Call::Then(None);
                            CallEvent::Failed(failure)
                        }
                        None => {
                            *self = Call::Then(None);
                            CallEvent::End
                        }
                    });
                }
                Call::Answer(answer) => {
                    let answered = ready!(answer.as_mut().poll(cx));
                    return Poll::Ready(match answered {
                        Ok(value) => {
                            *self = Call::Then(Some(CallEvent::End));
                            CallEvent::Item(value)
                        }
                        Err(failure) => {
                            *self = Call::Then(None);
                            CallEvent::Failed(failure)
                        }
                    });
                }
                Call::Events(events) => {
                    // Each of these streams ends with a terminal event of
                    // its own; its end, were it to come, ends the call.
                    let event = ready!(events.as_mut().poll_next(cx)).unwrap_or(CallEvent::End);
                    if event.is_terminal() {
                        *self = Call::Then(None);
                    }
                    return Poll::Ready(event);
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
