//! `/simulator`: the browser simulator page (`wasm/www`, with the wasm
//! build in `wasm/www/pkg` made by `wasm/build.sh`), served as static files
//! from a directory found at run time, so a build made after the gateway
//! started is picked up and a gateway without one still runs.
//!
//! The directory is, in order: `$TERMINUS_SIMULATOR_DIR`; `wasm/www` in an
//! ancestor of the running executable (a `target/*/terminus` in the repo);
//! `wasm/www` of the source tree the binary was built from. A candidate
//! counts only when it holds `index.html` and `pkg/`.
//!
//! The router hooks it in with one arm:
//! `(&Method::GET, p) if simulator::is_simulator_path(p) => simulator::serve(p).await`.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use std::path::{Component, Path, PathBuf};

/// The environment variable naming the simulator's directory.
pub const DIR_ENV: &str = "TERMINUS_SIMULATOR_DIR";

/// The URL prefix.
pub const PREFIX: &str = "/simulator";

/// Largest file served (the release wasm is well under this).
const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// Whether `path` belongs to the simulator.
pub fn is_simulator_path(path: &str) -> bool {
    path == PREFIX || path.starts_with("/simulator/")
}

fn is_built(dir: &Path) -> bool {
    dir.join("index.html").is_file() && dir.join("pkg").is_dir()
}

/// The simulator's directory, if one is built (see the module docs).
pub fn locate() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(DIR_ENV) {
        // An explicit choice is not second-guessed by the fallbacks.
        let dir = PathBuf::from(dir);
        return is_built(&dir).then_some(dir);
    }
    let from_exe = std::env::current_exe().ok().and_then(|exe| {
        exe.ancestors()
            .skip(1)
            .map(|a| a.join("wasm").join("www"))
            .find(|d| is_built(d))
    });
    from_exe.or_else(|| {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wasm/www");
        is_built(&source).then_some(source)
    })
}

/// The response to `GET path` (a simulator path) from the located
/// directory.
pub async fn serve(path: &str) -> Response<Full<Bytes>> {
    serve_from(locate().as_deref(), path).await
}

/// The response to `GET path` from `dir` (`None`: not built).
pub async fn serve_from(dir: Option<&Path>, path: &str) -> Response<Full<Bytes>> {
    if path == PREFIX {
        // Relative URLs in the page (app.js, pkg/) need the trailing slash.
        let mut response = text(StatusCode::PERMANENT_REDIRECT, "see /simulator/\n");
        response
            .headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static("/simulator/"));
        return response;
    }
    let Some(dir) = dir else {
        return text(
            StatusCode::NOT_FOUND,
            "The simulator is not built: run wasm/build.sh in the Terminus repository, \
             or set TERMINUS_SIMULATOR_DIR to a directory holding index.html and pkg/.\n",
        );
    };
    let relative = path.trim_start_matches(PREFIX).trim_start_matches('/');
    let relative = if relative.is_empty() || relative.ends_with('/') {
        format!("{relative}index.html")
    } else {
        relative.to_owned()
    };
    let relative = Path::new(&relative);
    // Only plain names: no `..`, no root, no drive prefix can leave `dir`.
    if !relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    let file = dir.join(relative);
    match smol::fs::metadata(&file).await {
        Ok(meta) if meta.is_file() && meta.len() <= MAX_FILE_BYTES => {}
        Ok(meta) if meta.is_file() => {
            return text(StatusCode::INTERNAL_SERVER_ERROR, "file too large\n");
        }
        _ => return text(StatusCode::NOT_FOUND, "not found\n"),
    }
    match smol::fs::read(&file).await {
        Ok(bytes) => {
            let mut response = Response::new(Full::new(Bytes::from(bytes)));
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, content_type(relative));
            // A rebuilt pkg/ must not be mixed with a cached older one.
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            response
        }
        Err(error) => {
            tracing::warn!(file = %file.display(), %error, "cannot read a simulator file");
            text(StatusCode::NOT_FOUND, "not found\n")
        }
    }
}

fn content_type(path: &Path) -> HeaderValue {
    let kind = match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        // Browsers compile streamed wasm only with this type.
        Some("wasm") => "application/wasm",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    };
    HeaderValue::from_static(kind)
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
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

    async fn get(dir: Option<&Path>, path: &str) -> (StatusCode, String, Vec<u8>) {
        let response = serve_from(dir, path).await;
        let status = response.status();
        let kind = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, kind, body.to_vec())
    }

    #[test]
    fn serves_the_page_and_the_wasm_with_their_types() {
        smol::block_on(async {
            let dir = site();
            let (status, kind, body) = get(Some(&dir), "/simulator/").await;
            assert_eq!(status, StatusCode::OK);
            assert!(kind.starts_with("text/html"));
            assert_eq!(body, b"<!doctype html>page");
            let (status, kind, body) =
                get(Some(&dir), "/simulator/pkg/terminus_wasm_bg.wasm").await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(kind, "application/wasm");
            assert_eq!(body, b"\0asm");
            let (_, kind, _) = get(Some(&dir), "/simulator/app.js").await;
            assert!(kind.starts_with("text/javascript"));
            let response = serve_from(Some(&dir), "/simulator").await;
            assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
            assert_eq!(response.headers()[header::LOCATION], "/simulator/");
            std::fs::remove_dir_all(dir).unwrap();
        });
    }

    #[test]
    fn nothing_outside_the_directory_is_reachable() {
        smol::block_on(async {
            let dir = site();
            for path in [
                "/simulator/../Cargo.toml",
                "/simulator/pkg/../../etc/passwd",
                "/simulator//etc/passwd",
                "/simulator/missing.js",
                "/simulator/pkg",
            ] {
                let (status, _, _) = get(Some(&dir), path).await;
                assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            }
            std::fs::remove_dir_all(dir).unwrap();
        });
    }

    #[test]
    fn an_unbuilt_simulator_says_how_to_build_it() {
        smol::block_on(async {
            let (status, _, body) = get(None, "/simulator/").await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            assert!(String::from_utf8(body).unwrap().contains("wasm/build.sh"));
            assert!(is_simulator_path("/simulator"));
            assert!(is_simulator_path("/simulator/app.js"));
            assert!(!is_simulator_path("/simulatorx"));
        });
    }
}
