# The gRPC client against a server we did not write: Python grpcio (PyPI).
# Installs grpcio, grpcio-tools and grpcio-status into a venv inside the repo
# (idempotent: an existing venv with all three importable is reused), then
# runs the tests that start tests/grpc-python/server.py (the demo service)
# and tests/grpc-python/shop_server.py (the realistic shop API) with it.
set -euo pipefail
venv=.cache/venv
if ! "$venv/bin/python" -c 'import grpc, grpc_tools, grpc_status' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    -r tests/grpc-python/requirements.txt
fi
"$venv/bin/python" -c 'import grpc, grpc_tools, grpc_status; print("grpcio", grpc.__version__)'
TERMINUS_PYTHON="$PWD/$venv/bin/python" cargo test -p terminus-tests --test grpc_python --test grpc_shop
