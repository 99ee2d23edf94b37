#!/usr/bin/env bash
# Builds the simulator: the core for wasm32-unknown-unknown, finished by the
# wasm-bindgen CLI (the same version as the crate's pinned wasm-bindgen) into
# wasm/www/pkg, which `terminus demo` serves at /simulator.
#
#   wasm/build.sh            release build (what the gateway serves)
#   WASM_BINDGEN=/path/to/wasm-bindgen wasm/build.sh
#
# The CLI is looked up as $WASM_BINDGEN, then <repo>/.cache/tools/bin, then
# PATH; scripts/ci.d/70-browser.sh installs it into .cache/tools.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
want="0.2.130"

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
cargo build -p terminus-wasm --lib --release --target wasm32-unknown-unknown
rm -rf wasm/www/pkg
"$bindgen" --target web --no-typescript --out-dir wasm/www/pkg \
  target/wasm32-unknown-unknown/release/terminus_wasm.wasm
echo "build.sh: built wasm/www/pkg ($(du -sh wasm/www/pkg | cut -f1))"
