//! Calls on an upstream: unary calls and server streams, their deadlines,
//! the concurrency bound, and reading messages and the final status.

use super::connection::StreamSlot;
use super::json::{decode_response, encode_request};
use super::{code, codec, take_frame, Gauge, GrpcUpstream, CONTENT_TYPE};
use crate::timeout::timeout;
use async_lock::SemaphoreGuardArc;
use bytes::{Bytes, BytesMut};
use futures_lite::Stream;
use http_body::Body as _;
use http_body_util::Full;
use hyper::body::Incoming;
use prost_reflect::MethodDescriptor;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use terminus_core::{CallTimeouts, FailureKind, RequestContext, UpstreamFailure};

impl GrpcUpstream {
    /// Calls the unary `method` (`package.Service/Method`) with `request` in
    /// the proto3 JSON mapping, and returns the response message as JSON.
    /// Bounded by `call_timeout`; dropping the future resets the stream.
    pub async fn unary(&self, method: &str, request: Value) -> Result<Value, UpstreamFailure> {
        self.unary_with(method, request, CallTimeouts::default())
            .await
    }

    /// [`GrpcUpstream::unary`] with a field's own deadline (`timeouts.call`)
    /// in place of the upstream's `call_timeout`.
    pub async fn unary_with(
        &self,
        method: &str,
        request: Value,
        timeouts: CallTimeouts,
    ) -> Result<Value, UpstreamFailure> {
        self.unary_in(method, request, timeouts, &RequestContext::default())
            .await
    }

    /// [`GrpcUpstream::unary_with`] for a request with `context`, from
    /// which the upstream's configured metadata is sent (docs/config.md,
    /// "Metadata").
    pub async fn unary_in(
        &self,
        method: &str,
        request: Value,
        timeouts: CallTimeouts,
        context: &RequestContext,
    ) -> Result<Value, UpstreamFailure> {
        let method = self.method(method, false)?;
        let body = encode_request(&method, request)?;
        let admitted = self.admit()?;
        let deadline = timeouts.call.unwrap_or(self.config.call_timeout);
        let call = async {
            let mut reader = match self.start(&method, body, Some(deadline), context).await? {
                Started::Streaming(reader) => reader,
                Started::TrailersOnly => {
                    return Err(self.failure(
                        FailureKind::Failed,
                        "answered a unary call with no response message",
                    ))
                }
            };
            let message = match futures_lite::future::poll_fn(|cx| reader.poll_message(cx)).await {
                Some(message) => message?,
                None => {
                    return Err(self.failure(
                        FailureKind::Failed,
                        "answered a unary call with no response message",
                    ))
                }
            };
            // A unary response ends with its trailers; read them, since an
            // error status may follow the message.
            if let Some(extra) = futures_lite::future::poll_fn(|cx| reader.poll_message(cx)).await {
                extra?;
                return Err(self.failure(
                    FailureKind::Failed,
                    "answered a unary call with more than one message",
                ));
            }
            decode_response(&self.name, &method, &message)
        };
        let result = timeout(deadline, call).await.unwrap_or_else(|_| {
            Err(UpstreamFailure::new(
                FailureKind::Timeout,
                format!(
                    "upstream {} did not answer {} within {} ms",
                    self.name,
                    method.full_name(),
                    deadline.as_millis()
                ),
            ))
        });
        drop(admitted);
        result
    }

    /// Starts the server-streaming `method` with `request` in the proto3
    /// JSON mapping. Returns once the upstream has answered with response
    /// headers (bounded locally by `call_timeout`, which is not sent); each
    /// stream item is one response message as JSON. The stream has no
    /// deadline unless `stream_timeout` is configured. Dropping the stream
    /// resets it.
    pub async fn server_streaming(
        self: &Arc<Self>,
        method: &str,
        request: Value,
    ) -> Result<GrpcStream, UpstreamFailure> {
        self.server_streaming_with(method, request, CallTimeouts::default())
            .await
    }

    /// [`GrpcUpstream::server_streaming`] with a field's own bounds, each
    /// `Some` in `timeouts` replacing the upstream's configured one.
    pub async fn server_streaming_with(
        self: &Arc<Self>,
        method: &str,
        request: Value,
        timeouts: CallTimeouts,
    ) -> Result<GrpcStream, UpstreamFailure> {
        self.server_streaming_in(method, request, timeouts, &RequestContext::default())
            .await
    }

