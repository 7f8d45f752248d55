#!/bin/sh
# Fill docker/wheels/ with every wheel the images need (torch CPU, faiss-cpu, grpc, ...), so
# builds can run with RAREMEM_PIP_ARGS="--no-index --find-links /wheels" (no index reached
# from inside the build). Run from anywhere, with the pip that should resolve them.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
"${PYTHON:-python3}" -m pip download -q -d "$here/wheels" torch==2.13.0 'setuptools>=68' "$here/..[cpu,models,ui]"
rm -f "$here"/wheels/raremem-*   # the images install the project from source
echo "$(ls "$here/wheels" | wc -l) files in $here/wheels"
