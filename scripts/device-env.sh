# scripts/device-env.sh - sourced on the GPU machine: library path and fixture
# location for the binaries that scripts/device-pack.sh gathered into .device/.
# Only the carried libraries the machine lacks go on the path, so that its own
# programs (nvidia-smi, compute-sanitizer) keep their versions.
dev=${DEV:-.device}
uselib="$PWD/$dev/lib-use"
rm -rf "$uselib"
mkdir -p "$uselib"
for f in "$dev"/lib/*; do
  [ -e "$f" ] || continue
  ldconfig -p | grep -q "^[[:space:]]*$(basename "$f") " || ln -s "$PWD/$f" "$uselib/"
done
export LD_LIBRARY_PATH="$uselib:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export DSFT_SHARED="$PWD/$dev/shared" DSFT_BIN="$PWD/$dev/bin/ds-ft"
if ldd "$dev"/bin/ds-ft 2>/dev/null | grep -q "not found"; then
  for d in $(find / -xdev -name 'libcublasLt.so.1*' -printf '%h\n' 2>/dev/null | sort -u); do
    LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d"
  done
fi
