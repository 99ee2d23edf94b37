//! The MySQL client protocol as pure state machines: no sockets, no clocks.
//!
//! [`Handshake`] is fed the server's packets from the greeting until the
//! authentication's final OK and answers with the packets to send.
//! [`ResponseReader`] is fed the packets that answer one command and
//! collects the result (rows already mapped to JSON, an OK, a prepared
//! statement or a server error). The connection in `conn.rs` only moves
//! bytes between these machines and the socket, so a response that was cut
//! off by a cancellation can be finished ("drained") later from the exact
//! packet where it stopped.

use base64::Engine as _;
use mysql_common::auth::plugins::{
    AuthProc, ChallengeResponsePlugin, Context as AuthContext, Response as AuthResponse,
};
use mysql_common::constants::{CapabilityFlags, ColumnFlags, ColumnType, StatusFlags};
use mysql_common::io::ParseBuf;
use mysql_common::packets::{
    AuthMoreData, AuthPlugin, AuthSwitchRequest, Column, ComStmtClose,
    ComStmtExecuteRequestBuilder, ComStmtSendLongData, CommonOkPacket, ErrPacket, HandshakePacket,
    HandshakeResponse, OkPacketDeserializer, OldEofPacket, ResultSetTerminator, SslRequest,
    StmtPacket,
};

/// The collation of the SSLRequest (the handshake response announces the
/// same for servers from 5.5.3 on).
const UTF8MB4_GENERAL_CI: u8 = 45;
use mysql_common::proto::{Binary, MySerialize, Text};
use mysql_common::row::RowDeserializer;
use mysql_common::value::{ClientSide, ServerSide, Value as SqlValue};
use serde_json::{Map, Number, Value};
use std::sync::Arc;

/// The largest packet the client announces it accepts (16 MiB).
pub(crate) const MAX_PACKET_SIZE: u32 = 16 * 1024 * 1024;

/// The `binary` character set: columns with it hold bytes, not text.
const BINARY_CHARSET: u16 = 63;

/// What went wrong while speaking the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProtoError {
    /// The server answered with an error packet. The connection is still in
    /// sync and can be reused.
    Server {
        /// The server's error number (e.g. 1064 for a syntax error).
        code: u16,
        /// The SQLSTATE, when the server sent one.
        state: Option<String>,
        /// The server's message.
        message: String,
    },
    /// The bytes did not follow the protocol; the connection must be dropped.
    Protocol(String),
}

impl ProtoError {
    fn protocol(what: impl std::fmt::Display) -> Self {
        ProtoError::Protocol(what.to_string())
    }

    fn from_err_packet(packet: &[u8], capabilities: CapabilityFlags) -> Self {
        match ParseBuf(packet).parse::<ErrPacket<'_>>(capabilities) {
            Ok(ErrPacket::Error(error)) => ProtoError::Server {
                code: error.error_code(),
                state: error.sql_state_ref().map(|s| s.as_str().into_owned()),
                message: error.message_str().into_owned(),
            },
            Ok(ErrPacket::Progress(_)) => {
                ProtoError::protocol("unexpected progress report from the server")
            }
            Err(e) => ProtoError::protocol(format!("malformed error packet: {e}")),
        }
    }
}

/// Who connects and to which database.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub user: String,
    pub password: String,
    pub database: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password.
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

/// What the handshake learned about the session.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Session {
    /// The capabilities both sides agreed on.
    pub capabilities: CapabilityFlags,
    /// The server's id for this connection, the argument of `KILL QUERY`.
    pub thread_id: u32,
}

struct AuthInputs<'a> {
    password: &'a [u8],
    scramble: &'a [u8],
    tls: bool,
}

impl AuthContext for &AuthInputs<'_> {
    fn pass(&self) -> &[u8] {
        self.password
    }
    fn is_ipc_transport(&self) -> bool {
        false
    }
    fn is_tls_transport(&self) -> bool {
        self.tls
    }
    fn scramble(&self) -> &[u8] {
        self.scramble
    }
    fn server_key_pem(&self) -> Option<&[u8]> {
        // Not pinned: caching_sha2_password's full authentication asks the
        // server for its RSA key (see docs/mysql.md for what that trusts).
        None
    }
}

enum HandshakeState {
    Greeting,
    Authenticating { plugin: AuthProc, scramble: Vec<u8> },
    Done,
}

/// The client side of the connection phase, from the server's greeting to
/// the OK that ends authentication.
pub(crate) struct Handshake {
    credentials: Credentials,
    tls_wish: TlsWish,
    /// TLS was requested (the session runs over TLS from the response on).
    tls: bool,
    state: HandshakeState,
    session: Option<Session>,
}

/// What to do after a handshake packet.
#[derive(Debug)]
pub(crate) enum HandshakeStep {
    /// Send this packet and wait for the next one.
    Send(Vec<u8>),
    /// Wait for the next packet.
    Wait,
    /// Authenticated: the connection is ready for commands.
    Done(Session),
    /// Send `ssl_request`, run the TLS handshake on the socket, then send
    /// `response` over TLS and wait for the next packet.
    StartTls {
        /// The SSLRequest packet (sequence 1).
        ssl_request: Vec<u8>,
        /// The handshake response (sequence 2).
        response: Vec<u8>,
    },
}

/// Whether the connection phase asks for TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsWish {
    /// Plaintext.
    Never,
    /// TLS when the greeting offers it.
    IfOffered,
    /// TLS, or fail when the server does not offer it.
    Required,
}

