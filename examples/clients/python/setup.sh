#!/usr/bin/env bash
# examples/clients/python/setup.sh: a virtualenv with the pinned dependencies and
# Python stubs generated from the node's proto (runtime/proto). Idempotent: installs
# again only when requirements.txt changed, and always regenerates the stubs (so they
# follow the proto). Prints the virtualenv's python on its last line.
#
# Environment:
#   DATAMESH_PY_ENV   where the virtualenv goes (default: target/python in the repo)
#   PYTHON            the interpreter to make it with (default: python3)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
env=${DATAMESH_PY_ENV:-$root/target/python}
python=${PYTHON:-python3}

if ! command -v "$python" >/dev/null 2>&1; then
  echo "setup.sh: no $python on PATH" >&2
  exit 3
fi
if [[ ! -x $env/bin/python ]]; then
  "$python" -m venv "$env" >&2
fi
stamp=$env/.requirements
if ! cmp -s "$here/requirements.txt" "$stamp"; then
  "$env/bin/python" -m pip install --disable-pip-version-check -q -r "$here/requirements.txt" >&2
  cp "$here/requirements.txt" "$stamp"
fi
rm -rf "$env/gen"
mkdir -p "$env/gen"
"$env/bin/python" -m grpc_tools.protoc -I "$root/runtime/proto" \
  --python_out="$env/gen" --grpc_python_out="$env/gen" \
  "$root/runtime/proto/datamesh/v1/datamesh.proto" >&2
touch "$env/gen/datamesh/__init__.py" "$env/gen/datamesh/v1/__init__.py"
echo "$env/bin/python"
