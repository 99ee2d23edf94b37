//! Reading the server's numbers: its Prometheus `/metrics` over a plain
//! HTTP/1.0 GET, and its CPU time from `/proc/PID/stat`.

use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
use std::collections::BTreeMap;
use std::time::Duration;

/// The largest /metrics answer accepted.
const MAX_METRICS_BYTES: usize = 4 * 1024 * 1024;

/// Gauge and counter values by series name (with labels, as written).
pub type Values = BTreeMap<String, f64>;

/// A parsed `http://host:port/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// `host:port`.
    pub authority: String,
    /// The path with its query, from `/`.
    pub path: String,
}

impl HttpUrl {
    /// Parses `http://authority/path` (port 80 when absent).
    pub fn parse(url: &str) -> Result<HttpUrl, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("{url}: no host"));
        }
        let authority = if authority.contains(':') {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(HttpUrl {
            authority,
            path: path.to_owned(),
        })
    }
}

/// GETs `url` and parses the body as Prometheus text, within `timeout`.
pub async fn fetch_metrics(url: &HttpUrl, timeout: Duration) -> Result<Values, String> {
    let fetch = async {
        let mut stream = smol::net::TcpStream::connect(url.authority.as_str())
            .await
            .map_err(|e| format!("connecting to {}: {e}", url.authority))?;
        // HTTP/1.0: the answer is delimited by the close, never chunked.
        let request = format!(
            "GET {} HTTP/1.0\r\nHost: {}\r\nAccept: text/plain\r\n\r\n",
            url.path, url.authority
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("writing the request: {e}"))?;
        let mut body = Vec::with_capacity(4096);
        let mut limited = (&mut stream).take(MAX_METRICS_BYTES as u64 + 1);
        limited
            .read_to_end(&mut body)
            .await
            .map_err(|e| format!("reading the answer: {e}"))?;
        if body.len() > MAX_METRICS_BYTES {
            return Err(format!(
                "the answer is larger than {MAX_METRICS_BYTES} bytes"
            ));
        }
        let text = String::from_utf8(body).map_err(|_| "the answer is not UTF-8".to_owned())?;
        parse_response(&text)
    };
    let expired = async {
        smol::Timer::after(timeout).await;
        Err(format!("no answer within {timeout:?}"))
    };
    fetch.or(expired).await
}

/// Splits an HTTP/1.x response, checks for 200 and parses the body.
pub fn parse_response(text: &str) -> Result<Values, String> {
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| "the answer has no header end".to_owned())?;
    let status_line = head.lines().next().unwrap_or_default();
    let status = status_line.split_whitespace().nth(1).unwrap_or_default();
    if status != "200" {
        return Err(format!("the server answered {status_line:?}"));
    }
    let chunked = head.lines().skip(1).any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.trim().eq_ignore_ascii_case("chunked")
        })
    });
    if chunked {
        Ok(parse_prometheus(&dechunk(body)?))
    } else {
        Ok(parse_prometheus(body))
    }
}

/// Decodes a chunked body (servers may chunk even an HTTP/1.0 answer).
fn dechunk(mut body: &str) -> Result<String, String> {
    let mut out = String::new();
    loop {
        let (size_line, rest) = body
            .split_once("\r\n")
            .ok_or_else(|| "truncated chunk size".to_owned())?;
        let size_text = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest
            .get(..size)
            .ok_or_else(|| "truncated chunk".to_owned())?;
        out.push_str(chunk);
        body = rest[size..].strip_prefix("\r\n").unwrap_or(&rest[size..]);
    }
}

/// Parses Prometheus text exposition: `name value` or `name{labels} value`
/// per line, comments skipped; unparsable lines are ignored.
pub fn parse_prometheus(text: &str) -> Values {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            // A timestamp may follow the value; labels may hold spaces.
            let name_end = match line.find('{') {
                Some(brace) => brace + line[brace..].find('}')? + 1,
                None => line.find(char::is_whitespace)?,
            };
            let (name, rest) = line.split_at(name_end);
            let value = rest.split_whitespace().next()?;
            Some((name.to_owned(), value.parse::<f64>().ok()?))
        })
        .collect()
}