/// The capabilities Terminus asks for. Deliberately absent:
/// `CLIENT_MULTI_STATEMENTS` (a statement can never smuggle in a second one),
/// `CLIENT_LOCAL_FILES` (the server can never ask for a client file), SSL
/// and compression.
fn client_capabilities() -> CapabilityFlags {
    CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_LONG_PASSWORD
        | CapabilityFlags::CLIENT_LONG_FLAG
        | CapabilityFlags::CLIENT_TRANSACTIONS
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CapabilityFlags::CLIENT_MULTI_RESULTS
        | CapabilityFlags::CLIENT_PS_MULTI_RESULTS
        | CapabilityFlags::CLIENT_DEPRECATE_EOF
        | CapabilityFlags::CLIENT_CONNECT_WITH_DB
}

/// Refuses a greeting whose auth-plugin-data length byte is 128 or more.
///
/// The scramble is 20 bytes, so such a length is nonsense, and mysql_common
/// 0.38 computes `len as i8 - 8` from it, which overflows (a panic in debug
/// builds) for 128..=135. Found by `arbitrary_server_packets_never_panic`.
fn check_auth_data_len(packet: &[u8]) -> Result<(), ProtoError> {
    // protocol version (1), server version (NUL-terminated), then connection
    // id (4), scramble part 1 (8), filler (1), capabilities low (2),
    // collation (1), status (2), capabilities high (2): the length is next.
    let Some(version_end) = packet.iter().skip(1).position(|&b| b == 0) else {
        return Ok(()); // too short: mysql_common reports it as an error
    };
    let offset = 1 + version_end + 1 + 4 + 8 + 1 + 2 + 1 + 2 + 2;
    match packet.get(offset) {
        Some(&len) if len >= 128 => Err(ProtoError::protocol(format!(
            "bad server greeting: auth plugin data length {len}"
        ))),
        _ => Ok(()),
    }
}

impl Handshake {
    /// A handshake that will log in with `credentials`, in plaintext.
    #[cfg(test)]
    pub fn new(credentials: Credentials) -> Self {
        Handshake::with_tls(credentials, TlsWish::Never)
    }

    /// A handshake that will log in with `credentials`, asking for TLS as
    /// `tls_wish` says.
    pub fn with_tls(credentials: Credentials, tls_wish: TlsWish) -> Self {
        Handshake {
            credentials,
            tls_wish,
            tls: false,
            state: HandshakeState::Greeting,
            session: None,
        }
    }

    fn run_plugin(
        &self,
        plugin: &mut AuthProc,
        scramble: &[u8],
        challenge: &[u8],
    ) -> Result<AuthResponse, ProtoError> {
        let inputs = AuthInputs {
            password: self.credentials.password.as_bytes(),
            scramble,
            tls: self.tls,
        };
        plugin
            .run(&inputs, challenge)
            .map_err(|e| ProtoError::protocol(format!("authentication failed: {e}")))
    }

    /// Feeds the next packet from the server.
    pub fn handle_packet(&mut self, packet: &[u8]) -> Result<HandshakeStep, ProtoError> {
        match std::mem::replace(&mut self.state, HandshakeState::Done) {
            HandshakeState::Greeting => self.greeting(packet),
            HandshakeState::Authenticating {
                mut plugin,
                scramble,
            } => {
                let session = self
                    .session
                    .ok_or_else(|| ProtoError::protocol("authentication before greeting"))?;
                match packet.first() {
                    Some(0x00) => Ok(HandshakeStep::Done(session)),
                    Some(0xFF) => Err(ProtoError::from_err_packet(packet, session.capabilities)),
                    Some(0xFE) => {
                        let switch = ParseBuf(packet)
                            .parse::<AuthSwitchRequest<'_>>(())
                            .map_err(|e| ProtoError::protocol(format!("bad auth switch: {e}")))?;
                        let mut scramble = switch.plugin_data().to_vec();
                        if scramble.last() == Some(&0) {
                            scramble.pop();
                        }
                        let mut plugin = init_plugin(&switch.auth_plugin())?;
                        let response = self.run_plugin(&mut plugin, &scramble, &scramble)?;
                        let data = response.data().unwrap_or_default().to_vec();
                        self.state = HandshakeState::Authenticating { plugin, scramble };
                        Ok(HandshakeStep::Send(data))
                    }
                    Some(0x01) => {
                        let more = ParseBuf(packet)
                            .parse::<AuthMoreData<'_>>(())
                            .map_err(|e| ProtoError::protocol(format!("bad auth data: {e}")))?;
                        let response = self.run_plugin(&mut plugin, &scramble, more.data())?;
                        let step = match response.data() {
                            Some(data) => HandshakeStep::Send(data.to_vec()),
                            None => HandshakeStep::Wait,
                        };
                        self.state = HandshakeState::Authenticating { plugin, scramble };
                        Ok(step)
                    }
                    _ => Err(ProtoError::protocol(
                        "unexpected packet during authentication",
                    )),
                }
            }
            HandshakeState::Done => Err(ProtoError::protocol("packet after the handshake ended")),
        }
    }

