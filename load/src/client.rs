//! One simulated client: a TCP socket, a WebSocket (async-tungstenite with
//! a small read buffer) and the core's [`ClientConnection`] state machine,
//! driven on smol.
//!
//! A client's memory is its socket, the WebSocket's read buffer, the state
//! machine and one small slot per subscription; counters live in
//! [`Shared`], not per client.

use crate::cli::{EndMode, Mode};
use crate::stats::{Shared, TickTrack};
use async_lock::{Semaphore, SemaphoreGuardArc};
use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message};
use async_tungstenite::WebSocketStream;
use futures_lite::{FutureExt, StreamExt};
use serde_json::Value;
use smol::net::TcpStream;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use terminus_core::client::{ClientConfig, ClientConnection, ClientEffect, ClientEvent};
use terminus_core::protocol::{close, Subprotocol};
use terminus_core::Millis;

/// Pause before a reconnect-mode client tries again after a failure, so a
/// refusing server is not hammered.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(100);

/// What every client of a run does.
#[derive(Debug, Clone)]
pub struct ClientPlan {
    /// The `ws://` URL.
    pub url: String,
    /// `host:port` to open the TCP connection to.
    pub authority: String,
    /// Subscriptions per connection.
    pub subscriptions: usize,
    /// The expected tick period.
    pub period: Duration,
    /// What to do once connected.
    pub mode: Mode,
    /// How to end when told to stop.
    pub end: EndMode,
    /// Bound on TCP connect + WebSocket handshake.
    pub connect_timeout: Duration,
    /// Bound on `connection_ack`.
    pub ack_timeout: Duration,
    /// Bound on a clean close.
    pub close_timeout: Duration,
    /// The WebSocket's buffers.
    pub ws_config: WebSocketConfig,
}

/// Who a client is within the run.
#[derive(Debug, Clone)]
pub struct ClientSlot {
    /// The subprotocol it speaks.
    pub protocol: Subprotocol,
    /// The document its subscriptions send (shared by the clients that
    /// send the same one).
    pub query: Arc<str>,
    /// How long after the ramp it subscribes (hold and churn modes), so
    /// that subscriptions, and so ticks, are spread over time instead of
    /// arriving in one burst per period.
    pub subscribe_after: Duration,
}

impl ClientPlan {
    /// `host:port` of a `ws://host:port/path` URL.
    pub fn authority_of(url: &str) -> Result<String, String> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| format!("{url}: only ws:// URLs are supported"))?;
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() {
            return Err(format!("{url}: no host"));
        }
        Ok(if authority.contains(':') {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        })
    }
}

/// How one session (one socket) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionEnd {
    /// Told to stop; the socket was dropped or closed as planned.
    Stopped,
    /// Reconnect mode: every subscription got its first result; dropped.
    Cycle,
    /// Connect, handshake or ack failed, or the server closed.
    Failed,
}

/// Runs one simulated client until the run stops it. `permit` bounds the
/// connections still connecting; it is released at `connection_ack`.
pub async fn run_client(
    shared: Arc<Shared>,
    plan: Arc<ClientPlan>,
    who: ClientSlot,
    pending: Arc<Semaphore>,
    permit: SemaphoreGuardArc,
) {
    let mut permit = Some(permit);
    loop {
        if shared.stop.is_set() {
            return;
        }
        let permit = match permit.take() {
            Some(permit) => permit,
            None => {
                let acquire = async { Some(pending.acquire_arc().await) };
                let stop = async {
                    shared.stop.wait().await;
                    None
                };
                match acquire.or(stop).await {
                    Some(permit) => permit,
                    None => return,
                }
            }
        };
        let end = session(&shared, &plan, who.clone(), permit).await;
        match (plan.mode, end) {
            (Mode::Reconnect, SessionEnd::Cycle) => continue,
            (Mode::Reconnect, SessionEnd::Failed) => {
                let backoff = async {
                    smol::Timer::after(RECONNECT_BACKOFF).await;
                };
                backoff.or(shared.stop.wait()).await;
            }
            _ => return,
        }
    }
}

/// `seq` of the first field of a result's `data` (`data.ticks.seq`,
/// `data.clock.seq`, `data.room.seq`).
pub fn result_seq(payload: &Value) -> Option<i64> {
    payload
        .get("data")?
        .as_object()?
        .values()
        .next()?
        .get("seq")?
        .as_i64()
}

