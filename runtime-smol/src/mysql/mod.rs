//! The MySQL / MariaDB upstream: a small async client on smol built on
//! `mysql_common`, and a bounded, cancellable pool per configured database.
//!
//! * [`MysqlPool::query`] runs a statement that returns rows and answers a
//!   JSON array of row objects; [`MysqlPool::execute`] runs one that changes
//!   rows and answers `{"affectedRows": n, "lastInsertId": n}`.
//! * Parameters are bound as prepared-statement values, never spliced into
//!   SQL text. Values map to JSON by the rule in `docs/mysql.md`.
//! * Every wait is bounded by [`MysqlDbConfig`]; dropping a query's future
//!   kills the query on the server (`KILL QUERY` from another connection).

mod conn;
mod errors;
mod live;
mod pool;
mod protocol;

pub use live::LiveRows;
pub use pool::{write_prometheus, DurationHistogram, MysqlPool, PoolStats};

use protocol::Credentials;
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

/// One configured database (`[mysql.<name>]` in the gateway's config).
/// Durations are written as `"300ms"`, `"5s"`, `"2m"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlDbConfig {
    /// `mysql://user[:password]@host[:port]/database`; user, password and
    /// database may be percent-encoded. Port defaults to 3306.
    pub url: String,
    /// The most connections the pool opens (default 10).
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// How long a call waits for a free connection before it fails with
    /// `UPSTREAM_BUSY` (default 2s).
    #[serde(default = "defaults::acquire_timeout", with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// Idle connections older than this are closed (default 5m).
    #[serde(default = "defaults::idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// The longest one statement may run; then it is killed and the call
    /// fails with `UPSTREAM_TIMEOUT` (default 10s).
    #[serde(default = "defaults::statement_timeout", with = "humantime_serde")]
    pub statement_timeout: Duration,
    /// Bound on TCP connect plus login (default 5s).
    #[serde(default = "defaults::connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// A connection idle for longer than this is pinged (`COM_PING`) before
    /// it is reused (default 30s).
    #[serde(default = "defaults::health_check_interval", with = "humantime_serde")]
    pub health_check_interval: Duration,
    /// Bound on killing a cancelled query and draining its connection; past
    /// it the connection is discarded (default 5s).
    #[serde(default = "defaults::kill_timeout", with = "humantime_serde")]
    pub kill_timeout: Duration,
    /// The most rows one result may hold; more fails the call (default 10000).
    #[serde(default = "defaults::max_rows")]
    pub max_rows: usize,
    /// Replace the server's error text (which names tables, keys and
    /// values) with a generic message for its class, logging the original;
    /// `extensions.code`, `errno` and `sqlState` stay. Unset: on when the
    /// gateway listens on a non-loopback address, off on loopback.
    #[serde(default)]
    pub hide_server_messages: Option<bool>,
    /// The session time zone, `UTC` or a fixed offset `+02:00`: every
    /// connection runs `SET time_zone` to it, and DATETIME / TIMESTAMP
    /// values come as ISO 8601 with that offset (`2024-05-01T12:30:00Z`).
    /// Unset: the server's zone, values without an offset (default).
    #[serde(default)]
    pub time_zone: Option<String>,
    /// How often a failed `@live` poll is retried, with backoff (250 ms,
    /// doubling, at most 5 s each), before its subscribers see the failure
    /// (default 5: about 7.75 s of waiting plus the statements' own time).
    #[serde(default = "defaults::live_retries")]
    pub live_retries: u32,
    /// TLS to the server, as MySQL's `--ssl-mode`: `disabled`,
    /// `preferred` (the default: TLS when the server offers it, without
    /// checking its certificate), `required` (TLS or no connection, still
    /// unchecked), `verify_ca` (the certificate chains to `tls.ca_file` or
    /// the system roots) or `verify_identity` (and is valid for the host).
    #[serde(default)]
    pub ssl_mode: SslMode,
    /// The CA bundle, client certificate and server name for TLS
    /// (`[mysql.<name>.tls]`).
    #[serde(default)]
    pub tls: crate::tls::ClientTlsConfig,
}

/// MySQL's `ssl-mode` values (see [`MysqlDbConfig::ssl_mode`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SslMode {
    /// Never TLS.
    Disabled,
    /// TLS when the server offers it; the certificate is not checked.
    #[default]
    Preferred,
    /// TLS or fail; the certificate is not checked.
    Required,
    /// TLS with a certificate that chains to a trusted CA.
    VerifyCa,
    /// TLS with a trusted certificate valid for the host name.
    VerifyIdentity,
}

mod defaults {
    use std::time::Duration;
    pub fn max_connections() -> usize {
        10
    }
    pub fn acquire_timeout() -> Duration {
        Duration::from_secs(2)
    }
    pub fn idle_timeout() -> Duration {
        Duration::from_secs(300)
    }
    pub fn statement_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn connect_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn health_check_interval() -> Duration {
        Duration::from_secs(30)
    }
    pub fn kill_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn max_rows() -> usize {
        10_000
    }
    pub fn live_retries() -> u32 {
        5
    }
}

