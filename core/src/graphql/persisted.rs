//! Persisted queries: Apollo's automatic persisted queries (APQ) and
//! trusted documents (an allow-list manifest). The one rule every transport
//! applies before an operation starts (POST, GET, SSE, multipart, both
//! WebSocket subprotocols): [`PersistedQueries::resolve`] turns a request's
//! `extensions.persistedQuery` into its document, or refuses it with a
//! GraphQL error. Pure: the host owns the store (behind a lock), reads the
//! manifest file and hands its text to [`Manifest::parse`].
//!
//! ```text
//! extensions.persistedQuery = {"version": 1, "sha256Hash": "<hex>"}
//!
//! mode       hash only              hash + query                 query only
//! off        NOT_SUPPORTED          query runs                   runs
//! automatic  cache/manifest or      hash checked, registered,    runs
//!            PERSISTED_QUERY_NOT_FOUND   runs (else HASH_MISMATCH)
//! trusted    manifest or            manifest's document must     runs if the
//!            NOT_IN_LIST            be the query                 manifest lists it
//! ```
//!
//! The cache is least-recently-used and bounded both in entries and in
//! bytes (hash plus document); docs/transports.md and docs/config.md
//! describe the modes, the manifest formats and the bounds.

use super::errors::GraphQLError;
use crate::operation::OperationRequest;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// `extensions.code` of a hash the gateway does not know (APQ): the client
/// sends the hash again with the query. Message `PersistedQueryNotFound`,
/// which Apollo's persisted-queries link also matches on.
pub const PERSISTED_QUERY_NOT_FOUND: &str = "PERSISTED_QUERY_NOT_FOUND";
/// `extensions.code` when persisted queries are off and a hash came alone.
pub const PERSISTED_QUERY_NOT_SUPPORTED: &str = "PERSISTED_QUERY_NOT_SUPPORTED";
/// `extensions.code` of a hash that is not the SHA-256 of the query sent
/// with it (or, for trusted documents, not its listed document).
pub const PERSISTED_QUERY_HASH_MISMATCH: &str = "PERSISTED_QUERY_HASH_MISMATCH";
/// `extensions.code` of a hash the trusted-documents manifest does not list.
pub const PERSISTED_QUERY_NOT_IN_LIST: &str = "PERSISTED_QUERY_NOT_IN_LIST";
/// `extensions.code` of a document the trusted-documents manifest does not
/// list.
pub const QUERY_NOT_IN_SAFELIST: &str = "QUERY_NOT_IN_SAFELIST";
/// `extensions.code` of a malformed `extensions.persistedQuery`.
pub const PERSISTED_QUERY_INVALID: &str = "PERSISTED_QUERY_INVALID";

/// Longest id accepted in `sha256Hash` (manifest ids need not be hashes).
const MAX_ID_BYTES: usize = 256;

/// What the gateway does with `extensions.persistedQuery`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PersistedMode {
    /// Hashes are not looked up; a hash without a query is refused with
    /// `PERSISTED_QUERY_NOT_SUPPORTED`.
    Off,
    /// Apollo's automatic persisted queries: a hash with its query registers
    /// it in the cache, a hash alone is looked up (manifest first, if any).
    #[default]
    Automatic,
    /// Trusted documents: only what the manifest lists runs, by id or by
    /// its exact text; nothing is registered.
    Trusted,
}

/// The bounds and mode of a [`PersistedQueries`] store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PersistedConfig {
    /// The mode.
    pub mode: PersistedMode,
    /// Most documents in the APQ cache (0: nothing is registered).
    pub max_entries: usize,
    /// Most bytes (hash plus document) in the APQ cache; a document larger
    /// than this runs but is not registered.
    pub max_bytes: usize,
}

impl Default for PersistedConfig {
    fn default() -> Self {
        PersistedConfig {
            mode: PersistedMode::Automatic,
            max_entries: 1000,
            max_bytes: 4 * 1024 * 1024,
        }
    }
}