/// CPU seconds (user + system) used so far by process `pid` (`None`: this
/// process), or `None` where /proc cannot tell.
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    parse_cpu_ticks(&stat).map(|ticks| ticks as f64 / clock_ticks_per_second())
}

/// utime + stime from a /proc/PID/stat line, in clock ticks.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: fields
    // are counted after its closing parenthesis. utime and stime are
    // fields 14 and 15, i.e. the 12th and 13th after the name.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// CPU seconds summed over `pids`; `None` when there are none or one of
/// them cannot be read.
pub fn cpu_seconds_of(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|pid| cpu_seconds(Some(*pid))).sum()
}

/// Resident memory of process `pid` in bytes, from /proc/PID/status.
pub fn resident_bytes(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_text() {
        let text = "# HELP a A.\n# TYPE a gauge\na 3\nb{code=\"7\",x=\"y z\"} 2.5 1700000000\n\nc NaN\nbroken\n";
        let values = parse_prometheus(text);
        assert_eq!(values.get("a"), Some(&3.0));
        assert_eq!(values.get("b{code=\"7\",x=\"y z\"}"), Some(&2.5));
        assert!(values.get("c").is_some_and(|v| v.is_nan()));
        assert!(!values.contains_key("broken"));
    }

    #[test]
    fn parses_responses_plain_and_chunked() {
        let plain = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nx 1\n";
        assert_eq!(parse_response(plain).unwrap().get("x"), Some(&1.0));
        let chunked =
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nx 1\n\r\n4\r\ny 2\n\r\n0\r\n\r\n";
        let values = parse_response(chunked).unwrap();
        assert_eq!(values.get("x"), Some(&1.0));
        assert_eq!(values.get("y"), Some(&2.0));
        let error = parse_response("HTTP/1.1 404 Not Found\r\n\r\nno").unwrap_err();
        assert!(error.contains("404"), "{error}");
        assert!(parse_response("garbage").is_err());
    }

    #[test]
    fn parses_urls() {
        let url = HttpUrl::parse("http://127.0.0.1:9100/metrics").unwrap();
        assert_eq!(url.authority, "127.0.0.1:9100");
        assert_eq!(url.path, "/metrics");
        assert_eq!(
            HttpUrl::parse("http://localhost").unwrap().authority,
            "localhost:80"
        );
        assert!(HttpUrl::parse("https://x/metrics").is_err());
    }

    #[test]
    fn reads_cpu_and_memory_of_this_process() {
        let stat = "1234 (a (weird) name) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
        assert!(cpu_seconds(None).is_some());
        assert!(resident_bytes(None).is_some_and(|rss| rss > 0));
        assert!(cpu_seconds(Some(u32::MAX)).is_none());
        let me = std::process::id();
        assert!(cpu_seconds_of(&[me, me]).is_some());
        assert!(cpu_seconds_of(&[]).is_none());
        assert!(cpu_seconds_of(&[me, u32::MAX]).is_none());
    }

    #[test]
    fn fetches_from_a_real_listener() {
        smol::block_on(async {
            let listener = smol::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = smol::spawn(async move {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 1024];
                let n = stream.read(&mut buf).await.unwrap();
                let request = String::from_utf8_lossy(&buf[..n]).to_string();
                stream
                    .write_all(b"HTTP/1.0 200 OK\r\n\r\nprocess_open_fds 7\n")
                    .await
                    .unwrap();
                request
            });
            let url = HttpUrl::parse(&format!("http://{addr}/metrics")).unwrap();
            let values = fetch_metrics(&url, Duration::from_secs(5)).await.unwrap();
            assert_eq!(values.get("process_open_fds"), Some(&7.0));
            assert!(server.await.starts_with("GET /metrics HTTP/1.0\r\n"));
        });
    }
}
