//! gRPC over HTTP/2 framing: the 5-byte length prefix of each message, the
//! `grpc-timeout` header, and the `grpc-status` / `grpc-message` /
//! `grpc-status-details-bin` metadata.

use base64::Engine as _;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::HeaderMap;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions, Value as ReflectValue};
use serde_json::{json, Value};
use std::sync::OnceLock;
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
    pub(crate) const UNIMPLEMENTED: u32 = 12;
    pub(crate) const INTERNAL: u32 = 13;
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

/// A status carried by `grpc-status` / `grpc-message` /
/// `grpc-status-details-bin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Status {
    pub(crate) code: u32,
    pub(crate) message: String,
    /// The encoded `google.rpc.Status` of `grpc-status-details-bin`.
    pub(crate) details: Option<Bytes>,
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
        // Binary metadata is base64, padded or not.
        let details = headers
            .get("grpc-status-details-bin")
            .and_then(|value| value.to_str().ok())
            .and_then(|text| {
                base64::engine::general_purpose::STANDARD_NO_PAD
                    .decode(text.trim().trim_end_matches('='))
                    .ok()
            })
            .map(Bytes::from);
        Some(Ok(Status {
            code,
            message,
            details,
        }))
    }

    /// The failure a non-OK status means for the caller: its kind by the
    /// table in `docs/schema.md` ("Errors"), `extensions.grpcStatus` and,
    /// when the upstream sent `grpc-status-details-bin`,
    /// `extensions.details` (each a JSON object with its `@type`): the
    /// standard `google.rpc` details and the upstream's own types (in
    /// `pool`) are decoded, others keep their bytes.
    pub(crate) fn into_failure(self, upstream: &str, pool: &DescriptorPool) -> UpstreamFailure {
        let kind = kind_of(self.code);
        let details = self
            .details
            .as_deref()
            .and_then(|bytes| decode_details(bytes, pool));
        let message = if self.message.is_empty() {
            format!(
                "upstream {upstream} failed with gRPC status {} ({})",
                self.code,
                code_name(self.code)
            )
        } else {
            self.message
        };
        let failure = UpstreamFailure::new(kind, message)
            .with_extension("grpcStatus", Value::String(code_name(self.code).to_owned()));
        match details {
            Some(details) if !details.is_empty() => {
                failure.with_extension("details", Value::Array(details))
            }
            _ => failure,
        }
    }
}

/// The failure kind (and so `extensions.code`) of a gRPC status code.
pub(crate) fn kind_of(code: u32) -> FailureKind {
    match code {
        1 => FailureKind::Cancelled,
        3 => FailureKind::BadInput,
        4 => FailureKind::Timeout,
        5 => FailureKind::NotFound,
        6 => FailureKind::AlreadyExists,
        7 => FailureKind::PermissionDenied,
        8 => FailureKind::Busy,
        9 => FailureKind::FailedPrecondition,
        10 => FailureKind::Aborted,
        11 => FailureKind::OutOfRange,
        12 => FailureKind::Unimplemented,
        14 => FailureKind::Unavailable,
        15 => FailureKind::DataLoss,
        16 => FailureKind::Unauthenticated,
        // 2 UNKNOWN, 13 INTERNAL and codes outside the spec.
        _ => FailureKind::Failed,
    }
}

/// The descriptors of `google.rpc.Status` and the standard error details.
fn rpc_pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(terminus_proto::RPC_DESCRIPTOR_SET)
            .expect("terminus-proto's google.rpc descriptors decode")
    })
}

