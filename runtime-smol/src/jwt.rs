//! JWT authentication (`[auth.jwt]`): HS256, RS256 and ES256 tokens, keys
//! from files or from a JWKS URL, required `iss`/`aud`/`exp`, clock-skew
//! leeway.
//!
//! The WebSocket reads the token from the `connection_init` payload (field
//! `token_field`, a dotted path) for both subprotocols; POST reads
//! `Authorization: Bearer`. An accepted token becomes
//! `AuthVerdict::AcceptUntil` with its `exp` (plus leeway) on the core's
//! clock, so the core closes the socket with 4403 when it expires
//! (core/src/server/mod.rs).
//!
//! The JWKS is fetched with a bounded timeout and size, cached for
//! `jwks_cache`, and fetched again when a token names an unknown `kid`, at
//! most once per `jwks_min_refresh` (a flood of made-up `kid`s cannot turn
//! into a flood of fetches).

use crate::tls::{self, ClientTlsConfig, Verify};
use async_lock::Mutex;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use terminus_core::server::AuthVerdict;
use terminus_core::Millis;

/// `[auth.jwt]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// The `iss` every token must carry (required).
    pub issuer: String,
    /// The `aud` every token must name (required).
    pub audience: String,
    /// Signature algorithms accepted; each must also match its key's type
    /// (an HS256 token verifies only against an HMAC secret). Default
    /// `["HS256", "RS256", "ES256"]`.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// File holding the HS256 shared secret (its bytes, surrounding
    /// whitespace trimmed).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// PEM public key (RSA for RS256, P-256 for ES256).
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// A JWKS document on disk (`{"keys": [...]}`).
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// `https://` (or `http://`) URL of a JWKS document.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// TLS of the JWKS fetch: CA bundle, client certificate. Default: the
    /// system's roots.
    #[serde(default)]
    pub jwks_tls: ClientTlsConfig,
    /// Bound on one JWKS fetch (connect, TLS, response). Default 5 s.
    #[serde(default = "default_jwks_timeout", with = "humantime_serde")]
    pub jwks_timeout: Duration,
    /// How long fetched keys are used before they are fetched again.
    /// Default 10 min.
    #[serde(default = "default_jwks_cache", with = "humantime_serde")]
    pub jwks_cache: Duration,
    /// Least time between two fetches (an unknown `kid` asks for one).
    /// Default 30 s.
    #[serde(default = "default_jwks_min_refresh", with = "humantime_serde")]
    pub jwks_min_refresh: Duration,
    /// Largest JWKS document accepted, in bytes. Default 256 KiB.
    #[serde(default = "default_jwks_max_bytes")]
    pub jwks_max_bytes: usize,
    /// Clock skew allowed on `exp` and `nbf` (whole seconds count).
    /// Default 30 s.
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// Where the token is in the `connection_init` payload: a field name,
    /// or a dotted path (`headers.Authorization`). A `Bearer ` prefix is
    /// allowed. Default `token`.
    #[serde(default = "default_token_field")]
    pub token_field: String,
    /// Claims sent as gRPC metadata on every call of the caller's
    /// operations: claim name to header name (`sub = "x-user-id"`).
    /// Default: none. Each entry is forwarded through the request context
    /// as `claim:<name>` (runtime-smol/src/grpc/metadata.rs), to every
    /// gRPC upstream (runtime-smol/src/upstreams.rs).
    #[serde(default)]
    pub claims_metadata: std::collections::BTreeMap<String, String>,
}

fn default_algorithms() -> Vec<String> {
    vec!["HS256".into(), "RS256".into(), "ES256".into()]
}
fn default_jwks_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_jwks_cache() -> Duration {
    Duration::from_secs(600)
}
fn default_jwks_min_refresh() -> Duration {
    Duration::from_secs(30)
}
fn default_jwks_max_bytes() -> usize {
    256 * 1024
}
fn default_leeway() -> Duration {
    Duration::from_secs(30)
}
fn default_token_field() -> String {
    "token".into()
}