    /// [`GrpcUpstream::server_streaming_with`] for a request with
    /// `context`, from which the upstream's configured metadata is sent.
    pub async fn server_streaming_in(
        self: &Arc<Self>,
        method: &str,
        request: Value,
        timeouts: CallTimeouts,
        context: &RequestContext,
    ) -> Result<GrpcStream, UpstreamFailure> {
        let method = self.method(method, true)?;
        let body = encode_request(&method, request)?;
        let admitted = self.admit()?;
        let deadline = timeouts.call.unwrap_or(self.config.call_timeout);
        let lifetime = timeouts.stream.or(self.config.stream_timeout);
        // The whole stream's deadline starts with the call, as the server
        // counts `grpc-timeout` from the request's arrival.
        let ends_at = lifetime.map(|bound| (bound, Instant::now() + bound));
        let start = async {
            let started = self.start(&method, body, lifetime, context).await?;
            Ok(match started {
                Started::Streaming(reader) => Some(reader),
                Started::TrailersOnly => None,
            })
        };
        let reader = timeout(deadline, start).await.unwrap_or_else(|_| {
            Err(UpstreamFailure::new(
                FailureKind::Timeout,
                format!(
                    "upstream {} did not start {} within {} ms",
                    self.name,
                    method.full_name(),
                    deadline.as_millis()
                ),
            ))
        })?;
        Ok(GrpcStream {
            reader,
            upstream: self.name.clone(),
            method,
            admitted: Some(admitted),
            idle: timeouts
                .idle
                .or(self.config.stream_idle_timeout)
                .map(|bound| (bound, smol::Timer::after(bound))),
            deadline: ends_at.map(|(bound, at)| (bound, smol::Timer::at(at))),
        })
    }

    /// Finds `method` (`package.Service/Method`, a leading `/` allowed) and
    /// checks it is of the expected kind.
    pub(super) fn method(
        &self,
        method: &str,
        streaming: bool,
    ) -> Result<MethodDescriptor, UpstreamFailure> {
        let path = method.trim_start_matches('/');
        let Some((service_name, method_name)) = path.rsplit_once('/') else {
            return Err(UpstreamFailure::new(
                FailureKind::BadInput,
                format!("gRPC method {method:?} is not of the form package.Service/Method"),
            ));
        };
        let service = self.pool.get_service_by_name(service_name).ok_or_else(|| {
            UpstreamFailure::new(
                FailureKind::BadInput,
                format!("upstream {} has no service {service_name}", self.name),
            )
        })?;
        let found = service
            .methods()
            .find(|candidate| candidate.name() == method_name)
            .ok_or_else(|| {
                UpstreamFailure::new(
                    FailureKind::BadInput,
                    format!(
                        "service {service_name} of upstream {} has no method {method_name}",
                        self.name
                    ),
                )
            })?;
        if found.is_client_streaming() {
            return Err(UpstreamFailure::new(
                FailureKind::BadInput,
                format!("{path} is client-streaming, which Terminus does not call"),
            ));
        }
        if found.is_server_streaming() != streaming {
            let kind = if streaming {
                "unary"
            } else {
                "server-streaming"
            };
            return Err(UpstreamFailure::new(
                FailureKind::BadInput,
                format!("{path} is {kind}, and was called as the other kind"),
            ));
        }
        Ok(found)
    }

    /// Takes a concurrency permit, or fails at once when none is left.
    pub(super) fn admit(&self) -> Result<Admitted, UpstreamFailure> {
        let permit = self.permits.try_acquire_arc().ok_or_else(|| {
            self.connection_pool().busy_total += 1;
            UpstreamFailure::new(
                FailureKind::Busy,
                format!(
                    "upstream {} is at its concurrency limit ({})",
                    self.name, self.config.max_concurrent_streams
                ),
            )
        })?;
        Ok(Admitted {
            _permit: permit,
            _open: Gauge::new(&self.open_streams),
        })
    }

    pub(super) fn failure(&self, kind: FailureKind, what: &str) -> UpstreamFailure {
        UpstreamFailure::new(kind, format!("upstream {} {what}", self.name))
    }