/// An error's `extensions.code`, or "(no code)".
pub fn error_code(error: &Value) -> &str {
    error
        .pointer("/extensions/code")
        .and_then(Value::as_str)
        .unwrap_or("(no code)")
}

/// Counts one live thing in a gauge for as long as it exists.
struct Gauge<'a>(&'a AtomicUsize);

impl<'a> Gauge<'a> {
    fn enter(gauge: &'a AtomicUsize) -> Gauge<'a> {
        gauge.fetch_add(1, Ordering::Relaxed);
        Gauge(gauge)
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One subscription slot of a connection.
struct Slot {
    /// The operation id the state machine gave it.
    id: String,
    /// Timing state once its first result arrived.
    track: Option<TickTrack>,
    /// Whether it has received a result (counted in `subscriptions_flowing`).
    flowing: bool,
    /// When its `subscribe` was sent (µs on the run's clock).
    subscribed_us: u64,
}

/// What the select in the session loop woke up for.
enum Wake {
    Frame(Option<Result<Message, WsError>>),
    Stop,
    Timer,
    Go,
    Subscribe,
}

/// The client's side of a live connection.
struct Session<'a> {
    shared: &'a Shared,
    plan: &'a ClientPlan,
    query: Arc<str>,
    client: ClientConnection,
    slots: Vec<Slot>,
    started_us: u64,
    permit: Option<SemaphoreGuardArc>,
    acked: Option<Gauge<'a>>,
}

async fn session(
    shared: &Shared,
    plan: &ClientPlan,
    who: ClientSlot,
    permit: SemaphoreGuardArc,
) -> SessionEnd {
    let protocol = who.protocol;
    let started_us = shared.now_us();
    let connecting = Gauge::enter(&shared.connecting);
    let connect = connect(plan, protocol);
    let stop = async {
        shared.stop.wait().await;
        Err(None)
    };
    let mut ws = match connect.or(stop).await {
        Ok(ws) => ws,
        Err(None) => return SessionEnd::Stopped,
        Err(Some(message)) => {
            shared.connect_failures.fetch_add(1, Ordering::Relaxed);
            shared.note_failure(message);
            return SessionEnd::Failed;
        }
    };
    drop(connecting);
    let _open = Gauge::enter(&shared.open);
    let now = millis(shared);
    let config = ClientConfig {
        ack_timeout: plan.ack_timeout,
        ..ClientConfig::default()
    };
    let mut state = Session {
        shared,
        plan,
        query: who.query.clone(),
        client: ClientConnection::new(now, protocol, config),
        slots: Vec::with_capacity(plan.subscriptions),
        started_us,
        permit: Some(permit),
        acked: None,
    };
    state.client.handle_opened(now);
    if plan.mode == Mode::Reconnect {
        state.subscribe_all(now);
    }
    let end = state.drive(&mut ws, who.subscribe_after).await;
    if state.acked.is_none() && end == SessionEnd::Failed {
        shared.connect_failures.fetch_add(1, Ordering::Relaxed);
    }
    for slot in &state.slots {
        if slot.flowing {
            shared.subscriptions_flowing.fetch_sub(1, Ordering::Relaxed);
        }
    }
    end
}

/// TCP connect and WebSocket handshake offering `protocol`, bounded.
async fn connect(
    plan: &ClientPlan,
    protocol: Subprotocol,
) -> Result<WebSocketStream<TcpStream>, Option<String>> {
    let attempt = async {
        let stream = TcpStream::connect(plan.authority.as_str())
            .await
            .map_err(|e| format!("connect {}: {e}", plan.authority))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let mut request = plan
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| format!("request for {}: {e}", plan.url))?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(protocol.name()),
        );
        let (ws, response) =
            async_tungstenite::client_async_with_config(request, stream, Some(plan.ws_config))
                .await
                .map_err(|e| format!("WebSocket handshake: {e}"))?;
        let chosen = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok());
        if chosen != Some(protocol.name()) {
            return Err(format!(
                "the server chose subprotocol {chosen:?}, not {}",
                protocol.name()
            ));
        }
        Ok(ws)
    };
    let expired = async {
        smol::Timer::after(plan.connect_timeout).await;
        Err(format!(
            "connect and handshake took longer than {:?}",
            plan.connect_timeout
        ))
    };
    attempt.or(expired).await.map_err(Some)
}