/// The lowercase hex SHA-256 of `text`: APQ's `sha256Hash` of a document.
pub fn sha256_hex(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut out = String::with_capacity(64);
    for byte in digest.iter() {
        out.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(byte & 15)]));
    }
    out
}

/// A manifest that cannot be used: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    /// 1-based line in the manifest text.
    pub line: usize,
    /// 1-based column in the manifest text.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ManifestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

impl std::error::Error for ManifestError {}

/// The documents a manifest lists, by id, and their texts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Manifest {
    by_id: HashMap<String, Arc<str>>,
    bodies: HashSet<Arc<str>>,
}

#[derive(Deserialize)]
struct ApolloManifest {
    format: String,
    version: u64,
    operations: Vec<ApolloOperation>,
}

#[derive(Deserialize)]
struct ApolloOperation {
    id: String,
    body: String,
    #[allow(dead_code)]
    name: Option<String>,
    #[allow(dead_code)]
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// The `format` of Apollo's persisted query manifest.
pub const APOLLO_MANIFEST_FORMAT: &str = "apollo-persisted-query-manifest";

impl Manifest {
    /// Parses a manifest: Apollo's persisted query manifest
    /// (`{"format": "apollo-persisted-query-manifest", "version": 1,
    /// "operations": [{"id", "body", "name", "type"}]}`) or a plain map
    /// `{"<id>": "<document>"}` (GraphQL Yoga, Hive, Relay). An id listed
    /// twice with different documents, an empty id or document, and an id
    /// over 256 bytes are errors.
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        let at = |line: usize, column: usize, message: String| ManifestError {
            line,
            column,
            message,
        };
        let json_error = |e: serde_json::Error| at(e.line(), e.column(), e.to_string());
        let value: Value = serde_json::from_str(text).map_err(json_error)?;
        let Value::Object(top) = &value else {
            return Err(at(
                1,
                1,
                "a manifest is a JSON object: Apollo's persisted query manifest or {\"<id>\": \"<document>\"}".into(),
            ));
        };
        let entries: Vec<(String, String)> = if top.contains_key("format") {
            let apollo: ApolloManifest = serde_json::from_str(text).map_err(json_error)?;
            if apollo.format != APOLLO_MANIFEST_FORMAT {
                let (line, column) = position_of(text, &format!("\"{}\"", apollo.format));
                return Err(at(
                    line,
                    column,
                    format!(
                        "format {:?} is not {APOLLO_MANIFEST_FORMAT:?}",
                        apollo.format
                    ),
                ));
            }
            if apollo.version != 1 {
                let (line, column) = position_of(text, "\"version\"");
                return Err(at(
                    line,
                    column,
                    format!("version {} is not 1", apollo.version),
                ));
            }
            apollo
                .operations
                .into_iter()
                .map(|op| (op.id, op.body))
                .collect()
        } else {
            let map: BTreeMap<String, String> = serde_json::from_str(text).map_err(json_error)?;
            map.into_iter().collect()
        };
        let mut manifest = Manifest::default();
        for (id, body) in entries {
            let (line, column) =
                position_of(text, &serde_json::to_string(&id).unwrap_or(id.clone()));
            if id.is_empty() || id.len() > MAX_ID_BYTES {
                return Err(at(
                    line,
                    column,
                    format!("an id is 1 to {MAX_ID_BYTES} bytes, not {}", id.len()),
                ));
            }
            if body.trim().is_empty() {
                return Err(at(line, column, format!("id {id:?} has an empty document")));
            }
            let body: Arc<str> = body.into();
            if let Some(previous) = manifest.by_id.get(&id) {
                if **previous != *body {
                    return Err(at(
                        line,
                        column,
                        format!("id {id:?} is listed twice with different documents"),
                    ));
                }
            }
            manifest.bodies.insert(body.clone());
            manifest.by_id.insert(id, body);
        }
        Ok(manifest)
    }

