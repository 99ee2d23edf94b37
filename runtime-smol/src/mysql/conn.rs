//! One MySQL connection: the thin IO layer around the protocol machines.
//!
//! Reads are cancellation-safe: bytes that arrived are kept in the
//! connection's buffers and an unfinished answer stays in `pending`, so a
//! dropped query can be drained later. A write cut off half-way leaves the
//! stream unusable, which `writing` records so the pool discards it.

use super::protocol::{
    self, Credentials, Expect, Handshake, HandshakeStep, Outcome, PreparedStatement, ProtoError,
    ResponseReader, Session, TlsWish,
};
use super::SslMode;
use crate::tls::{self, ClientTlsConfig, Verify};
use bytes::BytesMut;
use mysql_common::proto::codec::PacketCodec;
use serde_json::Value;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;
use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// Prepared statements kept per connection (the `@sql`/`@live` statements of
/// one schema are few; past this the oldest is closed on the server).
const STATEMENT_CACHE: usize = 64;

/// Why a command failed.
#[derive(Debug)]
pub(crate) enum ConnError {
    /// The socket failed or closed; the connection is gone.
    Io(io::Error),
    /// The server sent an error; the connection is still usable.
    Server {
        code: u16,
        state: Option<String>,
        message: String,
    },
    /// The peer broke the protocol; the connection is gone.
    Protocol(String),
    /// The caller's input cannot be sent (e.g. wrong parameter count).
    BadInput(String),
    /// Connecting took longer than the connect timeout.
    ConnectTimeout,
}

impl From<io::Error> for ConnError {
    fn from(e: io::Error) -> Self {
        ConnError::Io(e)
    }
}

impl From<ProtoError> for ConnError {
    fn from(e: ProtoError) -> Self {
        match e {
            ProtoError::Server {
                code,
                state,
                message,
            } => ConnError::Server {
                code,
                state,
                message,
            },
            ProtoError::Protocol(m) => ConnError::Protocol(m),
        }
    }
}

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub host: String,
    pub port: u16,
    pub credentials: Credentials,
    pub tls: TargetTls,
}

/// How a connection to the target uses TLS (`ssl_mode` and `[tls]`).
#[derive(Clone)]
pub(crate) struct TargetTls {
    mode: SslMode,
    client: Option<(
        Arc<rustls::ClientConfig>,
        rustls_pki_types::ServerName<'static>,
    )>,
}

impl PartialEq for TargetTls {
    fn eq(&self, other: &Self) -> bool {
        self.mode == other.mode
            && self.client.as_ref().map(|c| &c.1) == other.client.as_ref().map(|c| &c.1)
    }
}

impl Eq for TargetTls {}

impl std::fmt::Debug for TargetTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetTls")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl TargetTls {
    /// Plaintext.
    pub fn disabled() -> TargetTls {
        TargetTls {
            mode: SslMode::Disabled,
            client: None,
        }
    }

    /// Loads the CA bundle and client certificate `mode` needs; errors
    /// name the file.
    pub fn new(mode: SslMode, config: &ClientTlsConfig, host: &str) -> Result<TargetTls, String> {
        let verify = match mode {
            SslMode::Disabled => return Ok(TargetTls::disabled()),
            SslMode::Preferred | SslMode::Required => Verify::None,
            SslMode::VerifyCa => Verify::ChainOnly,
            SslMode::VerifyIdentity => Verify::Full,
        };
        let client = tls::client_config(config, verify, &[]).map_err(|e| format!("tls: {e}"))?;
        let name = tls::server_name(config, host).map_err(|e| format!("tls: {e}"))?;
        Ok(TargetTls {
            mode,
            client: Some((client, name)),
        })
    }

    fn wish(&self) -> TlsWish {
        match self.mode {
            SslMode::Disabled => TlsWish::Never,
            SslMode::Preferred => TlsWish::IfOffered,
            _ => TlsWish::Required,
        }
    }
}

/// A connected, authenticated session.
pub(crate) struct Conn {
    /// `None` only for the instant the TLS handshake owns the socket.
    stream: Option<tls::Conn>,
    codec: PacketCodec,
    /// Bytes read from the socket and not yet decoded.
    read_buf: BytesMut,
    /// The packet being assembled (a packet can span several chunks).
    packet: Vec<u8>,
    session: Session,
    max_rows: usize,
    /// See `ResponseReader::with_zone` in `runtime-smol/src/mysql/protocol.rs`.
    zone: Option<std::sync::Arc<str>>,
    /// The answer still owed by the server for the last command.
    pending: Option<ResponseReader>,
    /// True while a write is in progress: if the future is dropped then,
    /// the stream holds half a packet and cannot be reused.
    writing: bool,
    /// Set after an IO or protocol error.
    broken: bool,
    /// The server says a transaction is open (a `BEGIN` without `COMMIT`):
    /// such a connection must not serve another call, which would run
    /// inside that transaction.
    in_transaction: bool,
    statements: HashMap<String, PreparedStatement>,
    statement_order: Vec<String>,
}

