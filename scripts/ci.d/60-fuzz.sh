# The cargo-fuzz targets (fuzz/, excluded from the workspace): each runs for
# 20 s from the committed seeds; any crash fails the stage. docs/FUZZING.md
# records the long runs.
set -euo pipefail
export PATH="$PWD/.cache/tools/bin:$PATH"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install --locked --root .cache/tools cargo-fuzz@0.13.2
fi
if rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal; then
  export FUZZ_TOOLCHAIN=nightly
else
  # cargo-fuzz needs nightly's -Z flags; with no nightly to be had, the
  # stable compiler accepts them under RUSTC_BOOTSTRAP (no sanitizer is used).
  echo "no nightly toolchain: fuzzing with stable and RUSTC_BOOTSTRAP=1" >&2
  export FUZZ_TOOLCHAIN=stable RUSTC_BOOTSTRAP=1
fi
fuzz/run.sh 20
