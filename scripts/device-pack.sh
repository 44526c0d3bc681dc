#!/usr/bin/env bash
# Gather into .device/ (git-ignored) what a run on a bare CUDA machine needs,
# for scripts/gpu-check.sh there. Run here, from anywhere, after building:
#
#   cmake -S . -B build-cuda && cmake --build build-cuda -j2
#   scripts/device-pack.sh [BUILD_DIR] [EXTRA_TEST_NAME ...]
#
# .device/bin     ds-ft, the GPU test binaries (tests/gpu), any extra tests named
# .device/lib     the shared libraries they load that a CUDA image lacks (Criterion
#                 and its dependencies): everything ldd resolves except libc and
#                 friends, libstdc++/libgcc_s and the CUDA libraries
# .device/shared  the reference fixtures (tests read $DSFT_SHARED)
# .device/ptx89   with PTX89_BUILD=DIR: ds-ft, test_gpu_ops and test_gpu_engine of a
#                 build made with DSFT_CUDA_GENCODE="-gencode arch=compute_89,code=compute_89"
#                 (PTX only: the driver compiles it for the GPU at hand, __CUDA_ARCH__ 890;
#                 the ptx89 stage of scripts/gpu-integration.sh runs them)
set -euo pipefail
cd "$(dirname "$0")/.."

build=${1:-build-cuda}
[ $# -gt 0 ] && shift
out=.device
shared=${DSFT_SHARED:-$(cd .. && pwd)/shared}

[ -x "$build/ds-ft" ] || { echo "device-pack: no $build/ds-ft; build first" >&2; exit 1; }
ls "$build"/tests/test_gpu_* >/dev/null 2>&1 || { echo "device-pack: no GPU tests in $build/tests" >&2; exit 1; }

rm -rf "$out"
mkdir -p "$out/bin" "$out/lib" "$out/shared"

bins=("$build/ds-ft")
for t in "$build"/tests/test_gpu_*; do [ -x "$t" ] && bins+=("$t"); done
for name in "$@"; do bins+=("$build/tests/$name"); done
for b in "${bins[@]}"; do
  cp "$b" "$out/bin/"
  strip --strip-unneeded "$out/bin/$(basename "$b")" 2>/dev/null || true   # host symbols only; device line info stays
done

# Never carry what every image has, or what must match the machine's driver.
skip='^(linux-vdso|linux-gate|ld-linux|libc\.so|libm\.so|libpthread|libdl\.so|librt\.so|libresolv|libstdc\+\+|libgcc_s|libcuda\.so|libcudart|libcublas|libnvidia)'
for b in "$out"/bin/*; do
  ldd "$b" | awk '/=> \// { print $1, $3 }'
done | sort -u | while read -r name path; do
  if echo "$name" | grep -Eq "$skip"; then continue; fi
  cp -L "$path" "$out/lib/$name"
done

if [ -n "${PTX89_BUILD:-}" ]; then
  mkdir -p "$out/ptx89"
  for b in ds-ft tests/test_gpu_ops tests/test_gpu_engine; do
    [ -x "$PTX89_BUILD/$b" ] || { echo "device-pack: no $PTX89_BUILD/$b" >&2; exit 1; }
    cp "$PTX89_BUILD/$b" "$out/ptx89/"
    strip --strip-unneeded "$out/ptx89/$(basename "$b")" 2>/dev/null || true
  done
fi

if [ -d "$shared/fixtures" ]; then
  cp -r "$shared/fixtures" "$out/shared/"
else
  echo "device-pack: warning: no fixtures at $shared/fixtures" >&2
fi

size_kb=$(du -sk "$out" | cut -f1)
echo "device-pack: $(ls "$out/bin" | wc -l) binaries, $(ls "$out/lib" | wc -l) libraries, $((size_kb / 1024)) MB in $out"
ls "$out/lib" | sed 's/^/  lib: /'
if [ "$size_kb" -gt $((50 * 1024)) ]; then
  echo "device-pack: warning: $out is over 50 MB" >&2
fi