fn millis(shared: &Shared) -> Millis {
    Millis(shared.now_us() / 1000)
}

impl Session<'_> {
    /// Requests every subscription of the plan.
    fn subscribe_all(&mut self, now: Millis) {
        let subscribed_us = self.shared.now_us();
        for _ in 0..self.plan.subscriptions {
            let id = self.client.subscribe(now, &self.query, None, None);
            self.slots.push(Slot {
                id,
                track: None,
                flowing: false,
                subscribed_us,
            });
        }
    }

    /// Runs the connection until it ends.
    async fn drive(
        &mut self,
        ws: &mut WebSocketStream<TcpStream>,
        subscribe_after: Duration,
    ) -> SessionEnd {
        let mut stop = pin!(self.shared.stop.wait());
        // Hold and churn modes subscribe only once the whole ramp is up, so
        // that results do not slow down the handshakes still in progress.
        let mut waiting_for_go = self.plan.mode != Mode::Reconnect;
        let mut go = pin!(self.shared.go.wait());
        // Armed at the go signal for `subscribe_after`.
        let mut subscribe_timer = smol::Timer::never();
        let mut timer = smol::Timer::never();
        let mut armed: Option<Millis> = None;
        loop {
            if let Some(end) = self.apply_effects(ws).await {
                return end;
            }
            let deadline = self.client.poll_timeout();
            if deadline != armed {
                armed = deadline;
                timer = match deadline {
                    Some(at) => {
                        smol::Timer::at(self.shared.start + Duration::from_millis(at.as_u64()))
                    }
                    None => smol::Timer::never(),
                };
            }
            let wake = {
                let stop = async {
                    (&mut stop).await;
                    Wake::Stop
                };
                let frame = async { Wake::Frame(ws.next().await) };
                let timer = async {
                    (&mut timer).await;
                    Wake::Timer
                };
                let go = async {
                    if waiting_for_go {
                        (&mut go).await;
                        Wake::Go
                    } else {
                        std::future::pending().await
                    }
                };
                let subscribe = async {
                    (&mut subscribe_timer).await;
                    Wake::Subscribe
                };
                stop.or(frame).or(timer).or(go).or(subscribe).await
            };
            let now = millis(self.shared);
            match wake {
                Wake::Stop => return self.end(ws).await,
                Wake::Go => {
                    waiting_for_go = false;
                    if subscribe_after.is_zero() {
                        self.subscribe_all(now);
                    } else {
                        subscribe_timer = smol::Timer::after(subscribe_after);
                    }
                }
                Wake::Subscribe => {
                    subscribe_timer = smol::Timer::never();
                    self.subscribe_all(now);
                }
                Wake::Timer => {
                    armed = None;
                    self.client.handle_timeout(now);
                }
                Wake::Frame(Some(Ok(Message::Text(text)))) => {
                    self.client.handle_text(now, text.as_str());
                }
                Wake::Frame(Some(Ok(Message::Close(frame)))) => {
                    let (code, reason) = frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((close::NO_STATUS_RECEIVED, String::new()));
                    self.client.handle_transport_closed(now, code, &reason);
                }
                // tungstenite answers pings itself; binary frames are not
                // part of either subprotocol.
                Wake::Frame(Some(Ok(_))) => {}
                Wake::Frame(Some(Err(error))) => {
                    self.client.handle_transport_closed(
                        now,
                        close::ABNORMAL_CLOSURE,
                        &error.to_string(),
                    );
                }
                Wake::Frame(None) => {
                    self.client.handle_transport_closed(
                        now,
                        close::ABNORMAL_CLOSURE,
                        "the socket closed",
                    );
                }
            }
        }
    }

    /// Does what the state machine asks; `Some` when the session is over.
    async fn apply_effects(&mut self, ws: &mut WebSocketStream<TcpStream>) -> Option<SessionEnd> {
        while let Some(effect) = self.client.poll_effect() {
            match effect {
                ClientEffect::SendText(text) => {
                    if let Err(error) = ws.send(Message::text(text)).await {
                        let now = millis(self.shared);
                        self.client.handle_transport_closed(
                            now,
                            close::ABNORMAL_CLOSURE,
                            &error.to_string(),
                        );
                    }
                }
                ClientEffect::Close { code, reason } => {
                    // The state machine gave up on the server (ack timeout,
                    // bad frame): close and count it as a failure.
                    self.shared
                        .note_failure(format!("client closed with {code}: {reason}"));
                    let frame = CloseFrame {
                        code: CloseCode::from(code),
                        reason: reason.into(),
                    };
                    let _ = ws.close(Some(frame)).await;
                    return Some(SessionEnd::Failed);
                }
                ClientEffect::Event(event) => {
                    if let Some(end) = self.on_event(event) {
                        return Some(end);
                    }
                }
            }
        }
        None
    }

    fn on_event(&mut self, event: ClientEvent) -> Option<SessionEnd> {
        let shared = self.shared;
        match event {
            ClientEvent::Acked { .. } => {
                let elapsed = shared.now_us().saturating_sub(self.started_us);
                Shared::record(&shared.handshake, elapsed);
                shared.acked_total.fetch_add(1, Ordering::Relaxed);
                shared
                    .last_ack_us
                    .fetch_max(shared.now_us(), Ordering::Relaxed);
                self.acked = Some(Gauge::enter(&shared.acked));
                self.permit = None;
                None
            }
            ClientEvent::Next { id, payload } => self.on_next(&id, &payload),
            ClientEvent::Error { id, errors } => {
                shared.operation_errors.fetch_add(1, Ordering::Relaxed);
                for error in &errors {
                    shared.note_error_code(error_code(error));
                }
                shared.note_failure(format!("operation error: {}", Value::Array(errors)));
                self.on_operation_end(&id);
                None
            }
            ClientEvent::Complete { id } => {
                shared.operation_completes.fetch_add(1, Ordering::Relaxed);
                self.on_operation_end(&id);
                None
            }
            ClientEvent::Closed { code, reason } => {
                if !shared.stop.is_set() {
                    shared.server_closes.fetch_add(1, Ordering::Relaxed);
                    shared.note_failure(format!("connection closed: {code} {reason}"));
                }
                Some(SessionEnd::Failed)
            }
        }
    }

    fn on_next(&mut self, id: &str, payload: &Value) -> Option<SessionEnd> {
        let shared = self.shared;
        let now_us = shared.now_us();
        shared.frames.fetch_add(1, Ordering::Relaxed);
        let slot = self.slots.iter_mut().find(|slot| slot.id == id)?;
        let seq = result_seq(payload);
        if !slot.flowing {
            slot.flowing = true;
            shared.subscriptions_flowing.fetch_add(1, Ordering::Relaxed);
            if shared.recording.load(Ordering::Relaxed) {
                Shared::record(
                    &shared.first_result,
                    now_us.saturating_sub(slot.subscribed_us),
                );
            }
        }
        if let Some(seq) = seq {
            match slot.track.as_mut() {
                None => slot.track = Some(TickTrack::first(seq, now_us)),
                Some(track) => {
                    let timing = track.tick(seq, now_us, self.plan.period);
                    shared
                        .skipped_ticks
                        .fetch_add(timing.skipped, Ordering::Relaxed);
                    if shared.recording.load(Ordering::Relaxed) {
                        Shared::record(&shared.lateness, timing.lateness_us);
                        Shared::record(&shared.gap_excess, timing.gap_excess_us);
                        if timing.early {
                            shared.early_ticks.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
        match self.plan.mode {
            Mode::Hold => None,
            Mode::Churn => {
                // Subscribe-then-complete: this slot's operation produced its
                // first result; complete it and subscribe again.
                let now = Millis(now_us / 1000);
                let old = std::mem::take(&mut slot.id);
                slot.flowing = false;
                slot.track = None;
                shared.subscriptions_flowing.fetch_sub(1, Ordering::Relaxed);
                self.client.complete(now, &old);
                slot.id = self.client.subscribe(now, &self.query, None, None);
                slot.subscribed_us = now_us;
                shared.cycles.fetch_add(1, Ordering::Relaxed);
                None
            }
            Mode::Reconnect => {
                if self.slots.iter().all(|slot| slot.flowing) {
                    shared.cycles.fetch_add(1, Ordering::Relaxed);
                    Some(SessionEnd::Cycle)
                } else {
                    None
                }
            }
        }
    }

    fn on_operation_end(&mut self, id: &str) {
        let Some(index) = self.slots.iter().position(|slot| slot.id == id) else {
            return;
        };
        let slot = self.slots.swap_remove(index);
        if slot.flowing {
            self.shared
                .subscriptions_flowing
                .fetch_sub(1, Ordering::Relaxed);
        }
        if self.plan.mode == Mode::Churn && !self.shared.stop.is_set() {
            // Keep the slot busy: the server ended this operation first.
            let now = millis(self.shared);
            self.slots.push(Slot {
                id: self.client.subscribe(now, &self.query, None, None),
                track: None,
                flowing: false,
                subscribed_us: self.shared.now_us(),
            });
        }
    }

    /// Ends the connection as planned after the stop signal.
    async fn end(&mut self, ws: &mut WebSocketStream<TcpStream>) -> SessionEnd {
        if self.plan.end == EndMode::Abrupt {
            // Dropping the socket (by returning) closes the TCP connection
            // without a complete or a close frame.
            return SessionEnd::Stopped;
        }
        let now = millis(self.shared);
        let ids: Vec<String> = self.client.active_ids().map(str::to_owned).collect();
        for id in &ids {
            self.client.complete(now, id);
        }
        self.client.close(now, close::NORMAL, "load test done");
        let shared = self.shared;
        let plan = self.plan;
        let clean = async {
            while let Some(effect) = self.client.poll_effect() {
                match effect {
                    ClientEffect::SendText(text) => {
                        if ws.send(Message::text(text)).await.is_err() {
                            return;
                        }
                    }
                    ClientEffect::Close { code, reason } => {
                        let frame = CloseFrame {
                            code: CloseCode::from(code),
                            reason: reason.into(),
                        };
                        if ws.close(Some(frame)).await.is_err() {
                            return;
                        }
                    }
                    ClientEffect::Event(_) => {}
                }
            }
            // Wait for the server's close frame, which ends the stream.
            while let Some(Ok(_)) = ws.next().await {}
        };
        let expired = async {
            smol::Timer::after(plan.close_timeout).await;
            shared.note_failure(format!(
                "the server did not finish the close handshake within {:?}",
                plan.close_timeout
            ));
        };
        clean.or(expired).await;
        SessionEnd::Stopped
    }
}

/// The `say` publisher: one extra connection, opened before the clients'
/// ramp (so a server busy with the ramp does not delay it), that from the
/// go signal on sends each of `documents` (mutations) every `every` and
/// counts the answers in `shared` (`says_*`); it ends at the stop signal
/// and connects again (after a pause) when its connection fails. A round
/// is skipped while more than two rounds' mutations are still unanswered,
/// so a slow server never makes it queue without bound.
pub async fn run_publisher(
    shared: Arc<Shared>,
    plan: Arc<ClientPlan>,
    protocol: Subprotocol,
    documents: Vec<String>,
    every: Duration,
) {
    while !shared.stop.is_set() {
        publish(&shared, &plan, protocol, &documents, every).await;
        let backoff = async {
            smol::Timer::after(RECONNECT_BACKOFF).await;
        };
        backoff.or(shared.stop.wait()).await;
    }
}

/// One connection of the publisher, until it fails or the stop signal.
async fn publish(
    shared: &Shared,
    plan: &ClientPlan,
    protocol: Subprotocol,
    documents: &[String],
    every: Duration,
) {
    let connect = connect(plan, protocol);
    let stop = async {
        shared.stop.wait().await;
        Err(None)
    };
    let mut ws = match connect.or(stop).await {
        Ok(ws) => ws,
        Err(None) => return,
        Err(Some(message)) => {
            shared.note_failure(format!("say publisher: {message}"));
            return;
        }
    };
    let config = ClientConfig {
        ack_timeout: plan.ack_timeout,
        ..ClientConfig::default()
    };
    let now = millis(shared);
    let mut client = ClientConnection::new(now, protocol, config);
    client.handle_opened(now);
    let mut round = smol::Timer::never();
    let mut waiting_for_go = true;
    let mut go = pin!(shared.go.wait());
    let mut timer = smol::Timer::never();
    let mut armed: Option<Millis> = None;
    let mut stop = pin!(shared.stop.wait());
    loop {
        while let Some(effect) = client.poll_effect() {
            match effect {
                ClientEffect::SendText(text) => {
                    if let Err(error) = ws.send(Message::text(text)).await {
                        client.handle_transport_closed(
                            millis(shared),
                            close::ABNORMAL_CLOSURE,
                            &error.to_string(),
                        );
                    }
                }
                ClientEffect::Close { code, reason } => {
                    shared.note_failure(format!("say publisher closed with {code}: {reason}"));
                    return;
                }
                ClientEffect::Event(ClientEvent::Next { payload, .. }) => {
                    if payload.get("errors").is_some() {
                        shared.says_failed.fetch_add(1, Ordering::Relaxed);
                    } else {
                        shared.says_ok.fetch_add(1, Ordering::Relaxed);
                    }
                }
                ClientEffect::Event(ClientEvent::Error { errors, .. }) => {
                    shared.says_failed.fetch_add(1, Ordering::Relaxed);
                    shared.note_failure(format!("say: {}", Value::Array(errors)));
                }
                ClientEffect::Event(ClientEvent::Closed { code, reason }) => {
                    if !shared.stop.is_set() {
                        shared.note_failure(format!(
                            "say publisher: connection closed: {code} {reason}"
                        ));
                    }
                    return;
                }
                ClientEffect::Event(_) => {}
            }
        }
        let deadline = client.poll_timeout();
        if deadline != armed {
            armed = deadline;
            timer = match deadline {
                Some(at) => smol::Timer::at(shared.start + Duration::from_millis(at.as_u64())),
                None => smol::Timer::never(),
            };
        }
        let wake = {
            let stop = async {
                (&mut stop).await;
                Wake::Stop
            };
            let frame = async { Wake::Frame(ws.next().await) };
            let timer = async {
                (&mut timer).await;
                Wake::Timer
            };
            let round = async {
                round.next().await;
                Wake::Subscribe
            };
            let go = async {
                if waiting_for_go {
                    (&mut go).await;
                    Wake::Go
                } else {
                    std::future::pending().await
                }
            };
            stop.or(frame).or(timer).or(round).or(go).await
        };
        let now = millis(shared);
        match wake {
            Wake::Stop => return,
            Wake::Go => {
                waiting_for_go = false;
                round = smol::Timer::interval(every);
            }
            Wake::Subscribe => {
                if !client.is_ready() || client.active_operations() > 2 * documents.len() {
                    continue;
                }
                for document in documents {
                    client.subscribe(now, document, None, None);
                    shared.says_sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            Wake::Timer => {
                armed = None;
                client.handle_timeout(now);
            }
            Wake::Frame(Some(Ok(Message::Text(text)))) => client.handle_text(now, text.as_str()),
            Wake::Frame(Some(Ok(Message::Close(_)))) | Wake::Frame(None) => {
                client.handle_transport_closed(now, close::ABNORMAL_CLOSURE, "the socket closed")
            }
            Wake::Frame(Some(Ok(_))) => {}
            Wake::Frame(Some(Err(error))) => {
                client.handle_transport_closed(now, close::ABNORMAL_CLOSURE, &error.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_of_urls() {
        assert_eq!(
            ClientPlan::authority_of("ws://127.0.0.1:8080/graphql").unwrap(),
            "127.0.0.1:8080"
        );
        assert_eq!(
            ClientPlan::authority_of("ws://localhost/graphql").unwrap(),
            "localhost:80"
        );
        assert!(ClientPlan::authority_of("wss://x/graphql").is_err());
        assert!(ClientPlan::authority_of("ws:///graphql").is_err());
    }

    #[test]
    fn seq_and_error_codes_are_read_from_any_field() {
        let tick = serde_json::json!({"data": {"ticks": {"seq": 4}}});
        let clock = serde_json::json!({"data": {"clock": {"seq": 9}}});
        let room = serde_json::json!({"data": {"room": {"seq": 2, "text": "hi"}}});
        assert_eq!(result_seq(&tick), Some(4));
        assert_eq!(result_seq(&clock), Some(9));
        assert_eq!(result_seq(&room), Some(2));
        assert_eq!(
            result_seq(&serde_json::json!({"data": {"say": true}})),
            None
        );
        assert_eq!(result_seq(&serde_json::json!({"errors": []})), None);
        let busy = serde_json::json!({"message": "m", "extensions": {"code": "UPSTREAM_BUSY"}});
        assert_eq!(error_code(&busy), "UPSTREAM_BUSY");
        assert_eq!(
            error_code(&serde_json::json!({"message": "m"})),
            "(no code)"
        );
    }
}