    /// How many ids the manifest lists.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether the manifest lists nothing.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The document listed as `id`.
    pub fn get(&self, id: &str) -> Option<&str> {
        self.by_id.get(id).map(|body| &**body)
    }

    /// Whether `document` is listed (exact text).
    pub fn lists(&self, document: &str) -> bool {
        self.bodies.contains(document)
    }
}

/// 1-based line and column of the first `needle` in `text` (1:1 if absent).
fn position_of(text: &str, needle: &str) -> (usize, usize) {
    let offset = text.find(needle).unwrap_or(0);
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// One cached document.
#[derive(Debug)]
struct Entry {
    document: Arc<str>,
    /// Its place in the recency order.
    used: u64,
}

/// The persisted-query store of one gateway: the mode, the manifest and
/// the bounded APQ cache. See the module documentation.
#[derive(Debug)]
pub struct PersistedQueries {
    config: PersistedConfig,
    manifest: Option<Arc<Manifest>>,
    cache: HashMap<String, Entry>,
    /// Recency: `used` stamp to hash, oldest first.
    order: BTreeMap<u64, String>,
    clock: u64,
    bytes: usize,
}

/// The `extensions.persistedQuery` of a request, checked.
struct Persisted {
    hash: String,
}

fn refuse(message: impl Into<String>, code: &str) -> GraphQLError {
    GraphQLError::new(message, code)
}

/// Reads `extensions.persistedQuery`: `None` when absent or null.
fn persisted_of(request: &OperationRequest) -> Result<Option<Persisted>, GraphQLError> {
    let Some(value) = request.extensions.get("persistedQuery") else {
        return Ok(None);
    };
    let object = match value {
        Value::Null => return Ok(None),
        Value::Object(object) => object,
        _ => {
            return Err(refuse(
                "extensions.persistedQuery must be an object {\"version\": 1, \"sha256Hash\": \"<hex>\"}",
                PERSISTED_QUERY_INVALID,
            ))
        }
    };
    if object.get("version").and_then(Value::as_u64) != Some(1) {
        return Err(refuse(
            "Unsupported persisted query version: extensions.persistedQuery.version must be 1",
            PERSISTED_QUERY_INVALID,
        ));
    }
    match object.get("sha256Hash").and_then(Value::as_str) {
        Some(hash) if !hash.is_empty() && hash.len() <= MAX_ID_BYTES => Ok(Some(Persisted {
            hash: hash.to_owned(),
        })),
        _ => Err(refuse(
            format!("extensions.persistedQuery.sha256Hash must be a string of 1 to {MAX_ID_BYTES} bytes"),
            PERSISTED_QUERY_INVALID,
        )),
    }
}

impl PersistedQueries {
    /// A store with `config`; `manifest` pre-registers its documents
    /// (automatic mode) or is the allow-list (trusted mode: without one
    /// nothing runs, so the host requires it).
    pub fn new(config: PersistedConfig, manifest: Option<Arc<Manifest>>) -> Self {
        PersistedQueries {
            config,
            manifest,
            cache: HashMap::new(),
            order: BTreeMap::new(),
            clock: 0,
            bytes: 0,
        }
    }

    /// The store's mode.
    pub fn mode(&self) -> PersistedMode {
        self.config.mode
    }

    /// Documents in the APQ cache.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// Whether the APQ cache is empty.
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// Bytes (hashes plus documents) in the APQ cache.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Applies the persisted-query rule to `request` before it is prepared:
    /// fills in `request.query` from a hash, checks a hash sent with a
    /// query, registers it (automatic mode) and enforces the manifest
    /// (trusted mode). An `Err` is the request's one error; it does not run.
    pub fn resolve(&mut self, request: &mut OperationRequest) -> Result<(), GraphQLError> {
        let persisted = persisted_of(request)?;
        let has_query = !request.query.is_empty();
        match (self.config.mode, persisted) {
            (PersistedMode::Off, Some(_)) if !has_query => Err(refuse(
                "PersistedQueryNotSupported",
                PERSISTED_QUERY_NOT_SUPPORTED,
            )),
            (PersistedMode::Off, _) | (PersistedMode::Automatic, None) => Ok(()),
            (PersistedMode::Automatic, Some(Persisted { hash })) => {
                if has_query {
                    if sha256_hex(&request.query) != hash.to_ascii_lowercase() {
                        return Err(refuse(
                            "provided sha does not match query",
                            PERSISTED_QUERY_HASH_MISMATCH,
                        ));
                    }
                    self.register(hash.to_ascii_lowercase(), &request.query);
                    return Ok(());
                }
                if let Some(document) = self.manifest.as_ref().and_then(|m| m.get(&hash)) {
                    request.query = document.to_owned();
                    return Ok(());
                }
                match self.lookup(&hash.to_ascii_lowercase()) {
                    Some(document) => {
                        request.query = document.to_string();
                        Ok(())
                    }
                    None => Err(refuse("PersistedQueryNotFound", PERSISTED_QUERY_NOT_FOUND)),
                }
            }
            (PersistedMode::Trusted, persisted) => {
                let manifest = self.manifest.as_deref();
                match persisted {
                    Some(Persisted { hash }) => match manifest.and_then(|m| m.get(&hash)) {
                        None => Err(refuse(
                            format!("Persisted query '{hash}' not found in the persisted query list (trusted documents: persisted_queries.manifest)"),
                            PERSISTED_QUERY_NOT_IN_LIST,
                        )),
                        Some(document) if has_query && request.query != document => Err(refuse(
                            format!("provided sha does not match query: the query sent with id '{hash}' is not the document the manifest lists for it"),
                            PERSISTED_QUERY_HASH_MISMATCH,
                        )),
                        Some(document) => {
                            if !has_query {
                                request.query = document.to_owned();
                            }
                            Ok(())
                        }
                    },
                    None if manifest.is_some_and(|m| m.lists(&request.query)) => Ok(()),
                    None => Err(refuse(
                        "trusted documents only: this document is not in the manifest (persisted_queries.manifest); send a listed document or its id in extensions.persistedQuery.sha256Hash",
                        QUERY_NOT_IN_SAFELIST,
                    )),
                }
            }
        }
    }

    fn touch(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn lookup(&mut self, hash: &str) -> Option<Arc<str>> {
        let stamp = self.touch();
        let entry = self.cache.get_mut(hash)?;
        self.order.remove(&entry.used);
        entry.used = stamp;
        self.order.insert(stamp, hash.to_owned());
        Some(entry.document.clone())
    }

    fn register(&mut self, hash: String, document: &str) {
        let size = hash.len() + document.len();
        if self.config.max_entries == 0 || size > self.config.max_bytes {
            return;
        }
        if self.lookup(&hash).is_some() {
            return;
        }
        let stamp = self.touch();
        self.order.insert(stamp, hash.clone());
        self.cache.insert(
            hash,
            Entry {
                document: document.into(),
                used: stamp,
            },
        );
        self.bytes += size;
        while self.cache.len() > self.config.max_entries || self.bytes > self.config.max_bytes {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(entry) = self.cache.remove(&oldest) {
                self.bytes -= oldest.len() + entry.document.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map};

    fn request(query: &str, hash: Option<&str>) -> OperationRequest {
        let mut extensions = Map::new();
        if let Some(hash) = hash {
            extensions.insert(
                "persistedQuery".into(),
                json!({"version": 1, "sha256Hash": hash}),
            );
        }
        OperationRequest {
            id: "1".into(),
            query: query.into(),
            operation_name: None,
            variables: Map::new(),
            extensions,
        }
    }

    fn automatic(max_entries: usize, max_bytes: usize) -> PersistedQueries {
        PersistedQueries::new(
            PersistedConfig {
                mode: PersistedMode::Automatic,
                max_entries,
                max_bytes,
            },
            None,
        )
    }

    #[test]
    fn sha256_is_the_hex_apollo_sends() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // The well-known digest of the empty string.
        assert_eq!(
            sha256_hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn automatic_not_found_then_register_then_hit() {
        let mut store = automatic(10, 10_000);
        let query = "{ hello }";
        let hash = sha256_hex(query);
        let err = store.resolve(&mut request("", Some(&hash))).unwrap_err();
        assert_eq!(err.message, "PersistedQueryNotFound");
        assert_eq!(err.code, PERSISTED_QUERY_NOT_FOUND);
        store.resolve(&mut request(query, Some(&hash))).unwrap();
        assert_eq!(store.len(), 1);
        let mut again = request("", Some(&hash.to_ascii_uppercase()));
        store.resolve(&mut again).unwrap();
        assert_eq!(again.query, query);
        let err = store
            .resolve(&mut request("{ other }", Some(&hash)))
            .unwrap_err();
        assert_eq!(err.code, PERSISTED_QUERY_HASH_MISMATCH);
        // No extension: untouched.
        let mut plain = request("{ x }", None);
        store.resolve(&mut plain).unwrap();
        assert_eq!(plain.query, "{ x }");
    }

    #[test]
    fn malformed_extension_is_refused() {
        let mut store = automatic(10, 10_000);
        for bad in [
            json!("x"),
            json!({"version": 2, "sha256Hash": "ab"}),
            json!({"version": 1}),
            json!({"version": 1, "sha256Hash": ""}),
        ] {
            let mut r = request("", None);
            r.extensions.insert("persistedQuery".into(), bad);
            assert_eq!(
                store.resolve(&mut r).unwrap_err().code,
                PERSISTED_QUERY_INVALID
            );
        }
    }

    #[test]
    fn cache_is_lru_bounded_by_entries_and_bytes() {
        let mut store = automatic(2, 10_000);
        let docs = ["{ a }", "{ b }", "{ c }"];
        let hashes: Vec<String> = docs.iter().map(|d| sha256_hex(d)).collect();
        store
            .resolve(&mut request(docs[0], Some(&hashes[0])))
            .unwrap();
        store
            .resolve(&mut request(docs[1], Some(&hashes[1])))
            .unwrap();
        // Use a: b is now the least recently used.
        store.resolve(&mut request("", Some(&hashes[0]))).unwrap();
        store
            .resolve(&mut request(docs[2], Some(&hashes[2])))
            .unwrap();
        assert_eq!(store.len(), 2);
        assert!(store.resolve(&mut request("", Some(&hashes[0]))).is_ok());
        assert!(store.resolve(&mut request("", Some(&hashes[1]))).is_err());
        assert_eq!(store.bytes(), 2 * (64 + 5));

        let mut small = automatic(100, 2 * (64 + 5));
        for (doc, hash) in docs.iter().zip(&hashes) {
            small.resolve(&mut request(doc, Some(hash))).unwrap();
        }
        assert_eq!(small.len(), 2);
        assert!(small.bytes() <= 2 * (64 + 5));
        // Too large for the cache: runs, not registered.
        let big = format!("{{ {} }}", "a ".repeat(200));
        let mut tiny = automatic(100, 100);
        tiny.resolve(&mut request(&big, Some(&sha256_hex(&big))))
            .unwrap();
        assert!(tiny.is_empty());
        let mut none = automatic(0, 100);
        none.resolve(&mut request("{ a }", Some(&hashes[0])))
            .unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn off_refuses_a_hash_alone() {
        let mut store = PersistedQueries::new(
            PersistedConfig {
                mode: PersistedMode::Off,
                ..PersistedConfig::default()
            },
            None,
        );
        let err = store.resolve(&mut request("", Some("ab"))).unwrap_err();
        assert_eq!(err.message, "PersistedQueryNotSupported");
        store.resolve(&mut request("{ a }", Some("ab"))).unwrap();
        assert!(store.is_empty());
    }

    #[test]
    fn manifests_parse_in_both_formats_with_positions() {
        let apollo = r#"{
  "format": "apollo-persisted-query-manifest",
  "version": 1,
  "operations": [
    {"id": "abc", "name": "A", "type": "query", "body": "query A { a }"}
  ]
}"#;
        let m = Manifest::parse(apollo).unwrap();
        assert_eq!(m.get("abc"), Some("query A { a }"));
        assert!(m.lists("query A { a }"));
        let map = Manifest::parse(r#"{"h1": "{ a }", "h2": "{ b }"}"#).unwrap();
        assert_eq!(map.len(), 2);

        let err = Manifest::parse("{\n  \"h1\": 3\n}").unwrap_err();
        assert_eq!(err.line, 2, "{err}");
        let err = Manifest::parse("{\n \"h1\": \"{ a }\",\n}").unwrap_err();
        assert_eq!(err.line, 3, "{err}");
        let err = Manifest::parse(
            "{\"format\": \"apollo-persisted-query-manifest\", \"version\": 1,\n\"operations\": [{\"id\": \"a\"}]}",
        )
        .unwrap_err();
        assert_eq!(err.line, 2, "{err}");
        assert!(err.message.contains("body"), "{err}");
        let err = Manifest::parse(
            "{\"format\": \"apollo-persisted-query-manifest\", \"version\": 1, \"operations\": [\n{\"id\": \"a\", \"body\": \"{ a }\"},\n{\"id\": \"a\", \"body\": \"{ b }\"}]}",
        )
        .unwrap_err();
        assert!(err.message.contains("twice"), "{err}");
        let err = Manifest::parse("{\n\n\"h\": \"  \"}").unwrap_err();
        assert_eq!((err.line, err.column), (3, 1), "{err}");
        assert!(Manifest::parse("[]").is_err());
        assert!(
            Manifest::parse(r#"{"format": "other", "version": 1, "operations": []}"#)
                .unwrap_err()
                .message
                .contains("format")
        );
    }

    #[test]
    fn trusted_runs_only_what_the_manifest_lists() {
        let manifest = Manifest::parse(r#"{"id-a": "{ a }"}"#).unwrap();
        let mut store = PersistedQueries::new(
            PersistedConfig {
                mode: PersistedMode::Trusted,
                ..PersistedConfig::default()
            },
            Some(Arc::new(manifest)),
        );
        let mut by_id = request("", Some("id-a"));
        store.resolve(&mut by_id).unwrap();
        assert_eq!(by_id.query, "{ a }");
        store.resolve(&mut request("{ a }", None)).unwrap();
        store.resolve(&mut request("{ a }", Some("id-a"))).unwrap();
        assert_eq!(
            store.resolve(&mut request("{ b }", None)).unwrap_err().code,
            QUERY_NOT_IN_SAFELIST
        );
        assert_eq!(
            store
                .resolve(&mut request("", Some("id-b")))
                .unwrap_err()
                .code,
            PERSISTED_QUERY_NOT_IN_LIST
        );
        let b = "{ b }";
        assert_eq!(
            store
                .resolve(&mut request(b, Some(&sha256_hex(b))))
                .unwrap_err()
                .code,
            PERSISTED_QUERY_NOT_IN_LIST
        );
        assert_eq!(
            store
                .resolve(&mut request("{ b }", Some("id-a")))
                .unwrap_err()
                .code,
            PERSISTED_QUERY_HASH_MISMATCH
        );
        assert!(store.is_empty());
    }

    #[test]
    fn automatic_mode_serves_manifest_ids_too() {
        let manifest = Manifest::parse(r#"{"id-a": "{ a }"}"#).unwrap();
        let mut store = PersistedQueries::new(PersistedConfig::default(), Some(Arc::new(manifest)));
        let mut by_id = request("", Some("id-a"));
        store.resolve(&mut by_id).unwrap();
        assert_eq!(by_id.query, "{ a }");
    }
}