    fn greeting(&mut self, packet: &[u8]) -> Result<HandshakeStep, ProtoError> {
        if packet.first() == Some(&0xFF) {
            // e.g. "Too many connections" or "Host is blocked".
            return Err(ProtoError::from_err_packet(
                packet,
                CapabilityFlags::CLIENT_PROTOCOL_41,
            ));
        }
        check_auth_data_len(packet)?;
        let greeting = ParseBuf(packet)
            .parse::<HandshakePacket<'_>>(())
            .map_err(|e| ProtoError::protocol(format!("bad server greeting: {e}")))?;
        if greeting.protocol_version() != 10 {
            return Err(ProtoError::protocol(format!(
                "unsupported protocol version {}",
                greeting.protocol_version()
            )));
        }
        let server = greeting.capabilities();
        for required in [
            CapabilityFlags::CLIENT_PROTOCOL_41,
            CapabilityFlags::CLIENT_SECURE_CONNECTION,
        ] {
            if !server.contains(required) {
                return Err(ProtoError::protocol(format!(
                    "the server lacks the required capability {required:?}"
                )));
            }
        }
        let mut capabilities = client_capabilities() & server;
        let offered = server.contains(CapabilityFlags::CLIENT_SSL);
        self.tls = match self.tls_wish {
            TlsWish::Never => false,
            TlsWish::IfOffered => offered,
            TlsWish::Required if offered => true,
            TlsWish::Required => {
                return Err(ProtoError::protocol(
                    "the server does not offer TLS (ssl_mode requires it; enable TLS on the server or set ssl_mode = \"preferred\")",
                ))
            }
        };
        if self.tls {
            capabilities |= CapabilityFlags::CLIENT_SSL;
        }
        let scramble = greeting.nonce();
        let plugin_kind = match greeting.auth_plugin() {
            // An unknown default plugin: start with native password; the
            // server answers with an auth switch if the account needs another.
            Some(AuthPlugin::Other(_)) | None => AuthPlugin::MysqlNativePassword,
            Some(known) => known.into_owned(),
        };
        let mut plugin = init_plugin(&plugin_kind)?;
        let response = self.run_plugin(&mut plugin, &scramble, &scramble)?;
        let server_version = greeting.server_version_parsed().unwrap_or((5, 5, 3));
        let handshake_response = HandshakeResponse::new(
            Some(response.data().unwrap_or_default().to_vec()),
            server_version,
            Some(self.credentials.user.as_bytes().to_vec()),
            self.credentials
                .database
                .as_ref()
                .map(|db| db.as_bytes().to_vec()),
            Some(plugin_kind),
            capabilities,
            None,
            MAX_PACKET_SIZE,
        );
        let mut out = Vec::new();
        handshake_response.serialize(&mut out);
        self.session = Some(Session {
            capabilities: handshake_response.capabilities(),
            thread_id: greeting.connection_id(),
        });
        self.state = HandshakeState::Authenticating { plugin, scramble };
        if self.tls {
            let mut ssl_request = Vec::new();
            SslRequest::new(
                handshake_response.capabilities(),
                MAX_PACKET_SIZE,
                UTF8MB4_GENERAL_CI,
            )
            .serialize(&mut ssl_request);
            return Ok(HandshakeStep::StartTls {
                ssl_request,
                response: out,
            });
        }
        Ok(HandshakeStep::Send(out))
    }
}

fn init_plugin(plugin: &AuthPlugin<'_>) -> Result<AuthProc, ProtoError> {
    AuthProc::init(plugin).map_err(|e| ProtoError::protocol(e.to_string()))
}

/// `COM_QUERY` with `sql`.
pub(crate) fn com_query(sql: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + sql.len());
    out.push(0x03);
    out.extend_from_slice(sql.as_bytes());
    out
}

/// `COM_STMT_PREPARE` of `sql`.
pub(crate) fn com_stmt_prepare(sql: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + sql.len());
    out.push(0x16);
    out.extend_from_slice(sql.as_bytes());
    out
}

/// `COM_PING`.
pub(crate) fn com_ping() -> Vec<u8> {
    vec![0x0E]
}

/// `COM_QUIT`.
pub(crate) fn com_quit() -> Vec<u8> {
    vec![0x01]
}

/// `COM_STMT_CLOSE` (the server sends no answer).
pub(crate) fn com_stmt_close(statement_id: u32) -> Vec<u8> {
    let mut out = Vec::new();
    ComStmtClose::new(statement_id).serialize(&mut out);
    out
}

/// The commands that execute a prepared statement with `params`: zero or
/// more `COM_STMT_SEND_LONG_DATA` (for values too large for one packet,
/// which the server does not answer) and then the `COM_STMT_EXECUTE`.
pub(crate) fn com_stmt_execute(statement_id: u32, params: &[SqlValue]) -> Vec<Vec<u8>> {
    let (request, as_long_data) = ComStmtExecuteRequestBuilder::new(statement_id).build(params);
    let mut commands = Vec::new();
    if as_long_data {
        for (index, param) in params.iter().enumerate() {
            if let SqlValue::Bytes(bytes) = param {
                // Chunks well below the packet limit.
                for chunk in bytes.chunks(MAX_PACKET_SIZE as usize / 2) {
                    let mut out = Vec::new();
                    ComStmtSendLongData::new(statement_id, index as u16, chunk).serialize(&mut out);
                    commands.push(out);
                }
            }
        }
    }
    let mut out = Vec::new();
    request.serialize(&mut out);
    commands.push(out);
    commands
}

/// A JSON value as a statement parameter (the rule is in docs/mysql.md).
pub(crate) fn json_to_param(value: &Value) -> SqlValue {
    match value {
        Value::Null => SqlValue::NULL,
        Value::Bool(b) => SqlValue::Int(i64::from(*b)),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                SqlValue::Int(i)
            } else if let Some(u) = n.as_u64() {
                SqlValue::UInt(u)
            } else {
                SqlValue::Double(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::String(s) => SqlValue::Bytes(s.as_bytes().to_vec()),
        Value::Array(_) | Value::Object(_) => SqlValue::Bytes(value.to_string().into_bytes()),
    }
}

/// What a command is expected to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// A result set in the text protocol (`COM_QUERY`) or an OK.
    TextResult,
    /// A result set in the binary protocol (`COM_STMT_EXECUTE`) or an OK.
    BinaryResult,
    /// A `COM_STMT_PREPARE` answer.
    Prepare,
    /// A plain OK (`COM_PING`).
    Ok,
}

