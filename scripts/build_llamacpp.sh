#!/usr/bin/env bash
# Builds llama-cpp-python (on the package index as source only) into the project's venv, for
# pair.backend=llamacpp. ggml is built with its runtime-dispatched CPU variants, one library per
# x86 feature level, so one build runs on every machine of ours (avx512_bf16 Xeons, AVX2-only
# EPYCs); mtad/runners/llamacpp.py loads the variant a CPU runs, never the AMX one (its int8 kernel
# dies with SIGILL in these VMs: ../shared/reference/llamacpp-notes.md). Idempotent: an installed
# build of the pinned version is kept. About 7-8 minutes on 2 cores.
#   scripts/build_llamacpp.sh            (PY=path/to/python to build into another environment)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
VERSION=$(sed -n 's/^LLAMA_CPP_PYTHON = "\(.*\)".*/\1/p' mtad/runners/llamacpp.py)
if "$PY" -c "import sys, llama_cpp; sys.exit(llama_cpp.__version__ != '$VERSION')" 2>/dev/null; then
  exit 0
fi
if ! command -v c++ >/dev/null || ! command -v make >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y -qq g++ make >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq g++ make; }
  else
    echo "error: building llama-cpp-python needs a C++ compiler and make (Debian: apt-get install g++ make)" >&2
    exit 1
  fi
fi
echo "building llama-cpp-python $VERSION (ggml CPU variants; about 8 minutes on 2 cores)" >&2
CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON -DLLAMA_CURL=OFF \
-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF" \
CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) "$PY" -m pip install -q "llama-cpp-python==$VERSION"
