//! gRPC over HTTP/2 framing: the 5-byte length prefix of each message, the
//! `grpc-timeout` header, and the `grpc-status` / `grpc-message` metadata.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::HeaderMap;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};
use std::time::Duration;
use terminus_core::{FailureKind, UpstreamFailure};

/// `content-type` of gRPC requests and responses.
pub(crate) const CONTENT_TYPE: &str = "application/grpc";

/// The largest message either side accepts (gRPC's customary default).
pub(crate) const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// gRPC status codes used by Terminus.
pub(crate) mod code {
    pub(crate) const OK: u32 = 0;
    pub(crate) const INVALID_ARGUMENT: u32 = 3;
    pub(crate) const DEADLINE_EXCEEDED: u32 = 4;
    pub(crate) const RESOURCE_EXHAUSTED: u32 = 8;
    pub(crate) const UNIMPLEMENTED: u32 = 12;
    pub(crate) const INTERNAL: u32 = 13;
    pub(crate) const UNAVAILABLE: u32 = 14;
}

/// Characters gRPC requires to be percent-encoded in `grpc-message`.
const GRPC_MESSAGE_ESCAPES: &AsciiSet = &CONTROLS.add(b'%');

/// Wraps one encoded message in a gRPC frame (uncompressed).
pub(crate) fn frame(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + message.len());
    out.put_u8(0);
    out.put_u32(message.len() as u32);
    out.put_slice(message);
    out.freeze()
}

/// Takes one complete frame's message out of `buffer`, if one has arrived.
pub(crate) fn take_frame(buffer: &mut BytesMut) -> Result<Option<Bytes>, String> {
    if buffer.len() < 5 {
        return Ok(None);
    }
    let compressed = buffer[0];
    let length = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]) as usize;
    if compressed != 0 {
        return Err("the upstream sent a compressed message, which was not negotiated".into());
    }
    if length > MAX_MESSAGE_BYTES {
        return Err(format!(
            "the upstream sent a message of {length} bytes, over the {MAX_MESSAGE_BYTES}-byte limit"
        ));
    }
    if buffer.len() < 5 + length {
        return Ok(None);
    }
    buffer.advance(5);
    Ok(Some(buffer.split_to(length).freeze()))
}

/// The `grpc-timeout` header value for `timeout` (milliseconds, rounded up,
/// at most the 8 digits the spec allows).
pub(crate) fn timeout_header(timeout: Duration) -> String {
    let millis = timeout.as_millis().clamp(1, 99_999_999);
    format!("{millis}m")
}

/// Reads a `grpc-timeout` header value (1 to 8 digits and a unit: `H`, `M`,
/// `S`, `m`, `u`, `n`), as a standard server does; `None` when malformed.
pub(crate) fn parse_timeout_header(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Percent-encodes a status message for the `grpc-message` trailer.
pub(crate) fn encode_message(message: &str) -> String {
    utf8_percent_encode(message, GRPC_MESSAGE_ESCAPES).to_string()
}

/// A status carried by `grpc-status` / `grpc-message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Status {
    pub(crate) code: u32,
    pub(crate) message: String,
}

impl Status {
    /// Reads the status from response headers or trailers, if present.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Option<Result<Status, String>> {
        let code = headers.get("grpc-status")?;
        let code = match code.to_str().ok().and_then(|text| text.trim().parse().ok()) {
            Some(code) => code,
            None => {
                return Some(Err(format!(
                    "the upstream sent an invalid grpc-status {code:?}"
                )))
            }
        };
        let message = headers
            .get("grpc-message")
            .and_then(|value| value.to_str().ok())
            .map(|text| percent_decode_str(text).decode_utf8_lossy().into_owned())
            .unwrap_or_default();
        Some(Ok(Status { code, message }))
    }

    /// The failure a non-OK status means for the caller.
    pub(crate) fn into_failure(self, upstream: &str) -> UpstreamFailure {
        let kind = match self.code {
            code::UNAVAILABLE => FailureKind::Unavailable,
            code::DEADLINE_EXCEEDED => FailureKind::Timeout,
            code::RESOURCE_EXHAUSTED => FailureKind::Busy,
            _ => FailureKind::Failed,
        };
        let message = if self.message.is_empty() {
            format!(
                "upstream {upstream} failed with gRPC status {} ({})",
                self.code,
                code_name(self.code)
            )
        } else {
            self.message
        };
        UpstreamFailure::new(kind, message)
    }
}

/// The canonical name of a gRPC status code.
pub(crate) fn code_name(code: u32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "unknown code",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_across_reads_are_reassembled() {
        let framed = frame(b"hello");
        let mut buffer = BytesMut::new();
        buffer.extend_from_slice(&framed[..3]);
        assert_eq!(take_frame(&mut buffer), Ok(None));
        buffer.extend_from_slice(&framed[3..]);
        buffer.extend_from_slice(&frame(b"")[..]);
        assert_eq!(
            take_frame(&mut buffer),
            Ok(Some(Bytes::from_static(b"hello")))
        );
        assert_eq!(take_frame(&mut buffer), Ok(Some(Bytes::new())));
        assert!(buffer.is_empty());
    }

    #[test]
    fn oversized_and_compressed_frames_are_refused() {
        let mut buffer = BytesMut::from(&[0u8, 0xff, 0xff, 0xff, 0xff][..]);
        assert!(take_frame(&mut buffer).is_err());
        let mut buffer = BytesMut::from(&[1u8, 0, 0, 0, 0][..]);
        assert!(take_frame(&mut buffer).is_err());
    }

    #[test]
    fn timeouts_round_trip() {
        assert_eq!(timeout_header(Duration::from_millis(1500)), "1500m");
        assert_eq!(timeout_header(Duration::from_micros(10)), "1m");
        for (text, expected) in [
            ("1500m", Some(Duration::from_millis(1500))),
            ("2H", Some(Duration::from_secs(7200))),
            ("3M", Some(Duration::from_secs(180))),
            ("4S", Some(Duration::from_secs(4))),
            ("5u", Some(Duration::from_micros(5))),
            ("6n", Some(Duration::from_nanos(6))),
            ("99999999S", Some(Duration::from_secs(99_999_999))),
            ("123456789S", None),
            ("m", None),
            ("10x", None),
            ("-1S", None),
            ("", None),
        ] {
            assert_eq!(parse_timeout_header(text), expected, "{text}");
        }
        let sent = timeout_header(Duration::from_millis(2500));
        assert_eq!(
            parse_timeout_header(&sent),
            Some(Duration::from_millis(2500))
        );
    }

    #[test]
    fn status_messages_are_percent_decoded_and_mapped() {
        let mut headers = HeaderMap::new();
        headers.insert("grpc-status", "13".parse().unwrap());
        headers.insert(
            "grpc-message",
            encode_message("tick 3 failed 100%\non purpose")
                .parse()
                .unwrap(),
        );
        let status = Status::from_headers(&headers).unwrap().unwrap();
        assert_eq!(status.message, "tick 3 failed 100%\non purpose");
        assert_eq!(
            status.clone().into_failure("demo").kind,
            FailureKind::Failed
        );
        let unavailable = Status {
            code: code::UNAVAILABLE,
            message: String::new(),
        };
        let failure = unavailable.into_failure("demo");
        assert_eq!(failure.kind, FailureKind::Unavailable);
        assert!(
            failure.message.contains("UNAVAILABLE"),
            "{}",
            failure.message
        );
    }
}
