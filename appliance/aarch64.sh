#!/usr/bin/env bash
# Build Berth for aarch64 (ARM edge boxes) on an x86_64 Debian machine and
# run its whole test suite under qemu-aarch64 user emulation.
#
#   appliance/aarch64.sh            set up, build the release binary, run the tests
#   appliance/aarch64.sh --build    set up and build only
#
# The binary is linked statically: dynamically linked glibc binaries hang in
# pthread_create under this qemu, and a static binary is also what an edge
# box wants (no library versions to match). Output:
# target/aarch64-unknown-linux-gnu/release/berth
set -euo pipefail
cd "$(dirname "$0")/.."
target=aarch64-unknown-linux-gnu

echo "== toolchain"
if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  rustup target add "$target"
fi
missing=()
for pkg in gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

# Tests start the (aarch64) server binary as a child process: binfmt_misc
# lets the kernel hand it to qemu like any native program.
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  [ -e /proc/sys/fs/binfmt_misc/register ] ||
    mount binfmt_misc -t binfmt_misc /proc/sys/fs/binfmt_misc
  grep -v '^#' /usr/lib/binfmt.d/qemu-aarch64.conf >/proc/sys/fs/binfmt_misc/register
fi

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64-static -L /usr/aarch64-linux-gnu"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static"
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar

echo "== release build"
cargo build --release --target "$target"
bin=target/$target/release/berth
file "$bin" 2>/dev/null || true
echo "size: $(stat -c %s "$bin") bytes ($(numfmt --to=iec-i --suffix=B "$(stat -c %s "$bin")"))"
qemu-aarch64-static "$bin" --version
[ "${1:-}" = "--build" ] && exit 0

echo "== tests under qemu-aarch64"
# Emulation runs ~5-10x slower: the stress, crash and GC tests run fewer
# rounds (the same code paths); everything else runs as on x86_64.
BERTH_STRESS_RUNS=${BERTH_STRESS_RUNS:-2} \
  BERTH_CRASH_CYCLES=${BERTH_CRASH_CYCLES:-20} \
  BERTH_GC_SECS=${BERTH_GC_SECS:-30} \
  cargo test --target "$target" -- --test-threads=2
