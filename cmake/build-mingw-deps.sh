#!/usr/bin/env bash
# Builds the Windows leg's dependencies (cmocka, msgpack-c) from Debian's source packages
# with the mingw-w64 toolchain into PREFIX. Nothing of theirs is kept in the repository.
# Usage: build-mingw-deps.sh WORKDIR PREFIX TOOLCHAIN_FILE. Rebuilds only what is missing.
set -euo pipefail
work=$1 prefix=$2 toolchain=$3
mkdir -p "$work" "$prefix"
. "$(dirname "$0")/debian-source.sh"

[ -e "$prefix/.cmocka-built" ] || fetch cmocka
build cmocka .cmocka-built -DWITH_STATIC_LIB=ON -DWITH_EXAMPLES=OFF -DUNIT_TESTING=OFF
[ -e "$prefix/.msgpack-built" ] || fetch msgpack-c
build msgpack-c .msgpack-built -DMSGPACK_BUILD_TESTS=OFF -DMSGPACK_BUILD_EXAMPLES=OFF \
  -DBUILD_SHARED_LIBS=OFF
