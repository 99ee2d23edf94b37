//! Compiles the .proto files under `proto/` without a system `protoc`:
//! protox parses them into a FileDescriptorSet, prost-build generates the
//! Rust types from it, and the encoded set is kept for runtime reflection.

use prost::Message;
use std::path::PathBuf;

const PROTOS: &[&str] = &["terminus/demo/v1/demo.proto"];

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
    prost_build::Config::new()
        .compile_fds(descriptors)
        .expect("generating Rust code from the FileDescriptorSet");
}
