//! The JSON <-> protobuf mapping of requests and responses (proto3 JSON:
//! lowerCamelCase names, default values present), through dynamic messages.

use super::frame;
use bytes::Bytes;
use prost::Message as _;
use prost_reflect::{DynamicMessage, MethodDescriptor, SerializeOptions};
use serde_json::Value;
use terminus_core::{FailureKind, UpstreamFailure};

/// The request JSON as an encoded message of the method's input type.
pub(super) fn encode_request(
    method: &MethodDescriptor,
    request: Value,
) -> Result<Bytes, UpstreamFailure> {
    let mut request = if request.is_null() {
        Value::Object(Default::default())
    } else {
        request
    };
    // `@oneOf` inputs that stand for a oneof carry their member one level
    // down; proto3 JSON wants it in the message itself.
    super::request::flatten_oneofs(&method.input(), &mut request);
    let message = DynamicMessage::deserialize(method.input(), &request).map_err(|error| {
        UpstreamFailure::new(
            FailureKind::BadInput,
            format!(
                "invalid {} for {}: {}",
                method.input().full_name(),
                method.full_name(),
                super::request::explain(&method.input(), &request, &error.to_string())
            ),
        )
    })?;
    Ok(frame(&message.encode_to_vec()))
}

/// A response message as proto3 JSON, with default values present.
pub(super) fn decode_response(
    upstream: &str,
    method: &MethodDescriptor,
    message: &[u8],
) -> Result<Value, UpstreamFailure> {
    let failed = |what: String| {
        UpstreamFailure::new(
            FailureKind::Failed,
            format!(
                "upstream {upstream} sent an invalid {}: {what}",
                method.output().full_name()
            ),
        )
    };
    let decoded = DynamicMessage::decode(method.output(), message)
        .map_err(|error| failed(error.to_string()))?;
    let options = SerializeOptions::new().skip_default_fields(false);
    decoded
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|error| failed(error.to_string()))
}