/// The complete answer to one command.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// The rows of the first result set, each a JSON object.
    Rows(Vec<Value>),
    /// The statement changed rows (or did nothing that returns rows).
    Done {
        affected_rows: u64,
        last_insert_id: u64,
    },
    /// A prepared statement.
    Prepared(PreparedStatement),
}

/// A statement prepared on one connection.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PreparedStatement {
    pub statement_id: u32,
    pub num_params: u16,
    /// The names of the columns the statement returns (its aliases).
    pub columns: Vec<String>,
}

#[derive(Debug)]
enum ReadState {
    /// Waiting for the first packet of a (next) result.
    Start,
    /// Reading `remaining` column definitions.
    Columns {
        remaining: u64,
    },
    /// Waiting for the EOF after the column definitions (old protocol).
    ColumnsEof,
    /// Reading rows until the terminator.
    Rows,
    /// Reading a prepare answer's parameter definitions, then its columns.
    PrepareParams {
        remaining: u64,
        columns: u64,
    },
    PrepareParamsEof {
        columns: u64,
    },
    PrepareColumns {
        remaining: u64,
    },
    PrepareColumnsEof,
    Done,
}

/// Reads the answer to one command, packet by packet.
#[derive(Debug)]
pub(crate) struct ResponseReader {
    expect: Expect,
    capabilities: CapabilityFlags,
    max_rows: usize,
    state: ReadState,
    columns: Vec<Column>,
    column_arc: Option<Arc<[Column]>>,
    /// Only the first result set's rows are kept; later ones (a CALL) are read
    /// and dropped so the connection stays in sync.
    first_result_done: bool,
    rows: Vec<Value>,
    saw_rows: bool,
    too_many_rows: bool,
    affected_rows: u64,
    last_insert_id: u64,
    prepared: Option<PreparedStatement>,
    error: Option<ProtoError>,
    /// The server status of the last OK or EOF packet.
    status: Option<StatusFlags>,
    /// The offset of the session's `time_zone` (`Z`, `+05:30`) when the
    /// database configures one: DATETIME and TIMESTAMP values are then
    /// written as ISO 8601 with it.
    zone: Option<Arc<str>>,
}

impl ResponseReader {
    /// A reader for the answer to a command that expects `expect`, keeping
    /// at most `max_rows` rows.
    pub fn new(expect: Expect, capabilities: CapabilityFlags, max_rows: usize) -> Self {
        ResponseReader {
            expect,
            capabilities,
            max_rows,
            zone: None,
            state: ReadState::Start,
            columns: Vec::new(),
            column_arc: None,
            first_result_done: false,
            rows: Vec::new(),
            saw_rows: false,
            too_many_rows: false,
            affected_rows: 0,
            last_insert_id: 0,
            prepared: None,
            error: None,
            status: None,
        }
    }

    fn deprecate_eof(&self) -> bool {
        self.capabilities
            .contains(CapabilityFlags::CLIENT_DEPRECATE_EOF)
    }

    /// Whether the server reported an open transaction at the end of the
    /// answer (`None` when the answer carried no status, e.g. an error).
    pub fn in_transaction(&self) -> Option<bool> {
        self.status
            .map(|s| s.contains(StatusFlags::SERVER_STATUS_IN_TRANS))
    }

    /// Whether the whole answer has been read.
    pub fn is_done(&self) -> bool {
        matches!(self.state, ReadState::Done)
    }