impl JwtConfig {
    /// Resolves relative paths against `base` (the config file's folder).
    pub fn resolve_paths(&mut self, base: &Path) {
        for p in [
            &mut self.secret_file,
            &mut self.public_key_file,
            &mut self.jwks_file,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        self.jwks_tls.resolve_paths(base);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Hmac,
    Rsa,
    Ec,
}

fn family(alg: Algorithm) -> Option<Family> {
    match alg {
        Algorithm::HS256 => Some(Family::Hmac),
        Algorithm::RS256 => Some(Family::Rsa),
        Algorithm::ES256 => Some(Family::Ec),
        _ => None,
    }
}

#[derive(Clone)]
struct Key {
    kid: Option<String>,
    family: Family,
    key: DecodingKey,
}

fn key_from_jwk(jwk: &Jwk) -> Option<Key> {
    let family = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Family::Rsa,
        AlgorithmParameters::EllipticCurve(_) => Family::Ec,
        AlgorithmParameters::OctetKey(_) => Family::Hmac,
        AlgorithmParameters::OctetKeyPair(_) => return None,
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key {
        kid: jwk.common.key_id.clone(),
        family,
        key,
    })
}

/// The keys of a JWKS document; keys of unsupported types are skipped.
fn parse_jwks(bytes: &[u8]) -> Result<Vec<Key>, String> {
    #[derive(Deserialize)]
    struct Set {
        keys: Vec<Value>,
    }
    let set: Set = serde_json::from_slice(bytes)
        .map_err(|e| format!("not a JWKS document ({{\"keys\": [...]}}): {e}"))?;
    Ok(set
        .keys
        .into_iter()
        .filter_map(|k| serde_json::from_value::<Jwk>(k).ok())
        .filter_map(|jwk| key_from_jwk(&jwk))
        .collect())
}

/// A verified token.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// Every claim of the token.
    pub claims: Map<String, Value>,
    /// `exp`, seconds since the Unix epoch.
    pub exp: u64,
}

struct JwksSource {
    url: String,
    host: String,
    port: u16,
    path_and_query: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    tls_config: ClientTlsConfig,
    keys: RwLock<Arc<Vec<Key>>>,
    state: Mutex<FetchState>,
}

#[derive(Default)]
struct FetchState {
    fetched_at: Option<Instant>,
    attempted_at: Option<Instant>,
    last_error: Option<String>,
}

/// Verifies tokens against the configured keys. Share it as `Arc`.
pub struct Verifier {
    config: JwtConfig,
    algorithms: Vec<Algorithm>,
    static_keys: Vec<Key>,
    jwks: Option<JwksSource>,
    /// JWKS fetches made (for tests and `/metrics`).
    pub jwks_fetches: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.config.issuer)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: cannot read the {what}: {e}", path.display()))
}

