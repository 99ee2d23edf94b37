# The browser simulator (issues 7 and 17): the wasm crate's native tests,
# its bindings as wasm in node (wasm-bindgen-test-runner), the freshness
# check of the committed build (wasm/build.sh --check: wasm/www/pkg must be
# what wasm/ builds today), then the page in headless Chromium against
# `terminus demo` (tests/browser, node --test), served from the copy
# compiled into a binary built without wasm-bindgen on the PATH.
#
# Installs, idempotently: the wasm32 target; wasm-bindgen-cli 0.2.130 (the
# version the crate pins) into .cache/tools unless the one on PATH is that
# version; Debian's chromium; the npm packages of tests/browser (npm ci).
set -euo pipefail
want=0.2.130

rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

# The PATH as it was, for the gateway's build below.
plain_path="$PATH"
if [ "$(wasm-bindgen --version 2>/dev/null || true)" != "wasm-bindgen $want" ]; then
  tools="$PWD/.cache/tools"
  if [ "$("$tools/bin/wasm-bindgen" --version 2>/dev/null || true)" != "wasm-bindgen $want" ]; then
    # Not --locked: a dependency version in the CLI's lockfile is missing
    # from the registry mirror, and the unlocked resolution builds fine.
    cargo install --root "$tools" "wasm-bindgen-cli@$want"
  fi
  export PATH="$tools/bin:$PATH"
fi
wasm-bindgen --version

if ! [ -x /usr/bin/chromium ]; then
  apt-get update
  apt-get install -y chromium
fi
if ! command -v npm >/dev/null; then
  apt-get update
  apt-get install -y nodejs npm
fi
(cd tests/browser && npm ci --no-audit --no-fund)

cargo test -p terminus-wasm
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
  cargo test -p terminus-wasm --target wasm32-unknown-unknown --test bindings

wasm/build.sh --check

# The gateway as a newcomer builds it: no wasm-bindgen anywhere on the PATH,
# no TERMINUS_SIMULATOR_DIR.
no_bindgen_path=""
IFS=: read -ra dirs <<<"$plain_path"
for dir in "${dirs[@]}"; do
  if [ -n "$dir" ] && ! [ -e "$dir/wasm-bindgen" ]; then
    no_bindgen_path="${no_bindgen_path:+$no_bindgen_path:}$dir"
  fi
done
cargo_bin="$(command -v cargo)"
env -u TERMINUS_SIMULATOR_DIR PATH="$no_bindgen_path" bash -c '! command -v wasm-bindgen' >/dev/null
env -u TERMINUS_SIMULATOR_DIR PATH="$no_bindgen_path" "$cargo_bin" build -p terminus --bin terminus
env -u TERMINUS_SIMULATOR_DIR TERMINUS_BIN="$PWD/target/debug/terminus" \
  node --test tests/browser/simulator.test.mjs