    /// Feeds the next packet; returns whether the answer is complete.
    /// An `Err` means the connection is out of sync and must be dropped.
    pub fn handle_packet(&mut self, packet: &[u8]) -> Result<bool, ProtoError> {
        let first = *packet
            .first()
            .ok_or_else(|| ProtoError::protocol("empty packet"))?;
        match std::mem::replace(&mut self.state, ReadState::Done) {
            ReadState::Start => match (first, self.expect) {
                (0xFF, _) => {
                    self.error = Some(ProtoError::from_err_packet(packet, self.capabilities));
                }
                (0x00, Expect::Prepare) => {
                    let stmt = ParseBuf(packet)
                        .parse::<StmtPacket>(())
                        .map_err(|e| ProtoError::protocol(format!("bad prepare answer: {e}")))?;
                    self.prepared = Some(PreparedStatement {
                        statement_id: stmt.statement_id(),
                        num_params: stmt.num_params(),
                        columns: Vec::new(),
                    });
                    let columns = u64::from(stmt.num_columns());
                    self.state = match stmt.num_params() {
                        0 => self.after_prepare_params(columns),
                        n => ReadState::PrepareParams {
                            remaining: u64::from(n),
                            columns,
                        },
                    };
                }
                (0x00, _) => {
                    let ok = ParseBuf(packet)
                        .parse::<OkPacketDeserializer<'_, CommonOkPacket>>(self.capabilities)
                        .map_err(|e| ProtoError::protocol(format!("bad OK packet: {e}")))?
                        .into_inner();
                    if !self.first_result_done {
                        self.affected_rows = ok.affected_rows();
                        self.last_insert_id = ok.last_insert_id().unwrap_or(0);
                        self.first_result_done = true;
                    }
                    self.status = Some(ok.status_flags());
                    if ok
                        .status_flags()
                        .contains(StatusFlags::SERVER_MORE_RESULTS_EXISTS)
                    {
                        self.state = ReadState::Start;
                    }
                }
                (0xFB, _) => {
                    return Err(ProtoError::protocol(
                        "the server asked for a local file (LOAD DATA LOCAL is not supported)",
                    ))
                }
                (_, Expect::TextResult | Expect::BinaryResult) => {
                    let count = ParseBuf(packet).checked_eat_lenenc_int().ok_or_else(|| {
                        ProtoError::protocol("bad column count in result set header")
                    })?;
                    self.columns.clear();
                    self.state = ReadState::Columns { remaining: count };
                }
                _ => return Err(ProtoError::protocol("unexpected answer to command")),
            },
            ReadState::Columns { remaining } => {
                self.columns.push(parse_column(packet)?);
                self.state = if remaining > 1 {
                    ReadState::Columns {
                        remaining: remaining - 1,
                    }
                } else {
                    self.column_arc = Some(self.columns.drain(..).collect());
                    if self.deprecate_eof() {
                        ReadState::Rows
                    } else {
                        ReadState::ColumnsEof
                    }
                };
            }
            ReadState::ColumnsEof => {
                expect_eof(packet)?;
                self.state = ReadState::Rows;
            }
            ReadState::Rows => {
                if first == 0xFF {
                    // e.g. the query was killed while rows were streaming.
                    self.error = Some(ProtoError::from_err_packet(packet, self.capabilities));
                } else if first == 0xFE && packet.len() < 0xFF_FFFF {
                    let status = if self.deprecate_eof() {
                        ParseBuf(packet)
                            .parse::<OkPacketDeserializer<'_, ResultSetTerminator>>(
                                self.capabilities,
                            )
                            .map_err(|e| ProtoError::protocol(format!("bad terminator: {e}")))?
                            .into_inner()
                            .status_flags()
                    } else {
                        ParseBuf(packet)
                            .parse::<OkPacketDeserializer<'_, OldEofPacket>>(self.capabilities)
                            .map_err(|e| ProtoError::protocol(format!("bad EOF packet: {e}")))?
                            .into_inner()
                            .status_flags()
                    };
                    self.first_result_done = true;
                    self.status = Some(status);
                    if status.contains(StatusFlags::SERVER_MORE_RESULTS_EXISTS) {
                        self.state = ReadState::Start;
                    }
                } else {
                    if !self.first_result_done {
                        self.saw_rows = true;
                        if self.rows.len() >= self.max_rows {
                            self.too_many_rows = true;
                        } else {
                            let row = self.parse_row(packet)?;
                            self.rows.push(row);
                        }
                    }
                    self.state = ReadState::Rows;
                }
            }
            ReadState::PrepareParams { remaining, columns } => {
                parse_column(packet)?;
                self.state = if remaining > 1 {
                    ReadState::PrepareParams {
                        remaining: remaining - 1,
                        columns,
                    }
                } else if self.deprecate_eof() {
                    self.after_prepare_params(columns)
                } else {
                    ReadState::PrepareParamsEof { columns }
                };
            }
            ReadState::PrepareParamsEof { columns } => {
                expect_eof(packet)?;
                self.state = self.after_prepare_params(columns);
            }
            ReadState::PrepareColumns { remaining } => {
                let column = parse_column(packet)?;
                if let Some(prepared) = self.prepared.as_mut() {
                    prepared.columns.push(column.name_str().into_owned());
                }
                self.state = if remaining > 1 {
                    ReadState::PrepareColumns {
                        remaining: remaining - 1,
                    }
                } else if self.deprecate_eof() {
                    ReadState::Done
                } else {
                    ReadState::PrepareColumnsEof
                };
            }
            ReadState::PrepareColumnsEof => {
                expect_eof(packet)?;
            }
            ReadState::Done => return Err(ProtoError::protocol("packet after the answer ended")),
        }
        Ok(self.is_done())
    }

    fn after_prepare_params(&self, columns: u64) -> ReadState {
        if columns == 0 {
            ReadState::Done
        } else {
            ReadState::PrepareColumns { remaining: columns }
        }
    }

    /// DATETIME and TIMESTAMP values as ISO 8601 with offset `zone`.
    pub fn with_zone(mut self, zone: Option<Arc<str>>) -> Self {
        self.zone = zone;
        self
    }

    fn parse_row(&self, packet: &[u8]) -> Result<Value, ProtoError> {
        let columns = self
            .column_arc
            .clone()
            .ok_or_else(|| ProtoError::protocol("row before columns"))?;
        let row = if self.expect == Expect::BinaryResult {
            ParseBuf(packet)
                .parse::<RowDeserializer<ServerSide, Binary>>(columns.clone())
                .map_err(|e| ProtoError::protocol(format!("bad binary row: {e}")))?
                .into_inner()
        } else {
            ParseBuf(packet)
                .parse::<RowDeserializer<ClientSide, Text>>(columns.clone())
                .map_err(|e| ProtoError::protocol(format!("bad text row: {e}")))?
                .into_inner()
        };
        let mut object = Map::new();
        for (column, value) in columns.iter().zip(row.unwrap()) {
            let mut json = value_to_json(column, value);
            if let (Some(zone), Value::String(text)) = (&self.zone, &mut json) {
                if is_date_time(column) && text.len() >= 19 && text.is_char_boundary(10) {
                    text.replace_range(10..11, "T");
                    text.push_str(zone);
                }
            }
            object.insert(column.name_str().into_owned(), json);
        }
        Ok(Value::Object(object))
    }

    /// The result, once [`is_done`](Self::is_done).
    pub fn finish(self) -> Result<Outcome, ProtoError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        if !self.is_done() {
            return Err(ProtoError::protocol("the answer is incomplete"));
        }
        if self.too_many_rows {
            return Err(ProtoError::Server {
                code: 0,
                state: None,
                message: format!("the result has more than {} rows (max_rows)", self.max_rows),
            });
        }
        if let Some(prepared) = self.prepared {
            return Ok(Outcome::Prepared(prepared));
        }
        if self.saw_rows || self.column_arc.is_some() {
            return Ok(Outcome::Rows(self.rows));
        }
        Ok(Outcome::Done {
            affected_rows: self.affected_rows,
            last_insert_id: self.last_insert_id,
        })
    }
}

