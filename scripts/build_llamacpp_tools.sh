#!/usr/bin/env bash
# Builds llama.cpp's own command-line tools from the very source llama-cpp-python vendors (the
# pinned release): llama-speculative (its speculative decoding with a draft model) and llama-bench,
# the yardsticks of scripts/bench_speed.py --llamacpp-tools. Like scripts/build_llamacpp.sh, with
# ggml's runtime CPU variants and without the AMX one (SIGILL in our VMs). Into
# $MTAD_HOME/llama.cpp/<version>/bin (default ~/.cache/mtad); idempotent; about 10 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
VERSION=$(sed -n 's/^LLAMA_CPP_PYTHON = "\(.*\)".*/\1/p' mtad/runners/llamacpp.py)
DEST=${MTAD_HOME:-$HOME/.cache/mtad}/llama.cpp/$VERSION
if [ -x "$DEST/bin/llama-speculative" ] && [ -x "$DEST/bin/llama-bench" ]; then
  echo "$DEST/bin"; exit 0
fi
"$PY" -m pip install -q cmake
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$PY" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$WORK"
tar xzf "$WORK"/llama_cpp_python-"$VERSION".tar.gz -C "$WORK"
CMAKE="$(dirname "$PY")/cmake"
"$CMAKE" -S "$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release \
  -DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=OFF >/dev/null
# The CPU variants are modules loaded at run time, not link dependencies of the tools: name them.
VARIANTS=$("$CMAKE" --build "$WORK/build" --target help | sed -n 's/^\.\.\. \(ggml-cpu-[a-z0-9_]*\)$/\1/p' | grep -v sapphirerapids || true)
"$CMAKE" --build "$WORK/build" -j"$(nproc)" --target llama-speculative llama-bench $VARIANTS >/dev/null
rm -f "$WORK"/build/bin/libggml-cpu-sapphirerapids.so  # AMX: its int8 kernel dies with SIGILL here
mkdir -p "$DEST"
rm -rf "$DEST/bin.tmp" && cp -r "$WORK/build/bin" "$DEST/bin.tmp" && rm -rf "$DEST/bin" && mv "$DEST/bin.tmp" "$DEST/bin"
echo "$DEST/bin"
