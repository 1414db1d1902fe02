#!/usr/bin/env bash
# Builds the static sekisho binary (x86_64-unknown-linux-musl, release profile: fat LTO,
# one codegen unit, stripped, panic=abort, optimised for size) and prints its path. Used by the container and
# VM builds. Paths are remapped so the binary does not depend on where the checkout or the
# cargo home is. Needs the rustup target and Debian's musl-tools (ring needs musl-gcc).
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
TARGET=x86_64-unknown-linux-musl
command -v musl-gcc >/dev/null || { echo "build-binary: musl-gcc is missing (Debian musl-tools)" >&2; exit 1; }
rustup target list --installed 2>/dev/null | grep -qx "$TARGET" || {
  echo "build-binary: rustup target $TARGET is missing (rustup target add $TARGET)" >&2; exit 1; }
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
# The cc crate (ring's C and assembly) passes SOURCE_DATE_EPOCH to the C compiler and
# rebuilds when it changes. One fixed value keeps the binary the same for every caller and
# every commit time (the image's dates come from the commit, set by the image scripts).
export SOURCE_DATE_EPOCH=0
export CC_x86_64_unknown_linux_musl=musl-gcc
# The appliance optimises for size (the image budget is 10 MiB; at opt-level 3 the binary
# alone is 9.5 MiB). The benchmark measures the workspace's release profile (opt-level 3).
export CARGO_PROFILE_RELEASE_OPT_LEVEL=s
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="--remap-path-prefix=$ROOT=/sekisho --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo -C target-feature=+crt-static"
cargo build --release --locked --target "$TARGET" -p sekisho >&2
BIN=$CARGO_TARGET_DIR/$TARGET/release/sekisho
[[ $(od -An -c -N4 "$BIN" | tr -d ' ') == '177ELF' ]] || { echo "build-binary: $BIN is not an ELF file" >&2; exit 1; }
echo "$BIN"