    /// Sends the request on a pooled connection and reads the response
    /// headers. `grpc_timeout` is the deadline the server is told of, if
    /// any; the metadata is the upstream's, from `context`.
    pub(super) async fn start(
        &self,
        method: &MethodDescriptor,
        body: Bytes,
        grpc_timeout: Option<Duration>,
        context: &RequestContext,
    ) -> Result<Started, UpstreamFailure> {
        let (mut sender, slot) = self.sender().await?;
        let path = format!("/{}/{}", method.parent_service().full_name(), method.name());
        let mut request =
            http::Request::post(format!("{}://{}{}", self.scheme, self.authority, path))
                .header(http::header::CONTENT_TYPE, CONTENT_TYPE)
                .header(http::header::TE, "trailers");
        if let Some(deadline) = grpc_timeout {
            request = request.header("grpc-timeout", codec::timeout_header(deadline));
        }
        for (name, value) in self.metadata.headers(context) {
            request = request.header(name, value);
        }
        let request = request
            .header(
                http::header::USER_AGENT,
                concat!("terminus/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(body))
            .map_err(|error| {
                UpstreamFailure::new(
                    FailureKind::BadInput,
                    format!("building the request for {path}: {error}"),
                )
            })?;
        let response = sender.send_request(request).await.map_err(|error| {
            self.forget_connection(slot.connection);
            self.transport_failure(&error)
        })?;
        if let Some(status) = codec::Status::from_headers(response.headers()) {
            // A trailers-only response: the status came with the headers.
            let status = status.map_err(|message| self.failure(FailureKind::Failed, &message))?;
            if status.code != code::OK {
                return Err(status.into_failure(&self.name, &self.pool));
            }
            return Ok(Started::TrailersOnly);
        }
        if response.status() != http::StatusCode::OK {
            let kind = match response.status().as_u16() {
                429 => FailureKind::Busy,
                502..=504 => FailureKind::Unavailable,
                _ => FailureKind::Failed,
            };
            return Err(self.failure(
                kind,
                &format!("answered with HTTP status {}", response.status()),
            ));
        }
        let content_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("");
        if !content_type.starts_with(CONTENT_TYPE) {
            return Err(self.failure(
                FailureKind::Failed,
                &format!("answered with content-type {content_type:?}, not {CONTENT_TYPE}"),
            ));
        }
        Ok(Started::Streaming(ResponseReader {
            body: response.into_body(),
            buffer: BytesMut::new(),
            finished: false,
            upstream: self.name.clone(),
            pool: self.pool.clone(),
            _slot: slot,
        }))
    }
}

/// A call's concurrency permit and its place in `open_streams`.
pub(super) struct Admitted {
    _permit: SemaphoreGuardArc,
    _open: Gauge,
}

/// What the response headers said.
pub(super) enum Started {
    /// Messages follow, then trailers.
    Streaming(ResponseReader),
    /// An OK status with no messages (errors are returned as failures).
    TrailersOnly,
}

/// Reads gRPC messages and the final status from a response body.
pub(super) struct ResponseReader {
    body: Incoming,
    buffer: BytesMut,
    finished: bool,
    upstream: String,
    /// The upstream's descriptors, for its own status detail types.
    pool: prost_reflect::DescriptorPool,
    /// The stream's place on its connection, as long as the body is held.
    _slot: StreamSlot,
}

impl ResponseReader {
    /// The next message, a failure (after which the reader is finished), or
    /// `None` when the upstream ended the call with an OK status.
    pub(super) fn poll_message(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, UpstreamFailure>>> {
        loop {
            if self.finished {
                return Poll::Ready(None);
            }
            match take_frame(&mut self.buffer) {
                Ok(Some(message)) => return Poll::Ready(Some(Ok(message))),
                Ok(None) => {}
                Err(message) => {
                    return Poll::Ready(Some(Err(self.finish(FailureKind::Failed, message))))
                }
            }
            match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.buffer.extend_from_slice(&data),
                    Err(frame) => {
                        let Ok(trailers) = frame.into_trailers() else {
                            continue;
                        };
                        self.finished = true;
                        return Poll::Ready(self.end(codec::Status::from_headers(&trailers)));
                    }
                },
                Some(Err(error)) => {
                    tracing::debug!(upstream = %self.upstream, %error, "gRPC stream failed in transport");
                    let message = format!("upstream {} is unreachable: {error}", self.upstream);
                    return Poll::Ready(Some(Err(self.finish(FailureKind::Unavailable, message))));
                }
                None => {
                    self.finished = true;
                    return Poll::Ready(self.end(None));
                }
            }
        }
    }

    /// The outcome of a call that ended with `status` in its trailers.
    pub(super) fn end(
        &mut self,
        status: Option<Result<codec::Status, String>>,
    ) -> Option<Result<Bytes, UpstreamFailure>> {
        let failure =
            |message: String| Some(Err(UpstreamFailure::new(FailureKind::Failed, message)));
        match status {
            None => failure(format!(
                "upstream {} ended a call without a grpc-status",
                self.upstream
            )),
            Some(Err(message)) => failure(format!("upstream {}: {message}", self.upstream)),
            Some(Ok(status)) if status.code != code::OK => {
                Some(Err(status.into_failure(&self.upstream, &self.pool)))
            }
            Some(Ok(_)) if !self.buffer.is_empty() => failure(format!(
                "upstream {} ended a call in the middle of a message",
                self.upstream
            )),
            Some(Ok(_)) => None,
        }
    }

    pub(super) fn finish(&mut self, kind: FailureKind, message: String) -> UpstreamFailure {
        self.finished = true;
        UpstreamFailure::new(kind, message)
    }
}

/// The messages of a server-streaming call, as JSON. Ends after the
/// upstream's OK status, or after one `Err` item. Dropping it resets the
/// HTTP/2 stream and frees its concurrency permit.
pub struct GrpcStream {
    /// `None` when the upstream answered with no messages at all.
    reader: Option<ResponseReader>,
    upstream: String,
    method: MethodDescriptor,
    /// Released as soon as the call has ended on the wire, so a finished
    /// stream that is not dropped yet neither counts nor holds a permit.
    admitted: Option<Admitted>,
    /// The idle bound and its timer, restarted by each message.
    idle: Option<(Duration, smol::Timer)>,
    /// The whole stream's deadline (`stream_timeout`) and its timer.
    deadline: Option<(Duration, smol::Timer)>,
}

impl std::fmt::Debug for GrpcStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcStream")
            .field("upstream", &self.upstream)
            .field("method", &self.method.full_name())
            .finish_non_exhaustive()
    }
}

