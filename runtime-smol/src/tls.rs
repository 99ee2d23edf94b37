//! TLS on every hop, with rustls (ring provider) and futures-rustls:
//!
//! - the listener (`[tls]`): `wss://` and `https://` with a certificate and
//!   key from files, reloaded when either file changes;
//! - client connections (gRPC upstreams, the JWKS fetch, MySQL): system
//!   roots or a configured CA bundle, an optional client certificate
//!   (mTLS), ALPN, and errors that say which check failed.
//!
//! [`Conn`] is the one stream type the HTTP server, the WebSocket and the
//! clients run over, plaintext or TLS.

use futures_lite::io::{AsyncRead, AsyncWrite};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde::Deserialize;
use smol::net::TcpStream;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

/// The crypto provider every TLS config of the gateway uses (ring: no
/// OpenSSL, no cmake).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A connection the gateway reads and writes: plaintext TCP, or TLS over
/// TCP as a server (the listener) or as a client (upstreams).
#[derive(Debug)]
pub enum Conn {
    /// Plaintext TCP.
    Plain(TcpStream),
    /// TLS accepted on the listener.
    Server(Box<futures_rustls::server::TlsStream<TcpStream>>),
    /// TLS towards an upstream.
    Client(Box<futures_rustls::client::TlsStream<TcpStream>>),
}

impl Conn {
    /// The ALPN protocol the TLS handshake agreed on, if any.
    pub fn alpn(&self) -> Option<&[u8]> {
        match self {
            Conn::Plain(_) => None,
            Conn::Server(s) => s.get_ref().1.alpn_protocol(),
            Conn::Client(s) => s.get_ref().1.alpn_protocol(),
        }
    }

    /// True when the bytes travel encrypted.
    pub fn is_tls(&self) -> bool {
        !matches!(self, Conn::Plain(_))
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Server(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Conn::Client(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Server(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Conn::Client(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Server(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Conn::Client(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Server(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Conn::Client(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_close(cx),
            Conn::Server(s) => Pin::new(s.as_mut()).poll_close(cx),
            Conn::Client(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}

// ---------------------------------------------------------------- files

/// Reads every certificate of a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: cannot read certificates: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no certificate (expected PEM blocks \"BEGIN CERTIFICATE\")",
            path.display()
        ));
    }
    Ok(certs)
}

/// Reads the private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("{}: cannot read a private key: {e}", path.display()))
}

/// A certificate chain and its key, checked to belong together.
fn certified_key(cert_file: &Path, key_file: &Path) -> Result<Arc<CertifiedKey>, String> {
    let certs = load_certs(cert_file)?;
    let key = load_key(key_file)?;
    let signer = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("{}: unusable private key: {e}", key_file.display()))?;
    let certified = CertifiedKey::new(certs, signer);
    certified.keys_match().map_err(|e| {
        format!(
            "{} and {} do not belong together: {e}",
            cert_file.display(),
            key_file.display()
        )
    })?;
    Ok(Arc::new(certified))
}

// ---------------------------------------------------------------- listener

/// `[tls]`: serve `https://` and `wss://` on the listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key of the leaf certificate.
    pub key_file: PathBuf,
    /// How often the two files are checked for changes; a changed pair is
    /// loaded for new connections (live ones keep theirs). A pair that does
    /// not load is logged and the previous one stays. Default 10 s.
    #[serde(default = "default_reload_interval", with = "humantime_serde")]
    pub reload_interval: Duration,
    /// Bound on a client's TLS handshake. Default 10 s.
    #[serde(default = "default_handshake_timeout", with = "humantime_serde")]
    pub handshake_timeout: Duration,
}

fn default_reload_interval() -> Duration {
    Duration::from_secs(10)
}

fn default_handshake_timeout() -> Duration {
    Duration::from_secs(10)
}

impl ListenerTlsConfig {
    /// Resolves relative paths against `base` (the config file's folder).
    pub fn resolve_paths(&mut self, base: &Path) {
        for p in [&mut self.cert_file, &mut self.key_file] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }
}

/// The current certificate of the listener, swapped by the reload task.
#[derive(Debug)]
struct Resolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// The listener's TLS: the acceptor and the task that reloads its
/// certificate. Dropping it stops the reloading.
pub struct ListenerTls {
    acceptor: futures_rustls::TlsAcceptor,
    handshake_timeout: Duration,
    _reload: smol::Task<()>,
}

impl std::fmt::Debug for ListenerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerTls").finish_non_exhaustive()
    }
}

/// What accepts one connection: plaintext, or a TLS handshake first.
#[derive(Clone)]
pub struct Acceptor {
    tls: Option<(futures_rustls::TlsAcceptor, Duration)>,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor")
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Acceptor {
    /// Plaintext.
    pub fn plain() -> Acceptor {
        Acceptor { tls: None }
    }

    /// Wraps an accepted socket: the TLS handshake when TLS is on, bounded
    /// by `handshake_timeout`.
    pub async fn accept(&self, stream: TcpStream) -> io::Result<Conn> {
        let Some((acceptor, timeout)) = &self.tls else {
            return Ok(Conn::Plain(stream));
        };
        let timeout = *timeout;
        let handshake = async {
            acceptor
                .accept(stream)
                .await
                .map(|s| Conn::Server(Box::new(s)))
        };
        crate::timeout::timeout(timeout, handshake)
            .await
            .unwrap_or_else(|_| {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("TLS handshake took longer than {timeout:?} (tls.handshake_timeout)"),
                ))
            })
    }
}

