#!/usr/bin/env bash
# Install what ds-ft needs on Debian 12 (as root) and build it into ./build.
# CUDA is used when /usr/local/cuda/bin/nvcc (or nvcc on the PATH) exists.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs="build-essential cmake pkg-config zstd libyaml-dev libjansson-dev libzstd-dev libcriterion-dev
      libpcre2-dev libutf8proc-dev clang libclang-rt-14-dev strace valgrind python3"
missing=""
for p in $pkgs; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup: installing$missing"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release ${DSFT_CMAKE_ARGS:-}
cmake --build build -j"$(nproc)"