impl Conn {
    /// Connects and logs in, all within `timeout`.
    pub async fn connect(
        target: &Target,
        timeout: Duration,
        max_rows: usize,
    ) -> Result<Conn, ConnError> {
        let connecting = async {
            let stream = TcpStream::connect((target.host.as_str(), target.port)).await?;
            stream.set_nodelay(true)?;
            let mut handshake = Handshake::with_tls(target.credentials.clone(), target.tls.wish());
            let mut conn = Conn {
                stream: Some(tls::Conn::Plain(stream)),
                codec: {
                    // Accept what the handshake announces (16 MiB), not the
                    // codec's 4 MiB default.
                    let mut codec = PacketCodec::default();
                    codec.max_allowed_packet = protocol::MAX_PACKET_SIZE as usize;
                    codec
                },
                read_buf: BytesMut::with_capacity(4096),
                packet: Vec::new(),
                session: protocol::Session {
                    capabilities: Default::default(),
                    thread_id: 0,
                },
                max_rows,
                zone: None,
                pending: None,
                writing: false,
                broken: false,
                in_transaction: false,
                statements: HashMap::new(),
                statement_order: Vec::new(),
            };
            loop {
                let packet = conn.read_packet().await?;
                match handshake.handle_packet(&packet)? {
                    HandshakeStep::Send(data) => conn.write_packet(&data).await?,
                    HandshakeStep::StartTls {
                        ssl_request,
                        response,
                    } => {
                        conn.write_packet(&ssl_request).await?;
                        let Some((config, name)) = target.tls.client.clone() else {
                            return Err(ConnError::Protocol("TLS is not configured".into()));
                        };
                        let Some(tls::Conn::Plain(tcp)) = conn.stream.take() else {
                            return Err(ConnError::Protocol("TLS requested twice".into()));
                        };
                        let secured = tls::connect(config, name, tcp)
                            .await
                            .map_err(ConnError::Protocol)?;
                        conn.stream = Some(secured);
                        conn.write_packet(&response).await?;
                    }
                    HandshakeStep::Wait => {}
                    HandshakeStep::Done(session) => {
                        conn.session = session;
                        return Ok(conn);
                    }
                }
            }
        };
        crate::timeout::timeout(timeout, connecting)
            .await
            .unwrap_or(Err(ConnError::ConnectTimeout))
    }