impl ListenerTls {
    /// Loads the certificate and key (an error names the file) and starts
    /// the task that reloads them when they change.
    pub fn start(config: &ListenerTlsConfig) -> Result<ListenerTls, String> {
        let first = certified_key(&config.cert_file, &config.key_file)?;
        let resolver = Arc::new(Resolver {
            current: RwLock::new(first),
        });
        let mut server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        // The listener speaks HTTP/1.1 (the WebSocket upgrade needs it).
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let reload = crate::tasks::spawn(reload_loop(config.clone(), resolver));
        Ok(ListenerTls {
            acceptor: futures_rustls::TlsAcceptor::from(Arc::new(server)),
            handshake_timeout: config.handshake_timeout,
            _reload: reload,
        })
    }

    /// An acceptor for the accept loop's connections.
    pub fn acceptor(&self) -> Acceptor {
        Acceptor {
            tls: Some((self.acceptor.clone(), self.handshake_timeout)),
        }
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

async fn reload_loop(config: ListenerTlsConfig, resolver: Arc<Resolver>) {
    let stamp = |c: &ListenerTlsConfig| (modified(&c.cert_file), modified(&c.key_file));
    let mut seen = stamp(&config);
    let interval = config.reload_interval.max(Duration::from_millis(10));
    loop {
        smol::Timer::after(interval).await;
        let now = stamp(&config);
        if now == seen {
            continue;
        }
        seen = now;
        match certified_key(&config.cert_file, &config.key_file) {
            Ok(key) => {
                *resolver.current.write().unwrap_or_else(|e| e.into_inner()) = key;
                tracing::info!(cert = %config.cert_file.display(), "TLS certificate reloaded");
            }
            Err(error) => {
                // A half-written pair (cert renewed, key not yet) lands
                // here; the next change is tried again.
                tracing::warn!(%error, "TLS certificate not reloaded; keeping the previous one");
            }
        }
    }
}

// ---------------------------------------------------------------- clients

/// TLS towards one upstream (`[grpc.<name>.tls]`, `[auth.jwt.tls]`,
/// `[mysql.<name>]`'s CA): which roots to trust and which certificate to
/// present.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientTlsConfig {
    /// PEM bundle of the CAs to trust instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain for mutual TLS (with `key_file`).
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// The name the server's certificate must be valid for, when it is not
    /// the endpoint's host (for example an IP endpoint with a DNS-named
    /// certificate).
    pub server_name: Option<String>,
}

impl ClientTlsConfig {
    /// Resolves relative paths against `base` (the config file's folder).
    pub fn resolve_paths(&mut self, base: &Path) {
        for p in [&mut self.ca_file, &mut self.cert_file, &mut self.key_file]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }
}

/// How much of the server's certificate a client checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Chain to a trusted root, validity dates and the host name.
    Full,
    /// Chain and dates, not the host name (MySQL `verify_ca`).
    ChainOnly,
    /// Nothing: encryption without authentication (MySQL `required`,
    /// `preferred`). Never used for gRPC or JWKS.
    None,
}

