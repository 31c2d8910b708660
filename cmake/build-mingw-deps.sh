#!/usr/bin/env bash
# Builds the Windows leg's dependencies (cmocka, msgpack-c, hiredis) from Debian's source
# packages with the mingw-w64 toolchain into PREFIX. Nothing of theirs is kept in the
# repository. hiredis is Debian 13's 1.2.0, the one version both legs use (Debian 12's 0.14.1
# has no Windows networking). Usage: build-mingw-deps.sh WORKDIR PREFIX TOOLCHAIN_FILE.
# Rebuilds only what is missing.
set -euo pipefail
work=$1 prefix=$2 toolchain=$3
mkdir -p "$work" "$prefix"
. "$(dirname "$0")/debian-source.sh"

[ -e "$prefix/.cmocka-built" ] || fetch cmocka
build cmocka .cmocka-built -DWITH_STATIC_LIB=ON -DWITH_EXAMPLES=OFF -DUNIT_TESTING=OFF
[ -e "$prefix/.msgpack-built" ] || fetch msgpack-c
build msgpack-c .msgpack-built -DMSGPACK_BUILD_TESTS=OFF -DMSGPACK_BUILD_EXAMPLES=OFF \
  -DBUILD_SHARED_LIBS=OFF
# No OpenSSL for mingw in Debian: the Windows leg has no hiredis_ssl (rediss:// is MP_ENOTSUP).
[ -e "$prefix/.hiredis-built" ] || fetch_newer hiredis 1.2.0
build hiredis .hiredis-built -DBUILD_SHARED_LIBS=OFF -DDISABLE_TESTS=ON -DENABLE_SSL=OFF
