# The gRPC client against a server we did not write: Python grpcio (PyPI).
# Installs grpcio and grpcio-tools into a venv inside the repo (idempotent:
# an existing venv with both importable is reused), then runs the test that
# starts tests/grpc-python/server.py with that interpreter.
set -euo pipefail
venv=.cache/venv
if ! "$venv/bin/python" -c 'import grpc, grpc_tools' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    -r tests/grpc-python/requirements.txt
fi
"$venv/bin/python" -c 'import grpc, grpc_tools; print("grpcio", grpc.__version__)'
TERMINUS_PYTHON="$PWD/$venv/bin/python" cargo test -p terminus-tests --test grpc_python
