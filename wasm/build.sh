#!/usr/bin/env bash
# Builds the simulator: the core for wasm32-unknown-unknown, finished by the
# wasm-bindgen CLI (the same version as the crate's pinned wasm-bindgen) into
# wasm/www/pkg. wasm/www (page + pkg/) is committed and compiled into the
# `terminus` binary (runtime-smol/src/simulator.rs), which serves it at
# /simulator; so after changing wasm/ or core/, run this and commit pkg/.
#
#   wasm/build.sh            release build into wasm/www/pkg
#   wasm/build.sh --check    build into target/simulator-check/pkg and fail
#                            if it differs from the committed wasm/www/pkg
#                            (scripts/ci.d/70-browser.sh runs this)
#   WASM_BINDGEN=/path/to/wasm-bindgen wasm/build.sh
#
# The CLI is looked up as $WASM_BINDGEN, then <repo>/.cache/tools/bin, then
# PATH; scripts/ci.d/70-browser.sh installs it into .cache/tools.
#
# The output is byte-reproducible whatever folder the repository is in: the
# build sets its own rustflags (ignoring RUSTFLAGS and .cargo/config), which
# map the repository, the target dir and cargo's registry sources to fixed
# names (panic messages carry source paths), and it drops debug info. The
# bytes still depend on the rustc and wasm-bindgen versions, which build.sh
# records in pkg/toolchain.txt.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
want="0.2.130"

mode=build
case "${1:-}" in
  "") ;;
  --check) mode=check ;;
  *)
    echo "usage: wasm/build.sh [--check]" >&2
    exit 2
    ;;
esac

find_bindgen() {
  for candidate in "${WASM_BINDGEN:-}" "$repo/.cache/tools/bin/wasm-bindgen" "$(command -v wasm-bindgen || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && [ "$("$candidate" --version)" = "wasm-bindgen $want" ]; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

if ! bindgen="$(find_bindgen)"; then
  echo "build.sh: wasm-bindgen $want not found (set WASM_BINDGEN, or run:" >&2
  echo "  cargo install --root $repo/.cache/tools wasm-bindgen-cli@$want)" >&2
  exit 1
fi

cd "$repo"
target="${CARGO_TARGET_DIR:-$repo/target}"
mkdir -p "$target"
target="$(cd "$target" && pwd)"
cargo_home="${CARGO_HOME:-$HOME/.cargo}"

# Path remapping: when several prefixes match, rustc applies the last one,
# so the more specific ones come later.
flags=("--remap-path-prefix=$repo=/terminus" "--remap-path-prefix=$target=/terminus-target")
for src in "$cargo_home"/registry/src/*/ "$cargo_home"/git/checkouts/; do
  [ -d "$src" ] && flags+=("--remap-path-prefix=${src%/}=/cargo-src")
done
encoded="$(printf '%s\x1f' "${flags[@]}")"
export CARGO_ENCODED_RUSTFLAGS="${encoded%$'\x1f'}"
export CARGO_PROFILE_RELEASE_DEBUG=0
export CARGO_PROFILE_RELEASE_STRIP=debuginfo

cargo build -p terminus-wasm --lib --release --target wasm32-unknown-unknown

if [ "$mode" = build ]; then
  out=wasm/www/pkg
else
  out="$target/simulator-check/pkg"
fi
rm -rf "$out"
"$bindgen" --target web --no-typescript --out-dir "$out" \
  "$target/wasm32-unknown-unknown/release/terminus_wasm.wasm"
{
  rustc --version
  "$bindgen" --version
} >"$out/toolchain.txt"

if [ "$mode" = build ]; then
  echo "build.sh: built wasm/www/pkg ($(du -sh wasm/www/pkg | cut -f1)); commit it"
  exit 0
fi
if ! diff -r wasm/www/pkg "$out"; then
  echo "build.sh --check: the committed wasm/www/pkg is not what wasm/ builds today." >&2
  echo "  committed toolchain: $(tr '\n' ' ' <wasm/www/pkg/toolchain.txt 2>/dev/null || echo none)" >&2
  echo "  this toolchain:      $(tr '\n' ' ' <"$out/toolchain.txt")" >&2
  echo "  Run wasm/build.sh and commit wasm/www/pkg." >&2
  exit 1
fi
echo "build.sh --check: wasm/www/pkg is what wasm/ builds ($(du -sh "$out" | cut -f1))"