impl Verifier {
    /// Loads every configured key; errors name the file or key.
    pub fn new(config: &JwtConfig) -> Result<Verifier, String> {
        let mut algorithms = Vec::new();
        for name in &config.algorithms {
            let alg = Algorithm::from_str(name)
                .ok()
                .filter(|a| family(*a).is_some())
                .ok_or_else(|| {
                    format!("auth.jwt.algorithms: {name:?} is not one of HS256, RS256, ES256")
                })?;
            algorithms.push(alg);
        }
        if algorithms.is_empty() {
            return Err("auth.jwt.algorithms: name at least one algorithm".into());
        }
        if config.issuer.is_empty() || config.audience.is_empty() {
            return Err("auth.jwt: issuer and audience must not be empty".into());
        }
        let mut static_keys = Vec::new();
        if let Some(path) = &config.secret_file {
            let bytes = read(path, "HS256 secret")?;
            let secret = String::from_utf8_lossy(&bytes).trim().as_bytes().to_vec();
            if secret.len() < 32 {
                return Err(format!(
                    "{}: the HS256 secret must be at least 32 bytes (has {})",
                    path.display(),
                    secret.len()
                ));
            }
            static_keys.push(Key {
                kid: None,
                family: Family::Hmac,
                key: DecodingKey::from_secret(&secret),
            });
        }
        if let Some(path) = &config.public_key_file {
            let pem = read(path, "public key")?;
            let key = if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
                Key {
                    kid: None,
                    family: Family::Rsa,
                    key,
                }
            } else if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
                Key {
                    kid: None,
                    family: Family::Ec,
                    key,
                }
            } else {
                return Err(format!(
                    "{}: not a PEM RSA or EC (P-256) public key",
                    path.display()
                ));
            };
            static_keys.push(key);
        }
        if let Some(path) = &config.jwks_file {
            let keys =
                parse_jwks(&read(path, "JWKS")?).map_err(|e| format!("{}: {e}", path.display()))?;
            if keys.is_empty() {
                return Err(format!(
                    "{}: no usable key (RSA, EC P-256 or oct)",
                    path.display()
                ));
            }
            static_keys.extend(keys);
        }
        let jwks = match &config.jwks_url {
            None => None,
            Some(url) => Some(JwksSource::new(url, &config.jwks_tls)?),
        };
        if static_keys.is_empty() && jwks.is_none() {
            return Err(
                "auth.jwt: configure a key: secret_file, public_key_file, jwks_file or jwks_url"
                    .into(),
            );
        }
        for (claim, header) in &config.claims_metadata {
            crate::grpc::metadata::check_name(header).map_err(|reason| {
                format!("auth.jwt.claims_metadata: {header:?} (for claim {claim:?}) {reason}")
            })?;
        }
        if config.token_field.is_empty() {
            return Err("auth.jwt.token_field must not be empty".into());
        }
        Ok(Verifier {
            config: config.clone(),
            algorithms,
            static_keys,
            jwks,
            jwks_fetches: Default::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &JwtConfig {
        &self.config
    }

    /// Fetches the JWKS once (at start-up), so the first client does not
    /// wait for it. A failure is logged; tokens are refused until a later
    /// fetch succeeds.
    pub async fn prefetch(&self) {
        if let Some(jwks) = &self.jwks {
            if let Err(error) = self.refresh(jwks).await {
                tracing::warn!(%error, "JWKS not available at start-up");
            }
        }
    }

    /// The token at `token_field` of a `connection_init` payload.
    pub fn token_from_payload<'a>(&self, payload: Option<&'a Value>) -> Option<&'a str> {
        let mut value = payload?;
        for part in self.config.token_field.split('.') {
            value = value.as_object()?.get(part)?;
        }
        value.as_str().map(strip_bearer)
    }

    /// Verifies `token`: signature against a key of the token's algorithm
    /// (and `kid`), then `iss`, `aud`, `exp`, `nbf` with leeway.
    pub async fn verify(&self, token: &str) -> Result<Verified, String> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| format!("malformed token: {}", describe(&e)))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(format!("algorithm {:?} is not accepted", header.alg));
        }
        let Some(fam) = family(header.alg) else {
            return Err(format!("algorithm {:?} is not accepted", header.alg));
        };
        let mut candidates = self.candidates(fam, header.kid.as_deref());
        if let Some(jwks) = &self.jwks {
            let stale = jwks.is_stale(self.config.jwks_cache).await;
            if candidates.is_empty() || stale {
                // Unknown kid (rotation) or old keys: fetch, rate-limited.
                if let Err(error) = self.refresh(jwks).await {
                    tracing::warn!(%error, "JWKS refresh failed");
                }
                candidates = self.candidates(fam, header.kid.as_deref());
            }
            if candidates.is_empty() {
                if let Some(error) = jwks.state.lock().await.last_error.clone() {
                    return Err(format!("signing keys unavailable: {error}"));
                }
            }
        }
        if candidates.is_empty() {
            return Err(match header.kid {
                Some(kid) => format!("no key with kid {kid:?} for {:?}", header.alg),
                None => format!("no key for {:?}", header.alg),
            });
        }
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.leeway = self.config.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let mut last = String::from("bad signature");
        for key in candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
                Ok(data) => {
                    let exp = data
                        .claims
                        .get("exp")
                        .and_then(Value::as_u64)
                        .ok_or("the exp claim must be a whole number of seconds".to_owned())?;
                    return Ok(Verified {
                        claims: data.claims,
                        exp,
                    });
                }
                Err(e) => match e.kind() {
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => last = describe(&e),
                    _ => return Err(describe(&e)),
                },
            }
        }
        Err(last)
    }

    /// The core's verdict for a `connection_init` payload, and the claims
    /// of an accepted token.
    pub async fn authenticate(
        &self,
        now: Millis,
        payload: Option<&Value>,
    ) -> (AuthVerdict, Option<Verified>) {
        let Some(token) = self.token_from_payload(payload) else {
            let reason = format!(
                "missing token (connection_init payload field {:?})",
                self.config.token_field
            );
            return (AuthVerdict::Reject { reason }, None);
        };
        match self.verify(token).await {
            Ok(verified) => {
                let expires = self.expires_at(now, verified.exp);
                (
                    AuthVerdict::AcceptUntil {
                        ack_payload: None,
                        expires,
                    },
                    Some(verified),
                )
            }
            Err(reason) => (AuthVerdict::Reject { reason }, None),
        }
    }

    /// `exp` plus leeway on the core's clock, whose current reading is
    /// `now`.
    pub fn expires_at(&self, now: Millis, exp: u64) -> Millis {
        let unix_now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let end = Duration::from_secs(exp) + self.config.leeway;
        // `now` is whole milliseconds rounded down, so round the rest up
        // and add one: the socket is never closed before exp + leeway.
        let left = end.saturating_sub(unix_now);
        let millis = left.as_micros().div_ceil(1000) + 1;
        now + Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
    }

    fn candidates(&self, fam: Family, kid: Option<&str>) -> Vec<Key> {
        let fetched = self
            .jwks
            .as_ref()
            .map(|j| j.keys.read().unwrap_or_else(|e| e.into_inner()).clone());
        self.static_keys
            .iter()
            .chain(fetched.iter().flat_map(|k| k.iter()))
            .filter(|k| k.family == fam)
            .filter(|k| match (kid, &k.kid) {
                (Some(want), Some(have)) => want == have,
                _ => true,
            })
            .cloned()
            .collect()
    }

    /// Fetches the JWKS unless a fetch was attempted less than
    /// `jwks_min_refresh` ago (then the last outcome stands).
    async fn refresh(&self, jwks: &JwksSource) -> Result<(), String> {
        let mut state = jwks.state.lock().await;
        if state
            .attempted_at
            .is_some_and(|at| at.elapsed() < self.config.jwks_min_refresh)
        {
            return match &state.last_error {
                Some(e) => Err(e.clone()),
                None => Ok(()),
            };
        }
        state.attempted_at = Some(Instant::now());
        self.jwks_fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match jwks
            .fetch(self.config.jwks_timeout, self.config.jwks_max_bytes)
            .await
        {
            Ok(keys) => {
                tracing::info!(url = %jwks.url, keys = keys.len(), "JWKS fetched");
                *jwks.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
                state.fetched_at = Some(Instant::now());
                state.last_error = None;
                Ok(())
            }
            Err(error) => {
                let error = format!("JWKS {}: {error}", jwks.url);
                state.last_error = Some(error.clone());
                Err(error)
            }
        }
    }
}

