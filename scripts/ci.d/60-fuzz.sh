# The cargo-fuzz targets (fuzz/, excluded from the workspace): each runs for
# 20 s from the committed seeds; any crash fails the stage. docs/FUZZING.md
# records the long runs.
set -euo pipefail
export PATH="$PWD/.cache/tools/bin:$PATH"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install --locked --root .cache/tools cargo-fuzz@0.13.2
fi
if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
fuzz/run.sh 20