fn parse_column(packet: &[u8]) -> Result<Column, ProtoError> {
    ParseBuf(packet)
        .parse::<Column>(())
        .map_err(|e| ProtoError::protocol(format!("bad column definition: {e}")))
}

fn expect_eof(packet: &[u8]) -> Result<(), ProtoError> {
    if packet.first() == Some(&0xFE) && packet.len() < 9 {
        Ok(())
    } else {
        Err(ProtoError::protocol("expected an EOF packet"))
    }
}

/// Maps one column value to JSON by the rule in docs/mysql.md. Text-protocol
/// values arrive as bytes and are read by the column's type; binary-protocol
/// values arrive typed. Both paths give the same JSON for the same data.
pub(crate) fn value_to_json(column: &Column, value: SqlValue) -> Value {
    use ColumnType::*;
    let unsigned = column.flags().contains(ColumnFlags::UNSIGNED_FLAG);
    let decimals = column.decimals();
    match value {
        SqlValue::NULL => Value::Null,
        SqlValue::Int(i) => Value::from(i),
        SqlValue::UInt(u) => Value::from(u),
        // An f32 widened to f64 shows float noise (0.1 -> 0.10000000149...);
        // its shortest decimal form is what the text protocol sends.
        SqlValue::Float(f) => float_json(f.to_string().parse::<f64>().unwrap_or(f64::from(f))),
        SqlValue::Double(d) => float_json(d),
        SqlValue::Date(year, month, day, hour, minute, second, micros) => {
            let date = format!("{year:04}-{month:02}-{day:02}");
            if column.column_type() == MYSQL_TYPE_DATE || column.column_type() == MYSQL_TYPE_NEWDATE
            {
                Value::String(date)
            } else {
                Value::String(format!(
                    "{date} {hour:02}:{minute:02}:{second:02}{}",
                    fraction(micros, decimals)
                ))
            }
        }
        SqlValue::Time(negative, days, hours, minutes, seconds, micros) => {
            let hours = u64::from(days) * 24 + u64::from(hours);
            Value::String(format!(
                "{}{hours:02}:{minutes:02}:{seconds:02}{}",
                if negative { "-" } else { "" },
                fraction(micros, decimals)
            ))
        }
        SqlValue::Bytes(bytes) => match column.column_type() {
            MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_INT24 | MYSQL_TYPE_LONG
            | MYSQL_TYPE_LONGLONG | MYSQL_TYPE_YEAR => {
                let text = String::from_utf8_lossy(&bytes);
                let number = if unsigned {
                    text.parse::<u64>().ok().map(Value::from)
                } else {
                    text.parse::<i64>().ok().map(Value::from)
                };
                number.unwrap_or_else(|| Value::String(text.into_owned()))
            }
            MYSQL_TYPE_FLOAT | MYSQL_TYPE_DOUBLE => {
                let text = String::from_utf8_lossy(&bytes);
                match text.parse::<f64>() {
                    Ok(f) => float_json(f),
                    Err(_) => Value::String(text.into_owned()),
                }
            }
            MYSQL_TYPE_BIT => {
                let number = bytes
                    .iter()
                    .take(8)
                    .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
                Value::from(number)
            }
            MYSQL_TYPE_JSON => match serde_json::from_slice::<Value>(&bytes) {
                Ok(parsed) => parsed,
                Err(_) => Value::String(String::from_utf8_lossy(&bytes).into_owned()),
            },
            // DECIMAL stays a string so no digit is lost; dates and times
            // arrive from the text protocol already in the documented form.
            MYSQL_TYPE_DECIMAL
            | MYSQL_TYPE_NEWDECIMAL
            | MYSQL_TYPE_DATE
            | MYSQL_TYPE_NEWDATE
            | MYSQL_TYPE_DATETIME
            | MYSQL_TYPE_DATETIME2
            | MYSQL_TYPE_TIMESTAMP
            | MYSQL_TYPE_TIMESTAMP2
            | MYSQL_TYPE_TIME
            | MYSQL_TYPE_TIME2 => Value::String(String::from_utf8_lossy(&bytes).into_owned()),
            _ if column.character_set() == BINARY_CHARSET => {
                Value::String(base64::engine::general_purpose::STANDARD.encode(&bytes))
            }
            _ => Value::String(String::from_utf8_lossy(&bytes).into_owned()),
        },
    }
}

fn is_date_time(column: &Column) -> bool {
    use ColumnType::*;
    matches!(
        column.column_type(),
        MYSQL_TYPE_DATETIME | MYSQL_TYPE_DATETIME2 | MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIMESTAMP2
    )
}

/// The ISO 8601 offset of a `time_zone` setting (`+00:00` -> `Z`), or why
/// it is not one: only fixed offsets `+hh:mm` / `-hh:mm` and `UTC`, so
/// every value carries a true offset.
pub(crate) fn zone_offset(time_zone: &str) -> Result<(String, String), String> {
    let tz = time_zone.trim();
    if tz.eq_ignore_ascii_case("utc") || tz == "+00:00" || tz == "-00:00" {
        return Ok(("+00:00".into(), "Z".into()));
    }
    let b = tz.as_bytes();
    let ok = b.len() == 6
        && matches!(b[0], b'+' | b'-')
        && b[1..3].iter().all(u8::is_ascii_digit)
        && b[3] == b':'
        && b[4..6].iter().all(u8::is_ascii_digit)
        && tz[1..3].parse::<u8>().is_ok_and(|h| h <= 13)
        && tz[4..6].parse::<u8>().is_ok_and(|m| m < 60);
    if ok {
        Ok((tz.to_string(), tz.to_string()))
    } else {
        Err(format!(
            "time_zone `{time_zone}` must be UTC or a fixed offset such as +02:00"
        ))
    }
}