impl JwksSource {
    fn new(url: &str, tls: &ClientTlsConfig) -> Result<JwksSource, String> {
        let bad = |why: &str| format!("auth.jwt.jwks_url {url:?}: {why}");
        let uri: http::Uri = url.parse().map_err(|e| bad(&format!("{e}")))?;
        let secure = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("the scheme must be https or http")),
        };
        let host = uri
            .host()
            .ok_or_else(|| bad("no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let tls_client = if secure {
            Some(tls::client_config(tls, Verify::Full, &[b"http/1.1"]).map_err(|e| bad(&e))?)
        } else {
            None
        };
        Ok(JwksSource {
            url: url.to_owned(),
            host,
            port,
            path_and_query: uri
                .path_and_query()
                .map_or("/".to_owned(), |p| p.as_str().to_owned()),
            tls: tls_client,
            tls_config: tls.clone(),
            keys: RwLock::new(Arc::new(Vec::new())),
            state: Mutex::new(FetchState::default()),
        })
    }

    async fn is_stale(&self, max_age: Duration) -> bool {
        let state = self.state.lock().await;
        state.fetched_at.is_none_or(|f| f.elapsed() >= max_age)
    }

    async fn fetch(&self, timeout: Duration, max_bytes: usize) -> Result<Vec<Key>, String> {
        let work = async {
            let tcp = smol::net::TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| format!("connecting: {e}"))?;
            let conn = match &self.tls {
                Some(config) => {
                    let name = tls::server_name(&self.tls_config, &self.host)?;
                    tls::connect(config.clone(), name, tcp).await?
                }
                None => tls::Conn::Plain(tcp),
            };
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(
                    smol_hyper::rt::FuturesIo::new(conn),
                )
                .await
                .map_err(|e| format!("HTTP: {e}"))?;
            // Owned by this fetch: dropped (and the socket closed) with it.
            let _driver = crate::tasks::spawn(async move {
                let _ = connection.await;
            });
            let host_header = if self.tls.is_some() && self.port == 443
                || self.tls.is_none() && self.port == 80
            {
                self.host.clone()
            } else {
                format!("{}:{}", self.host, self.port)
            };
            let request = http::Request::get(&self.path_and_query)
                .header(http::header::HOST, host_header)
                .header(http::header::ACCEPT, "application/json")
                .body(Empty::<Bytes>::new())
                .map_err(|e| format!("request: {e}"))?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| format!("HTTP: {e}"))?;
            if !response.status().is_success() {
                return Err(format!("HTTP status {}", response.status()));
            }
            let body = Limited::new(response.into_body(), max_bytes)
                .collect()
                .await
                .map_err(|e| format!("reading the body (at most {max_bytes} bytes): {e}"))?
                .to_bytes();
            let keys = parse_jwks(&body)?;
            if keys.is_empty() {
                return Err("no usable key (RSA, EC P-256 or oct)".into());
            }
            Ok(keys)
        };
        crate::timeout::timeout(timeout, work)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "took longer than {timeout:?} (auth.jwt.jwks_timeout)"
                ))
            })
    }
}