impl Stream for GrpcStream {
    type Item = Result<Value, UpstreamFailure>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let Some(reader) = this.reader.as_mut() else {
            this.admitted = None;
            return Poll::Ready(None);
        };
        let item = match reader.poll_message(cx) {
            Poll::Ready(item) => {
                if let Some((bound, timer)) = this.idle.as_mut() {
                    timer.set_after(*bound);
                }
                item
            }
            Poll::Pending => {
                let expired = if let Some((bound, timer)) = this.deadline.as_mut() {
                    Pin::new(timer)
                        .poll(cx)
                        .is_ready()
                        .then(|| format!("lasted its deadline of {} ms", bound.as_millis()))
                } else {
                    None
                };
                let expired = expired.or_else(|| {
                    let (bound, timer) = this.idle.as_mut()?;
                    Pin::new(timer)
                        .poll(cx)
                        .is_ready()
                        .then(|| format!("sent nothing for {} ms", bound.as_millis()))
                });
                let Some(what) = expired else {
                    return Poll::Pending;
                };
                let failure = UpstreamFailure::new(
                    FailureKind::Timeout,
                    format!(
                        "stream {} of upstream {} {what}",
                        this.method.full_name(),
                        this.upstream,
                    ),
                );
                this.reader = None;
                this.admitted = None;
                return Poll::Ready(Some(Err(failure)));
            }
        };
        let item = item.map(|message| {
            let message = message?;
            decode_response(&this.upstream, &this.method, &message)
                .inspect_err(|_| reader.finished = true)
        });
        if reader.finished {
            // Dropping the body resets the stream if the upstream has not
            // ended it (a message that did not decode).
            this.reader = None;
            this.admitted = None;
        }
        Poll::Ready(item)
    }
}
