#!/bin/sh
# What `make gpu-check` needs on a GPU machine that has Python 3.12, torch (CUDA), grpcio,
# protobuf, numpy, sentencepiece and sacrebleu but no network: the other wheels (for Python
# 3.12, installed there with --no-deps beside what it has; protobuf at the version the stubs
# were generated with) and the Omniglot zips with the Vinyals split. Usage: sh bench/gpu_bundle.sh DIR (about 40 MB).
set -eu
out="${1:-.gpu-bundle}"
here="$(cd "$(dirname "$0")/.." && pwd)"
rm -rf "$out" && mkdir -p "$out/wheels" "$out/data/omniglot"
"${PYTHON:-$here/.venv/bin/python}" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 -d "$out/wheels" \
  faiss-cpu==1.15.1 grpcio-health-checking grpcio-reflection prometheus-client tqdm rich markdown-it-py mdurl \
  pygments pytest pluggy iniconfig packaging \
  "protobuf==$("${PYTHON:-$here/.venv/bin/python}" -c 'import google.protobuf as p; print(p.__version__)')"
data="${RAREMEM_DATA:-$here/../shared/data}/omniglot"
cp "$data"/images_background.zip "$data"/images_evaluation.zip "$out/data/omniglot/"
cp -r "$data/splits" "$out/data/omniglot/"
du -sh "$out"