    fn io(&mut self) -> io::Result<&mut tls::Conn> {
        self.stream
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "the socket is gone"))
    }

    /// The server's id for this connection (`KILL QUERY <thread_id>`).
    pub fn thread_id(&self) -> u32 {
        self.session.thread_id
    }

    /// Whether the connection can take another command: not broken, no
    /// write cut off, no answer still owed.
    pub fn is_clean(&self) -> bool {
        !self.broken && !self.writing && self.pending.is_none() && !self.in_transaction
    }

    /// Whether the connection can take the next command of the same call.
    fn is_ready(&self) -> bool {
        !self.broken && !self.writing && self.pending.is_none()
    }

    /// Whether an answer is still owed (a command was cut off).
    pub fn has_pending(&self) -> bool {
        self.pending.is_some() && !self.broken && !self.writing
    }

    /// Whether the socket has something to say while the connection is idle.
    /// An idle connection must be silent: readable means the server closed
    /// it (restart, `KILL CONNECTION`, `wait_timeout`) or sent an error.
    pub async fn idle_socket_is_silent(&mut self) -> bool {
        if !self.read_buf.is_empty() || !self.packet.is_empty() {
            // Bytes beyond the last answer: the session is out of step.
            return false;
        }
        let mut probe = [0u8; 1];
        // One non-blocking attempt: Pending means nothing to read.
        let Ok(stream) = self.io() else {
            return false;
        };
        smol::future::poll_once(stream.read(&mut probe))
            .await
            .is_none()
    }

    async fn read_packet(&mut self) -> Result<Vec<u8>, ConnError> {
        let result = self.read_packet_inner().await;
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    async fn read_packet_inner(&mut self) -> Result<Vec<u8>, ConnError> {
        let mut chunk = [0u8; 8192];
        loop {
            if self
                .codec
                .decode(&mut self.read_buf, &mut self.packet)
                .map_err(|e| ConnError::Protocol(format!("packet framing: {e}")))?
            {
                return Ok(std::mem::take(&mut self.packet));
            }
            let n = self.io()?.read(&mut chunk).await?;
            if n == 0 {
                return Err(ConnError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                )));
            }
            self.read_buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn write_packet(&mut self, payload: &[u8]) -> Result<(), ConnError> {
        let mut out = BytesMut::with_capacity(payload.len() + 4);
        self.codec
            .encode(&mut &payload[..], &mut out)
            .map_err(|e| ConnError::BadInput(format!("packet too large: {e}")))?;
        self.writing = true;
        let written = async {
            let stream = self.io()?;
            stream.write_all(&out).await?;
            stream.flush().await
        }
        .await;
        match written {
            Ok(()) => {
                self.writing = false;
                Ok(())
            }
            Err(e) => {
                self.broken = true;
                Err(ConnError::Io(e))
            }
        }
    }

    /// Sends one command (a fresh sequence) and, when `expect` is given,
    /// reads its whole answer.
    async fn command(
        &mut self,
        payload: &[u8],
        expect: Option<Expect>,
    ) -> Result<Outcome, ConnError> {
        if !self.is_ready() {
            return Err(ConnError::Protocol(
                "connection is not ready for a command".into(),
            ));
        }
        self.codec.reset_seq_id();
        self.write_packet(payload).await?;
        let Some(expect) = expect else {
            return Ok(Outcome::Done {
                affected_rows: 0,
                last_insert_id: 0,
            });
        };
        self.pending = Some(
            ResponseReader::new(expect, self.session.capabilities, self.max_rows)
                .with_zone(self.zone.clone()),
        );
        self.finish_pending().await
    }

    /// Reads the rest of the owed answer and returns it.
    async fn finish_pending(&mut self) -> Result<Outcome, ConnError> {
        loop {
            let Some(reader) = self.pending.as_ref() else {
                return Err(ConnError::Protocol("no answer is owed".into()));
            };
            if reader.is_done() {
                break;
            }
            let packet = self.read_packet().await?;
            let reader = self.pending.as_mut().expect("checked above");
            if let Err(e) = reader.handle_packet(&packet) {
                self.broken = true;
                return Err(e.into());
            }
        }
        let reader = self.pending.take().expect("checked above");
        if let Some(open) = reader.in_transaction() {
            self.in_transaction = open;
        }
        Ok(reader.finish()?)
    }

    /// Finishes the answer of a command that was cut off, dropping it.
    /// Afterwards the connection is clean again (or the error says why not).
    pub async fn drain(&mut self) -> Result<(), ConnError> {
        if self.broken || self.writing {
            return Err(ConnError::Protocol("connection is broken".into()));
        }
        if self.pending.is_none() {
            return Ok(());
        }
        match self.finish_pending().await {
            Ok(_) | Err(ConnError::Server { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `COM_PING`.
    pub async fn ping(&mut self) -> Result<(), ConnError> {
        self.command(&protocol::com_ping(), Some(Expect::Ok))
            .await
            .map(|_| ())
    }

    /// Says goodbye so the server does not log an aborted connection.
    pub async fn quit(mut self) {
        if self.is_ready() {
            let _ = self.command(&protocol::com_quit(), None).await;
        }
    }

    /// Runs `sql` as `COM_QUERY` (text protocol).
    /// Sets the session's time zone to the fixed offset `set_to`
    /// (`+00:00`), and writes DATETIME/TIMESTAMP values with `suffix`.
    pub async fn set_time_zone(&mut self, set_to: &str, suffix: &str) -> Result<(), ConnError> {
        // `set_to` passed `protocol::zone_offset`: a sign, digits and a colon.
        self.query_text(&format!("SET time_zone = '{set_to}'"))
            .await?;
        self.zone = Some(suffix.into());
        Ok(())
    }

    pub async fn query_text(&mut self, sql: &str) -> Result<Outcome, ConnError> {
        self.command(&protocol::com_query(sql), Some(Expect::TextResult))
            .await
    }

    /// Runs `sql`: without parameters through `COM_QUERY`; with parameters
    /// as a prepared statement (cached per connection) whose values are
    /// sent in the binary protocol, never spliced into the SQL text.
    pub async fn run(&mut self, sql: &str, params: &[Value]) -> Result<Outcome, ConnError> {
        if params.is_empty() {
            return self.query_text(sql).await;
        }
        let statement = self.prepare(sql).await?;
        if usize::from(statement.num_params) != params.len() {
            return Err(ConnError::BadInput(format!(
                "the statement has {} placeholders but {} values were given",
                statement.num_params,
                params.len()
            )));
        }
        let values: Vec<_> = params.iter().map(protocol::json_to_param).collect();
        let mut commands = protocol::com_stmt_execute(statement.statement_id, &values);
        let execute = commands.pop().expect("the execute command is always last");
        for long_data in commands {
            self.command(&long_data, None).await?;
        }
        self.command(&execute, Some(Expect::BinaryResult)).await
    }

    /// The column names `sql` returns, from preparing it (the statement
    /// does not run).
    pub async fn columns(&mut self, sql: &str) -> Result<Vec<String>, ConnError> {
        Ok(self.prepare(sql).await?.columns)
    }

    async fn prepare(&mut self, sql: &str) -> Result<PreparedStatement, ConnError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        if self.statements.len() >= STATEMENT_CACHE {
            let oldest = self.statement_order.remove(0);
            if let Some(old) = self.statements.remove(&oldest) {
                self.command(&protocol::com_stmt_close(old.statement_id), None)
                    .await?;
            }
        }
        match self
            .command(&protocol::com_stmt_prepare(sql), Some(Expect::Prepare))
            .await?
        {
            Outcome::Prepared(statement) => {
                self.statements.insert(sql.to_owned(), statement.clone());
                self.statement_order.push(sql.to_owned());
                Ok(statement)
            }
            _ => Err(ConnError::Protocol(
                "prepare answered without a statement".into(),
            )),
        }
    }
}