/// The trusted roots: the CA bundle when configured, else the system's.
fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in load_certs(path)? {
                store
                    .add(cert)
                    .map_err(|e| format!("{}: unusable CA certificate: {e}", path.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // Some system bundles carry certificates webpki rejects;
                // the rest still count.
                let _ = store.add(cert);
            }
            if store.is_empty() {
                return Err(format!(
                    "no system root certificates found ({}); set ca_file",
                    found
                        .errors
                        .first()
                        .map_or("none installed".to_owned(), |e| e.to_string())
                ));
            }
        }
    }
    Ok(store)
}

/// A rustls client config for `tls`, offering `alpn`.
pub fn client_config(
    tls: &ClientTlsConfig,
    verify: Verify,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match verify {
        Verify::Full => builder.with_root_certificates(roots(tls.ca_file.as_deref())?),
        Verify::ChainOnly => {
            let inner = WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots(tls.ca_file.as_deref())?),
                provider(),
            )
            .build()
            .map_err(|e| format!("TLS: {e}"))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(IgnoreName(inner)))
        }
        Verify::None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider()))),
    };
    let mut config = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| format!("{}: unusable client certificate: {e}", cert.display()))?,
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("cert_file and key_file go together (mutual TLS)".to_owned()),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The server name to verify for `host`, or the configured override.
pub fn server_name(tls: &ClientTlsConfig, host: &str) -> Result<ServerName<'static>, String> {
    let name = tls.server_name.as_deref().unwrap_or(host);
    ServerName::try_from(name.to_owned())
        .map_err(|e| format!("{name:?} is not a valid TLS server name: {e}"))
}

/// The TLS handshake over `stream`; errors say which check failed.
pub async fn connect(
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    stream: TcpStream,
) -> Result<Conn, String> {
    let shown = name.to_str().into_owned();
    futures_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map(|s| Conn::Client(Box::new(s)))
        .map_err(|e| describe_handshake_error(&e, &shown))
}

/// A TLS handshake error in words that point at the fix.
pub fn describe_handshake_error(error: &io::Error, host: &str) -> String {
    let Some(rustls_error) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return format!("TLS handshake with {host} failed: {error}");
    };
    let what = match rustls_error {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                format!("the certificate of {host} is not signed by a trusted CA (check ca_file)")
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                format!("the certificate of {host} has expired ({cert:?})")
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                format!("the certificate of {host} is not valid yet ({cert:?})")
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!("the certificate of {host} is not valid for the name {host:?} (hostname mismatch; see server_name)")
            }
            other => format!("the certificate of {host} was refused: {other:?}"),
        },
        rustls::Error::NoApplicationProtocol => {
            format!("{host} agreed on no ALPN protocol (it must speak h2 over TLS)")
        }
        rustls::Error::AlertReceived(alert) => {
            format!("{host} refused the TLS handshake ({alert:?}; a client certificate may be required or refused)")
        }
        other => format!("TLS handshake with {host} failed: {other}"),
    };
    format!("TLS: {what}")
}

/// Verifies the chain and dates but not the host name.
#[derive(Debug)]
struct IgnoreName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for IgnoreName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Accepts any certificate (still checking the handshake's signatures):
/// encryption without authentication, for MySQL's `required`/`preferred`.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