/// The details of an encoded `google.rpc.Status` as JSON objects with their
/// `@type`; a detail of a type neither pool knows keeps its bytes as
/// base64 in `value`. `None` when the bytes are not a `google.rpc.Status`.
fn decode_details(bytes: &[u8], pool: &DescriptorPool) -> Option<Vec<Value>> {
    let rpc = rpc_pool();
    let status =
        DynamicMessage::decode(rpc.get_message_by_name("google.rpc.Status")?, bytes).ok()?;
    let details = status.get_field_by_name("details")?;
    let ReflectValue::List(items) = details.as_ref() else {
        return None;
    };
    let options = SerializeOptions::new().skip_default_fields(false);
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let ReflectValue::Message(any) = item else {
            continue;
        };
        let type_url = any
            .get_field_by_name("type_url")
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let value = any
            .get_field_by_name("value")
            .and_then(|v| v.as_bytes().cloned())
            .unwrap_or_default();
        let type_name = type_url.rsplit('/').next().unwrap_or_default();
        let descriptor = rpc
            .get_message_by_name(type_name)
            .or_else(|| pool.get_message_by_name(type_name));
        let decoded = descriptor
            .and_then(|descriptor| DynamicMessage::decode(descriptor, value.as_ref()).ok())
            .and_then(|message| {
                message
                    .serialize_with_options(serde_json::value::Serializer, &options)
                    .ok()
            });
        match decoded {
            Some(Value::Object(mut fields)) => {
                fields.insert("@type".into(), Value::String(type_url));
                let mut ordered = serde_json::Map::new();
                ordered.insert("@type".into(), fields.remove("@type").unwrap_or_default());
                ordered.extend(fields);
                out.push(Value::Object(ordered));
            }
            _ => out.push(json!({
                "@type": type_url,
                "value": base64::engine::general_purpose::STANDARD.encode(&value),
            })),
        }
    }
    Some(out)
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
            status
                .clone()
                .into_failure("demo", &DescriptorPool::new())
                .kind,
            FailureKind::Failed
        );
        let unavailable = Status {
            code: 14,
            message: String::new(),
            details: None,
        };
        let failure = unavailable.into_failure("demo", &DescriptorPool::new());
        assert_eq!(failure.kind, FailureKind::Unavailable);
        assert!(
            failure.message.contains("UNAVAILABLE"),
            "{}",
            failure.message
        );
    }

    #[test]
    fn every_status_code_has_its_own_meaning() {
        let codes: Vec<&str> = (1..=16).map(|code| kind_of(code).code()).collect();
        assert_eq!(
            codes,
            [
                "UPSTREAM_CANCELLED",
                "UPSTREAM_ERROR",
                "BAD_USER_INPUT",
                "UPSTREAM_TIMEOUT",
                "NOT_FOUND",
                "ALREADY_EXISTS",
                "FORBIDDEN",
                "UPSTREAM_BUSY",
                "FAILED_PRECONDITION",
                "ABORTED",
                "OUT_OF_RANGE",
                "UPSTREAM_UNIMPLEMENTED",
                "UPSTREAM_ERROR",
                "UPSTREAM_UNAVAILABLE",
                "UPSTREAM_DATA_LOSS",
                "UNAUTHENTICATED",
            ]
        );
        let failure = Status {
            code: 5,
            message: "no product X".into(),
            details: None,
        }
        .into_failure("shop", &DescriptorPool::new());
        assert_eq!(failure.kind, FailureKind::NotFound);
        assert_eq!(failure.extensions["grpcStatus"], "NOT_FOUND");
        assert!(!failure.extensions.contains_key("details"));
    }

    #[test]
    fn status_details_are_decoded_from_grpc_status_details_bin() {
        use prost::Message as _;
        let rpc = rpc_pool();
        let violation = DynamicMessage::deserialize(
            rpc.get_message_by_name("google.rpc.BadRequest").unwrap(),
            json!({"fieldViolations": [{"field": "lines", "description": "required"}]}),
        )
        .unwrap();
        let any = |type_url: &str, value: Vec<u8>| {
            let mut any =
                DynamicMessage::new(rpc.get_message_by_name("google.protobuf.Any").unwrap());
            any.set_field_by_name("type_url", ReflectValue::String(type_url.into()));
            any.set_field_by_name("value", ReflectValue::Bytes(value.into()));
            ReflectValue::Message(any)
        };
        let mut status = DynamicMessage::new(rpc.get_message_by_name("google.rpc.Status").unwrap());
        status.set_field_by_name("code", ReflectValue::I32(3));
        status.set_field_by_name(
            "details",
            ReflectValue::List(vec![
                any(
                    "type.googleapis.com/google.rpc.BadRequest",
                    violation.encode_to_vec(),
                ),
                any("type.example.com/acme.Unknown", vec![1, 2, 3]),
            ]),
        );
        let mut headers = HeaderMap::new();
        headers.insert("grpc-status", "3".parse().unwrap());
        headers.insert("grpc-message", "bad order".parse().unwrap());
        let encoded =
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(status.encode_to_vec());
        headers.insert("grpc-status-details-bin", encoded.parse().unwrap());
        let failure = Status::from_headers(&headers)
            .unwrap()
            .unwrap()
            .into_failure("shop", &DescriptorPool::new());
        assert_eq!(failure.kind, FailureKind::BadInput);
        assert_eq!(failure.message, "bad order");
        assert_eq!(failure.extensions["grpcStatus"], "INVALID_ARGUMENT");
        assert_eq!(
            failure.extensions["details"],
            json!([
                {
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{"field": "lines", "description": "required", "reason": ""}]
                },
                {"@type": "type.example.com/acme.Unknown", "value": "AQID"}
            ])
        );
        // A detail type of the upstream's own protos is decoded with them.
        let shop = DescriptorPool::decode(terminus_proto::SHOP_DESCRIPTOR_SET).unwrap();
        let money = DynamicMessage::deserialize(
            shop.get_message_by_name("terminus.shop.v1.Money").unwrap(),
            json!({"currency": "EUR", "units": "5"}),
        )
        .unwrap();
        let mut status = DynamicMessage::new(rpc.get_message_by_name("google.rpc.Status").unwrap());
        status.set_field_by_name("code", ReflectValue::I32(9));
        status.set_field_by_name(
            "details",
            ReflectValue::List(vec![any(
                "type.googleapis.com/terminus.shop.v1.Money",
                money.encode_to_vec(),
            )]),
        );
        let failure = Status {
            code: 9,
            message: "too expensive".into(),
            details: Some(status.encode_to_vec().into()),
        }
        .into_failure("shop", &shop);
        assert_eq!(failure.kind, FailureKind::FailedPrecondition);
        assert_eq!(
            failure.extensions["details"],
            json!([{"@type": "type.googleapis.com/terminus.shop.v1.Money", "currency": "EUR", "units": "5", "nanos": 0}])
        );
    }
}
