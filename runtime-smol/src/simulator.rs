//! `/simulator`: the browser simulator page, served from a copy compiled
//! into the binary, so `terminus demo` and `terminus serve` have it with
//! nothing but cargo installed.
//!
//! The copy is `wasm/www` as committed: the page (`index.html`, `app.js`,
//! `style.css`) and `pkg/`, the wasm build of the core and its JS glue made
//! by `wasm/build.sh` (`wasm-bindgen --target web`). `wasm/build.sh --check`
//! (run by `scripts/ci.d/70-browser.sh`) rebuilds `pkg/` from source and
//! fails if the committed files differ, so the copy cannot drift from the
//! code; a test below fails if a file of `wasm/www` is missing from
//! [`EMBEDDED`].
//!
//! For development, `$TERMINUS_SIMULATOR_DIR` names a directory served
//! instead, read on every request (so a `wasm/build.sh` after the gateway
//! started is picked up); it must hold `index.html` and `pkg/`.
//!
//! The router hooks it in with one arm:
//! `(&Method::GET, p) if simulator::is_simulator_path(p) => simulator::serve(p).await`.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use std::path::{Component, Path, PathBuf};

/// The environment variable naming a directory served instead of the
/// embedded copy (development only).
pub const DIR_ENV: &str = "TERMINUS_SIMULATOR_DIR";

/// The URL prefix.
pub const PREFIX: &str = "/simulator";

/// Largest file served from `$TERMINUS_SIMULATOR_DIR` (the release wasm is
/// well under this).
const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;

macro_rules! embed {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_bytes!(concat!("../../wasm/www/", $path)))),*]
    };
}

/// Every file of `wasm/www`, by its path relative to it, as compiled into
/// the binary.
pub const EMBEDDED: &[(&str, &[u8])] = embed![
    "index.html",
    "app.js",
    "style.css",
    "pkg/terminus_wasm.js",
    "pkg/terminus_wasm_bg.wasm",
    "pkg/toolchain.txt",
];

/// Where the simulator's files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The copy compiled into the binary ([`EMBEDDED`]).
    Embedded,
    /// A directory named by `$TERMINUS_SIMULATOR_DIR`.
    Dir(PathBuf),
}

/// Whether `path` belongs to the simulator.
pub fn is_simulator_path(path: &str) -> bool {
    path == PREFIX || path.starts_with("/simulator/")
}

/// The source in use: `$TERMINUS_SIMULATOR_DIR` if set, else the embedded
/// copy.
pub fn source() -> Source {
    match std::env::var_os(DIR_ENV) {
        Some(dir) if !dir.is_empty() => Source::Dir(PathBuf::from(dir)),
        _ => Source::Embedded,
    }
}

/// The response to `GET path` (a simulator path) from [`source`].
pub async fn serve(path: &str) -> Response<Full<Bytes>> {
    serve_from(&source(), path).await
}

/// The response to `GET path` (a simulator path) from `source`.
pub async fn serve_from(source: &Source, path: &str) -> Response<Full<Bytes>> {
    if path == PREFIX {
        // Relative URLs in the page (app.js, pkg/) need the trailing slash.
        let mut response = text(StatusCode::PERMANENT_REDIRECT, "see /simulator/\n");
        response
            .headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static("/simulator/"));
        return response;
    }
    let relative = path.trim_start_matches(PREFIX).trim_start_matches('/');
    let relative = if relative.is_empty() || relative.ends_with('/') {
        format!("{relative}index.html")
    } else {
        relative.to_owned()
    };
    // Only plain names: no `..`, no root, no drive prefix can leave the
    // directory (and none names an embedded file).
    if !Path::new(&relative)
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    match source {
        Source::Embedded => match EMBEDDED.iter().find(|(name, _)| *name == relative) {
            Some((_, bytes)) => file(&relative, Bytes::from_static(bytes)),
            None => text(StatusCode::NOT_FOUND, "not found\n"),
        },
        Source::Dir(dir) => serve_dir(dir, &relative).await,
    }
}

async fn serve_dir(dir: &Path, relative: &str) -> Response<Full<Bytes>> {
    if !(dir.join("index.html").is_file() && dir.join("pkg").is_dir()) {
        return text(
            StatusCode::NOT_FOUND,
            format!(
                "{DIR_ENV} is {}, which holds no index.html and pkg/: run wasm/build.sh \
                 there, or unset {DIR_ENV} to serve the copy built into this binary.\n",
                dir.display()
            ),
        );
    }
    let path = dir.join(relative);
    match smol::fs::metadata(&path).await {
        Ok(meta) if meta.is_file() && meta.len() <= MAX_FILE_BYTES => {}
        Ok(meta) if meta.is_file() => {
            return text(StatusCode::INTERNAL_SERVER_ERROR, "file too large\n");
        }
        _ => return text(StatusCode::NOT_FOUND, "not found\n"),
    }
    match smol::fs::read(&path).await {
        Ok(bytes) => file(relative, Bytes::from(bytes)),
        Err(error) => {
            tracing::warn!(file = %path.display(), %error, "cannot read a simulator file");
            text(StatusCode::NOT_FOUND, "not found\n")
        }
    }
}

