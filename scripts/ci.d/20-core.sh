# The sans-IO core: its tests, its wasm32 build, and proof that it does no I/O.
set -euo pipefail
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
cargo build -p terminus-core --target wasm32-unknown-unknown
if cargo tree -p terminus-core -e normal | grep -E '^.*\b(smol|async-io|tokio|mio)\b'; then
  echo "terminus-core depends on an I/O runtime" >&2
  exit 1
fi
if grep -rnE 'Instant::now|SystemTime|std::net|std::thread' core/src; then
  echo "core/src reads a clock or does I/O" >&2
  exit 1
fi
cargo test -p terminus-core
