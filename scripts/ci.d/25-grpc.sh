# The gRPC client (terminus::grpc) and the demo upstream over loopback
# sockets, and the protobuf crate. Needs nothing installed.
set -euo pipefail
cargo test -p terminus-proto
cargo test -p terminus --lib -- grpc::
cargo test -p terminus --test grpc_demo --test grpc_tasks --test demo_faces --test grpc_pool --test runtime_stop
