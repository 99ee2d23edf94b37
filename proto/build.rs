//! Compiles the .proto files under `proto/` without a system `protoc`:
//! protox parses them into a FileDescriptorSet, prost-build generates the
//! Rust types from it, and the encoded set is kept for runtime reflection.

use prost::Message;
use std::path::PathBuf;

const PROTOS: &[&str] = &["terminus/demo/v1/demo.proto"];
/// google.rpc.Status and the standard error details: descriptors only (for
/// decoding `grpc-status-details-bin`), no generated Rust types.
const RPC_PROTOS: &[&str] = &["google/rpc/status.proto", "google/rpc/error_details.proto"];
/// The realistic test API of tests/grpc-python/shop_server.py: descriptors
/// only, for tests that want them without reading files.
const SHOP_PROTOS: &[&str] = &["terminus/shop/v1/shop.proto"];

fn main() {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = match protox::compile(PROTOS, ["proto"]) {
        Ok(set) => set,
        Err(error) => {
            // protox's error names the file and line; show it as is.
            eprintln!("{error:?}");
            panic!("compiling the .proto files failed: {error}");
        }
    };
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(
        out_dir.join("file_descriptor_set.bin"),
        descriptors.encode_to_vec(),
    )
    .expect("writing the encoded FileDescriptorSet into OUT_DIR");
    for (protos, file) in [
        (RPC_PROTOS, "rpc_descriptor_set.bin"),
        (SHOP_PROTOS, "shop_descriptor_set.bin"),
    ] {
        let set = match protox::compile(protos, ["proto"]) {
            Ok(set) => set,
            Err(error) => {
                eprintln!("{error:?}");
                panic!("compiling the .proto files failed: {error}");
            }
        };
        std::fs::write(out_dir.join(file), set.encode_to_vec())
            .expect("writing an encoded FileDescriptorSet into OUT_DIR");
    }
    prost_build::Config::new()
        .compile_fds(descriptors)
        .expect("generating Rust code from the FileDescriptorSet");
}
