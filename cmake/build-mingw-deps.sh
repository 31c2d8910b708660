#!/usr/bin/env bash
# Builds the Windows leg's dependencies (cmocka, msgpack-c, hiredis) from Debian's source
# packages with the mingw-w64 toolchain into PREFIX. Nothing of theirs is kept in the
# repository. Usage: build-mingw-deps.sh WORKDIR PREFIX TOOLCHAIN_FILE. Rebuilds only what
# is missing.
set -euo pipefail
work=$1 prefix=$2 toolchain=$3
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=debian-source.sh
. "$here/debian-source.sh"
mkdir -p "$work" "$prefix"
cd "$work"
DEPS_CMAKE_ARGS=(-DCMAKE_TOOLCHAIN_FILE="$toolchain")

build cmocka .cmocka-built -DWITH_STATIC_LIB=ON -DWITH_EXAMPLES=OFF -DUNIT_TESTING=OFF
build msgpack-c .msgpack-built -DMSGPACK_BUILD_TESTS=OFF -DMSGPACK_BUILD_EXAMPLES=OFF \
  -DBUILD_SHARED_LIBS=OFF
# No OpenSSL for mingw in Debian: the Windows leg has no hiredis_ssl (rediss:// is MP_ENOTSUP).
build hiredis .hiredis-built -DBUILD_SHARED_LIBS=OFF -DDISABLE_TESTS=ON -DENABLE_SSL=OFF