impl MysqlDbConfig {
    /// The defaults for the database at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        MysqlDbConfig {
            url: url.into(),
            max_connections: defaults::max_connections(),
            acquire_timeout: defaults::acquire_timeout(),
            idle_timeout: defaults::idle_timeout(),
            statement_timeout: defaults::statement_timeout(),
            connect_timeout: defaults::connect_timeout(),
            health_check_interval: defaults::health_check_interval(),
            kill_timeout: defaults::kill_timeout(),
            max_rows: defaults::max_rows(),
            hide_server_messages: None,
            time_zone: None,
            live_retries: defaults::live_retries(),
            ssl_mode: SslMode::default(),
            tls: crate::tls::ClientTlsConfig::default(),
        }
    }

    /// Checks what can be checked without connecting: the url parses and
    /// no bound is zero. [`MysqlPool::new`] runs the same check; a config
    /// loader calls this to report the error with its file and line.
    pub fn check(&self) -> Result<(), String> {
        self.validate()?;
        let target = parse_url(&self.url)?;
        conn::TargetTls::new(self.ssl_mode, &self.tls, &target.host).map(|_| ())
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(tz) = &self.time_zone {
            protocol::zone_offset(tz)?;
        }
        if self.max_connections == 0 {
            return Err("max_connections must be at least 1".into());
        }
        if self.max_rows == 0 {
            return Err("max_rows must be at least 1".into());
        }
        for (name, value) in [
            ("acquire_timeout", self.acquire_timeout),
            ("idle_timeout", self.idle_timeout),
            ("statement_timeout", self.statement_timeout),
            ("connect_timeout", self.connect_timeout),
            ("health_check_interval", self.health_check_interval),
            ("kill_timeout", self.kill_timeout),
        ] {
            if value.is_zero() {
                return Err(format!("{name} must be greater than zero"));
            }
        }
        Ok(())
    }
}

/// A database configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The pool's configured name.
    pub db: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mysql database `{}`: {}", self.db, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Parses `mysql://user[:password]@host[:port][/database]`.
fn parse_url(url: &str) -> Result<conn::Target, String> {
    let rest = url
        .strip_prefix("mysql://")
        .or_else(|| url.strip_prefix("mariadb://"))
        .ok_or_else(|| format!("url `{}` must start with mysql://", redact(url)))?;
    if rest.contains('?') || rest.contains('#') {
        return Err("url options (`?...`) are not supported; use the config keys".into());
    }
    let (authority, database) = match rest.split_once('/') {
        Some((a, d)) => (a, (!d.is_empty()).then(|| d.to_owned())),
        None => (rest, None),
    };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (u, h),
        None => ("", authority),
    };
    let (user, password) = match userinfo.split_once(':') {
        Some((u, p)) => (u, p),
        None => (userinfo, ""),
    };
    if user.is_empty() {
        return Err("url must name a user (mysql://user@host/db)".into());
    }
    let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
        // [ipv6]:port
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| "unclosed `[` in url host".to_string())?;
        (host, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err("url must name a host".into());
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| format!("url port `{p}` is not a port number"))?,
        None => 3306,
    };
    Ok(conn::Target {
        host: host.to_owned(),
        port,
        credentials: Credentials {
            user: percent_decode(user)?,
            password: percent_decode(password)?,
            database: database.map(|d| percent_decode(&d)).transpose()?,
        },
        tls: conn::TargetTls::disabled(),
    })
}

/// The url with its password replaced, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-encoding in url near `{}`", &text[i..]))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "url part is not UTF-8 after percent-decoding".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_defaults_and_decoding() {
        let target = parse_url("mysql://root@127.0.0.1:3306/test").unwrap();
        assert_eq!(target.host, "127.0.0.1");
        assert_eq!(target.port, 3306);
        assert_eq!(target.credentials.user, "root");
        assert_eq!(target.credentials.password, "");
        assert_eq!(target.credentials.database.as_deref(), Some("test"));
        let target = parse_url("mysql://app:p%40ss@db.internal").unwrap();
        assert_eq!(target.port, 3306);
        assert_eq!(target.credentials.password, "p@ss");
        assert_eq!(target.credentials.database, None);
        assert!(parse_url("postgres://x@y/z").is_err());
        assert!(parse_url("mysql://x@y:notaport/z").is_err());
        assert!(parse_url("mysql://@y/z").is_err());
        assert!(parse_url("mysql://x@y/z?ssl=true").is_err());
    }

    #[test]
    fn redaction_hides_the_password() {
        assert_eq!(redact("mysql://u:secret@h/db"), "mysql://u:***@h/db");
    }

    #[test]
    fn config_reads_durations_and_defaults() {
        let config: MysqlDbConfig = serde_json::from_value(serde_json::json!({
            "url": "mysql://root@127.0.0.1/test",
            "statement_timeout": "300ms",
            "max_connections": 3
        }))
        .unwrap();
        assert_eq!(config.statement_timeout, Duration::from_millis(300));
        assert_eq!(config.max_connections, 3);
        assert_eq!(config.acquire_timeout, Duration::from_secs(2));
        let zero = MysqlDbConfig {
            max_connections: 0,
            ..MysqlDbConfig::new("mysql://root@h/db")
        };
        assert!(zero.validate().is_err());
    }
}