fn float_json(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// `.ffffff` cut to the column's declared fractional digits (none for 0).
fn fraction(micros: u32, decimals: u8) -> String {
    let digits = usize::from(decimals.min(6));
    if digits == 0 {
        return String::new();
    }
    let all = format!("{micros:06}");
    format!(".{}", &all[..digits])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_values_map_like_text_values() {
        let datetime = Column::new(ColumnType::MYSQL_TYPE_DATETIME).with_decimals(3);
        assert_eq!(
            value_to_json(&datetime, SqlValue::Date(2024, 2, 29, 13, 5, 9, 120_000)),
            Value::from("2024-02-29 13:05:09.120")
        );
        let time = Column::new(ColumnType::MYSQL_TYPE_TIME);
        assert_eq!(
            value_to_json(&time, SqlValue::Time(true, 1, 2, 3, 4, 0)),
            Value::from("-26:03:04")
        );
        let float = Column::new(ColumnType::MYSQL_TYPE_FLOAT);
        assert_eq!(
            value_to_json(&float, SqlValue::Float(0.1)),
            serde_json::json!(0.1)
        );
        let unsigned =
            Column::new(ColumnType::MYSQL_TYPE_LONGLONG).with_flags(ColumnFlags::UNSIGNED_FLAG);
        assert_eq!(
            value_to_json(&unsigned, SqlValue::Bytes(b"18446744073709551615".to_vec())),
            Value::from(u64::MAX)
        );
        let blob = Column::new(ColumnType::MYSQL_TYPE_BLOB).with_character_set(63);
        assert_eq!(
            value_to_json(&blob, SqlValue::Bytes(vec![0, 255])),
            Value::from("AP8=")
        );
    }

    #[test]
    fn json_params_keep_their_kind() {
        assert_eq!(json_to_param(&Value::Null), SqlValue::NULL);
        assert_eq!(json_to_param(&serde_json::json!(true)), SqlValue::Int(1));
        assert_eq!(
            json_to_param(&Value::from(u64::MAX)),
            SqlValue::UInt(u64::MAX)
        );
        assert_eq!(
            json_to_param(&serde_json::json!({"a": 1})),
            SqlValue::Bytes(br#"{"a":1}"#.to_vec())
        );
    }

    /// A public key generated for this test only (its private half was thrown
    /// away after checking once that the server side can decrypt).
    const TEST_SERVER_KEY: &str = "-----BEGIN PUBLIC KEY-----\n\
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA5HUXnfCnhGGwSRWPY7+h\n\
rSbwhg7FVlG03xRY2soeLXaLQ5yTy0iX3uD/HxQnT7vIWr7DJ6Qd819dSFpWPEGy\n\
+YFSmT3/Oh1AqQsw3PugbXFh7RNr6tTIS/xvIHVtKd18frn76o+FTUjpRHS6LCSt\n\
hl6dSTDTfPxeelHYVSTEznnT1qTjaHLma/vHl9F3f4vESe6nz5E+3XArzg6Xz8Zc\n\
b2dfkniwq3ENwqeBzQmqeP733KeB9IIk0zw+6rVfyA7oj5L6UjSPdmRnVMK5WSPP\n\
zR6DWPM6xend0yfF+vsdW5bs4qlDqZNKnz0iJ/ZCW2c/dYj9N+CFNfXS9LWDZAzu\n\
7QIDAQAB\n\
-----END PUBLIC KEY-----\n";

    fn greeting(plugin: &str) -> Vec<u8> {
        let scramble_2 = b"0123456789AB\0".to_vec();
        let packet = HandshakePacket::new(
            10,
            &b"8.0.36"[..],
            77,
            *b"abcdefgh",
            Some(scramble_2),
            client_capabilities() | CapabilityFlags::CLIENT_SSL,
            45,
            StatusFlags::empty(),
            Some(plugin.as_bytes().to_vec()),
        );
        let mut out = Vec::new();
        packet.serialize(&mut out);
        out
    }

    fn login(password: &str) -> Handshake {
        Handshake::new(Credentials {
            user: "app".into(),
            password: password.into(),
            database: Some("shop".into()),
        })
    }

    fn sent(step: HandshakeStep) -> Vec<u8> {
        match step {
            HandshakeStep::Send(data) => data,
            other => panic!("expected a packet to send, got {other:?}"),
        }
    }

    #[test]
    fn caching_sha2_full_authentication_asks_for_the_server_key() {
        let mut handshake = login("secret");
        let response = sent(
            handshake
                .handle_packet(&greeting("caching_sha2_password"))
                .unwrap(),
        );
        let parsed = ParseBuf(&response)
            .parse::<HandshakeResponse<'_>>(())
            .unwrap();
        assert_eq!(parsed.user(), b"app");
        assert_eq!(parsed.db_name(), Some(&b"shop"[..]));
        assert_eq!(parsed.scramble_buf().len(), 32, "sha256 scramble");
        assert!(!parsed
            .capabilities()
            .contains(CapabilityFlags::CLIENT_MULTI_STATEMENTS));
        assert!(!parsed.capabilities().contains(CapabilityFlags::CLIENT_SSL));
        // Not cached on the server: perform full authentication.
        let request = sent(handshake.handle_packet(&[0x01, 0x04]).unwrap());
        assert_eq!(request, vec![0x02], "request the public key");
        let mut key = vec![0x01];
        key.extend_from_slice(TEST_SERVER_KEY.as_bytes());
        let encrypted = sent(handshake.handle_packet(&key).unwrap());
        assert_eq!(encrypted.len(), 256, "RSA-2048 ciphertext");
        match handshake
            .handle_packet(&[0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00])
            .unwrap()
        {
            HandshakeStep::Done(session) => assert_eq!(session.thread_id, 77),
            other => panic!("expected the end of the handshake, got {other:?}"),
        }
    }

    #[test]
    fn caching_sha2_fast_path_and_auth_switch_to_native_password() {
        let mut handshake = login("secret");
        sent(
            handshake
                .handle_packet(&greeting("caching_sha2_password"))
                .unwrap(),
        );
        // Cached on the server: fast authentication success, then OK.
        assert!(matches!(
            handshake.handle_packet(&[0x01, 0x03]).unwrap(),
            HandshakeStep::Wait
        ));
        assert!(matches!(
            handshake
                .handle_packet(&[0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00])
                .unwrap(),
            HandshakeStep::Done(_)
        ));

        let mut handshake = login("secret");
        sent(
            handshake
                .handle_packet(&greeting("caching_sha2_password"))
                .unwrap(),
        );
        let mut switch = vec![0xFE];
        switch.extend_from_slice(b"mysql_native_password\0");
        switch.extend_from_slice(b"ABCDEFGHIJKLMNOPQRST\0");
        let answer = sent(handshake.handle_packet(&switch).unwrap());
        assert_eq!(answer.len(), 20, "native password scramble");
        let denied = handshake.handle_packet(&[
            0xFF, 0x15, 0x04, b'#', b'2', b'8', b'0', b'0', b'0', b'n', b'o',
        ]);
        assert_eq!(
            denied.unwrap_err(),
            ProtoError::Server {
                code: 1045,
                state: Some("28000".into()),
                message: "no".into()
            }
        );
    }

    /// Regression: a greeting with an auth-data length of 128..=135 made
    /// mysql_common overflow an i8 (found by the property test below).
    #[test]
    fn greeting_with_huge_auth_data_len_is_an_error_not_a_panic() {
        for len in [128u8, 130, 135, 255] {
            let mut packet = vec![10];
            packet.extend_from_slice(b"10.11.0\0");
            packet.extend_from_slice(&[0; 4 + 8 + 1]);
            packet.extend_from_slice(&[0xff, 0xff, 8, 2, 0, 0xff, 0xff, len]);
            packet.extend_from_slice(&[0; 10 + 13]);
            packet.extend_from_slice(b"mysql_native_password\0");
            let err = login("pw").handle_packet(&packet).unwrap_err();
            assert!(
                matches!(&err, ProtoError::Protocol(m) if m.contains("auth plugin data length")),
                "{err:?}"
            );
        }
    }

    proptest::proptest! {
        /// Whatever a (broken or hostile) server sends, the machines answer
        /// with a value or an error, never a panic.
        #[test]
        fn arbitrary_server_packets_never_panic(
            packets in proptest::collection::vec(
                proptest::collection::vec(proptest::num::u8::ANY, 0..64), 1..8),
            expect in 0usize..4,
        ) {
            let mut handshake = login("pw");
            for packet in &packets {
                if handshake.handle_packet(packet).is_err() {
                    break;
                }
            }
            let expect = [Expect::TextResult, Expect::BinaryResult, Expect::Prepare, Expect::Ok][expect];
            let mut reader = ResponseReader::new(expect, client_capabilities(), 3);
            for packet in &packets {
                match reader.handle_packet(packet) {
                    Ok(true) | Err(_) => break,
                    Ok(false) => {}
                }
            }
            let _ = reader.finish();
        }

        /// A result set whose header, columns and rows are well-formed is
        /// read whole, with binary rows of any values.
        #[test]
        fn binary_rows_with_nulls_parse(values in proptest::collection::vec(proptest::option::of(proptest::num::i64::ANY), 1..20)) {
            let capabilities = client_capabilities();
            let mut reader = ResponseReader::new(Expect::BinaryResult, capabilities, 10);
            reader.handle_packet(&[values.len() as u8]).unwrap();
            for i in 0..values.len() {
                let column = Column::new(ColumnType::MYSQL_TYPE_LONGLONG).with_name(format!("c{i}").as_bytes());
                let mut packet = Vec::new();
                column.serialize(&mut packet);
                reader.handle_packet(&packet).unwrap();
            }
            // A binary row: 0x00, the null bitmap (offset 2), the values.
            let mut row = vec![0x00];
            let mut bitmap = vec![0u8; (values.len() + 7 + 2) / 8];
            for (i, v) in values.iter().enumerate() {
                if v.is_none() {
                    bitmap[(i + 2) / 8] |= 1 << ((i + 2) % 8);
                }
            }
            row.extend_from_slice(&bitmap);
            for v in values.iter().flatten() {
                row.extend_from_slice(&v.to_le_bytes());
            }
            reader.handle_packet(&row).unwrap();
            let done = reader.handle_packet(&[0xFE, 0, 0, 0x02, 0, 0, 0]).unwrap();
            proptest::prop_assert!(done);
            let expected: Map<String, Value> = values
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("c{i}"), v.map_or(Value::Null, Value::from)))
                .collect();
            proptest::prop_assert_eq!(reader.finish().unwrap(), Outcome::Rows(vec![Value::Object(expected)]));
        }
    }
}