fn file(relative: &str, bytes: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(bytes));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type(relative));
    // A rebuilt pkg/ (a new binary, or a new build in the directory) must
    // not be mixed with a cached older one.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn content_type(path: &str) -> HeaderValue {
    let kind = match Path::new(path).extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        // Browsers compile streamed wasm only with this type.
        Some("wasm") => "application/wasm",
        Some("json") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    };
    HeaderValue::from_static(kind)
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn site() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "terminus-simulator-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(dir.join("pkg")).unwrap();
        std::fs::write(dir.join("index.html"), "<!doctype html>page").unwrap();
        std::fs::write(dir.join("pkg/terminus_wasm_bg.wasm"), b"\0asm").unwrap();
        std::fs::write(dir.join("app.js"), "import x from './pkg/x.js';").unwrap();
        dir
    }

    async fn get(source: &Source, path: &str) -> (StatusCode, String, Vec<u8>) {
        let response = serve_from(source, path).await;
        let status = response.status();
        let kind = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, kind, body.to_vec())
    }

    /// Every file under `dir`, by its `/`-separated path relative to `dir`.
    fn files_under(dir: &Path, prefix: &str, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = format!("{prefix}{}", entry.file_name().to_str().unwrap());
            if entry.file_type().unwrap().is_dir() {
                files_under(&entry.path(), &format!("{name}/"), out);
            } else {
                out.push(name);
            }
        }
    }

    #[test]
    fn every_file_of_wasm_www_is_embedded() {
        let www = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wasm/www");
        let mut on_disk = Vec::new();
        files_under(&www, "", &mut on_disk);
        on_disk.sort();
        let mut embedded: Vec<String> = EMBEDDED.iter().map(|(n, _)| n.to_string()).collect();
        embedded.sort();
        assert_eq!(
            embedded, on_disk,
            "wasm/www and simulator::EMBEDDED must list the same files"
        );
    }

    #[test]
    fn the_embedded_page_is_served_with_its_types() {
        smol::block_on(async {
            let (status, kind, body) = get(&Source::Embedded, "/simulator/").await;
            assert_eq!(status, StatusCode::OK);
            assert!(kind.starts_with("text/html"));
            assert!(String::from_utf8(body)
                .unwrap()
                .contains("Terminus simulator"));
            let (status, kind, body) =
                get(&Source::Embedded, "/simulator/pkg/terminus_wasm_bg.wasm").await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(kind, "application/wasm");
            assert!(body.starts_with(b"\0asm"), "a wasm module");
            assert!(
                body.len() > 100_000,
                "the release build, {} bytes",
                body.len()
            );
            let (status, kind, body) =
                get(&Source::Embedded, "/simulator/pkg/terminus_wasm.js").await;
            assert_eq!(status, StatusCode::OK);
            assert!(kind.starts_with("text/javascript"));
            assert!(String::from_utf8(body)
                .unwrap()
                .contains("terminus_wasm_bg.wasm"));
            let (status, kind, _) = get(&Source::Embedded, "/simulator/style.css").await;
            assert_eq!(status, StatusCode::OK);
            assert!(kind.starts_with("text/css"));
            let response = serve_from(&Source::Embedded, "/simulator").await;
            assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
            assert_eq!(response.headers()[header::LOCATION], "/simulator/");
        });
    }

    #[test]
    fn a_directory_overrides_the_embedded_copy() {
        smol::block_on(async {
            let dir = site();
            let source = Source::Dir(dir.clone());
            let (status, kind, body) = get(&source, "/simulator/").await;
            assert_eq!(status, StatusCode::OK);
            assert!(kind.starts_with("text/html"));
            assert_eq!(body, b"<!doctype html>page");
            let (status, kind, body) = get(&source, "/simulator/pkg/terminus_wasm_bg.wasm").await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(kind, "application/wasm");
            assert_eq!(body, b"\0asm");
            let (_, kind, _) = get(&source, "/simulator/app.js").await;
            assert!(kind.starts_with("text/javascript"));
            let response = serve_from(&source, "/simulator").await;
            assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
            std::fs::remove_dir_all(dir).unwrap();
        });
    }

    #[test]
    fn nothing_outside_the_page_is_reachable() {
        smol::block_on(async {
            let dir = site();
            for source in [Source::Dir(dir.clone()), Source::Embedded] {
                for path in [
                    "/simulator/../Cargo.toml",
                    "/simulator/pkg/../../etc/passwd",
                    "/simulator/pkg/../index.html",
                    "/simulator//etc/passwd",
                    "/simulator/missing.js",
                    "/simulator/pkg",
                ] {
                    let (status, _, _) = get(&source, path).await;
                    assert_eq!(status, StatusCode::NOT_FOUND, "{source:?} {path}");
                }
            }
            std::fs::remove_dir_all(dir).unwrap();
        });
    }

    #[test]
    fn an_unbuilt_override_directory_says_what_to_do() {
        smol::block_on(async {
            let empty = std::env::temp_dir()
                .join(format!("terminus-simulator-empty-{}", std::process::id()));
            std::fs::create_dir_all(&empty).unwrap();
            let (status, _, body) = get(&Source::Dir(empty.clone()), "/simulator/").await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            let body = String::from_utf8(body).unwrap();
            assert!(body.contains("wasm/build.sh"), "{body}");
            assert!(body.contains(DIR_ENV), "{body}");
            std::fs::remove_dir(empty).unwrap();
            assert!(is_simulator_path("/simulator"));
            assert!(is_simulator_path("/simulator/app.js"));
            assert!(!is_simulator_path("/simulatorx"));
        });
    }
}
