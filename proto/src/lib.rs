//! Protobuf definitions of the Terminus demo and test upstreams.
//!
//! The types are generated at build time by prost from the .proto files under
//! `proto/` (compiled by protox, so no system `protoc` is needed), and the
//! encoded descriptors are exported for runtime reflection.

/// The `.proto` sources, as `(path relative to the include root, text)`, for
/// tools that compile them again (for example a gRPC server in another
/// language used by the tests).
pub const PROTO_SOURCES: &[(&str, &str)] = &[(
    "terminus/demo/v1/demo.proto",
    include_str!("../proto/terminus/demo/v1/demo.proto"),
)];

/// The encoded `google.protobuf.FileDescriptorSet` of every .proto file in
/// this crate, so a runtime can build a `prost_reflect::DescriptorPool`
/// without reading files.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/file_descriptor_set.bin"));

/// The encoded `google.protobuf.FileDescriptorSet` of `google.rpc.Status`
/// and the standard error details (`BadRequest`, `ErrorInfo`, ...), with the
/// well-known types they import, for decoding `grpc-status-details-bin`.
pub const RPC_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/rpc_descriptor_set.bin"));

/// The encoded `google.protobuf.FileDescriptorSet` of the shop test API
/// (`proto/terminus/shop/v1/shop.proto`, served by
/// tests/grpc-python/shop_server.py), with the well-known types it imports.
pub const SHOP_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/shop_descriptor_set.bin"));

/// The `terminus.demo.v1` package.
pub mod demo {
    /// Version 1 of the demo service: `terminus.demo.v1.Demo`.
    pub mod v1 {
        #![allow(missing_docs)]
        include!(concat!(env!("OUT_DIR"), "/terminus.demo.v1.rs"));

        /// The fully qualified name of the demo service.
        pub const SERVICE: &str = "terminus.demo.v1.Demo";
    }
}

#[cfg(test)]
mod tests {
    use super::demo::v1::{HelloRequest, TicksRequest};
    use prost::Message;

    #[test]
    fn messages_round_trip() {
        let request = TicksRequest {
            every_ms: 5,
            limit: Some(3),
            fail_at: None,
        };
        let decoded = TicksRequest::decode(request.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded, request);
        let hello = HelloRequest { name: "x".into() };
        assert_eq!(hello.encode_to_vec(), vec![10, 1, b'x']);
    }

    #[test]
    fn descriptor_set_is_exported() {
        assert!(super::FILE_DESCRIPTOR_SET.len() > 100);
    }
}