/// `Bearer abc` and `abc` are the same token.
pub fn strip_bearer(value: &str) -> &str {
    let value = value.trim();
    match value.get(..7) {
        Some(prefix) if prefix.eq_ignore_ascii_case("bearer ") => value[7..].trim_start(),
        _ => value,
    }
}

fn describe(error: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::ExpiredSignature => "token expired".into(),
        ErrorKind::ImmatureSignature => "token not valid yet (nbf)".into(),
        ErrorKind::InvalidIssuer => "wrong issuer (iss)".into(),
        ErrorKind::InvalidAudience => "wrong audience (aud)".into(),
        ErrorKind::InvalidSignature => "bad signature".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("missing claim {claim}"),
        ErrorKind::InvalidAlgorithm => "algorithm does not match the key".into(),
        other => format!("invalid token ({other:?})"),
    }
}

/// Checks an `[auth.jwt]` section as start-up would, for config errors
/// (config.rs names the file).
pub fn check(config: &JwtConfig) -> Result<(), String> {
    Verifier::new(config).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn verifier(dir: &Path, leeway: u64) -> Verifier {
        let secret = dir.join("secret");
        std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
        let config: JwtConfig = toml::from_str(&format!(
            "issuer = \"https://issuer.test\"\naudience = \"terminus\"\nsecret_file = {:?}\nleeway = \"{leeway}s\"\ntoken_field = \"headers.Authorization\"\n",
            secret
        ))
        .unwrap();
        Verifier::new(&config).unwrap()
    }

    fn now_secs() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn token(claims: Value, secret: &str) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn tempdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("terminus-jwt-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn hs256_tokens_are_checked_for_signature_issuer_audience_and_expiry() {
        let dir = tempdir("hs");
        let v = verifier(&dir, 0);
        let good = json!({"iss": "https://issuer.test", "aud": "terminus", "sub": "u1", "exp": now_secs() + 60});
        let ok = smol::block_on(v.verify(&token(good.clone(), SECRET))).unwrap();
        assert_eq!(ok.claims["sub"], "u1");
        let cases = [
            (
                token(good.clone(), "another-secret-another-secret-xx"),
                "bad signature",
            ),
            (
                token(
                    json!({"iss": "x", "aud": "terminus", "exp": now_secs() + 60}),
                    SECRET,
                ),
                "wrong issuer (iss)",
            ),
            (
                token(
                    json!({"iss": "https://issuer.test", "aud": "other", "exp": now_secs() + 60}),
                    SECRET,
                ),
                "wrong audience (aud)",
            ),
            (
                token(
                    json!({"iss": "https://issuer.test", "aud": "terminus", "exp": now_secs() - 5}),
                    SECRET,
                ),
                "token expired",
            ),
            (
                token(
                    json!({"iss": "https://issuer.test", "aud": "terminus"}),
                    SECRET,
                ),
                "missing claim exp",
            ),
            ("not.a.jwt".to_owned(), "malformed token"),
        ];
        for (token, want) in cases {
            let error = smol::block_on(v.verify(&token)).unwrap_err();
            assert!(
                error.starts_with(want),
                "{error:?} should start with {want:?}"
            );
        }
    }

    #[test]
    fn the_token_is_read_from_a_dotted_path_with_or_without_bearer() {
        let dir = tempdir("path");
        let v = verifier(&dir, 0);
        let payload = json!({"headers": {"Authorization": "Bearer abc"}});
        assert_eq!(v.token_from_payload(Some(&payload)), Some("abc"));
        let payload = json!({"headers": {"Authorization": "abc"}});
        assert_eq!(v.token_from_payload(Some(&payload)), Some("abc"));
        assert_eq!(v.token_from_payload(Some(&json!({"token": "abc"}))), None);
        assert_eq!(v.token_from_payload(None), None);
    }

    #[test]
    fn an_accepted_token_expires_at_exp_plus_leeway_on_the_core_clock() {
        let dir = tempdir("exp");
        let v = verifier(&dir, 2);
        let exp = now_secs() + 10;
        let at = v.expires_at(Millis(1_000), exp);
        // exp is whole seconds, so up to 1 s less than 12 s from now.
        assert!(at.0 > 1_000 + 10_500 && at.0 <= 1_000 + 12_000, "{at:?}");
        let payload = json!({"headers": {"Authorization": token(json!({"iss": "https://issuer.test", "aud": "terminus", "exp": exp}), SECRET)}});
        let (verdict, claims) = smol::block_on(v.authenticate(Millis(0), Some(&payload)));
        assert!(
            matches!(verdict, AuthVerdict::AcceptUntil { .. }),
            "{verdict:?}"
        );
        assert!(claims.is_some());
        let (verdict, _) = smol::block_on(v.authenticate(Millis(0), Some(&json!({}))));
        assert!(matches!(verdict, AuthVerdict::Reject { .. }));
    }

    #[test]
    fn config_errors_name_what_is_wrong() {
        let bad = |text: &str| {
            let config: JwtConfig = toml::from_str(text).unwrap();
            Verifier::new(&config).unwrap_err()
        };
        assert!(bad("issuer = \"i\"\naudience = \"a\"\n").contains("configure a key"));
        assert!(
            bad("issuer = \"i\"\naudience = \"a\"\njwks_url = \"ftp://x\"\n")
                .contains("https or http")
        );
        assert!(bad(
            "issuer = \"i\"\naudience = \"a\"\njwks_url = \"http://x/\"\nalgorithms = [\"none\"]\n"
        )
        .contains("not one of"));
        assert!(
            bad("issuer = \"i\"\naudience = \"a\"\nsecret_file = \"/nonexistent/s\"\n")
                .contains("/nonexistent/s")
        );
    }
}
