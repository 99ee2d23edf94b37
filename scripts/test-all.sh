#!/usr/bin/env bash
# The one command that runs every test of Terminus on a fresh machine.
#
# It installs and starts what the tests need (each stage does its own
# installing, idempotently), then runs the stages in scripts/ci.d in name
# order. A stage is a bash file; it fails the run by exiting non-zero.
# Everything it caches lives inside the repository (target/, .cache/).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
export TERMINUS_REPO="$PWD"
mkdir -p .cache

only="${1:-}"
start_all=$SECONDS
for stage in scripts/ci.d/*.sh; do
  name=$(basename "$stage" .sh)
  if [ -n "$only" ] && [[ "$name" != *"$only"* ]]; then continue; fi
  echo "=== stage $name"
  start=$SECONDS
  bash "$stage"
  echo "=== stage $name passed in $((SECONDS - start)) s"
done
echo "=== all stages passed in $((SECONDS - start_all)) s"
