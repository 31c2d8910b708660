#!/usr/bin/env bash
# Builds the Linux legs' own copy of hiredis (with hiredis_ssl) from Debian 13's source
# package into PREFIX, so that both legs use one hiredis version (Debian 12 ships 0.14.1,
# whose networking is POSIX-only). Static and position-independent: it links into the
# shared library, and into the sanitizer legs (a library built without ASan is fine there).
# Usage: build-linux-deps.sh WORKDIR PREFIX. Rebuilds only what is missing.
set -euo pipefail
work=$1 prefix=$2 toolchain=
mkdir -p "$work" "$prefix"
. "$(dirname "$0")/debian-source.sh"

[ -e "$prefix/.hiredis-built" ] || fetch_newer hiredis 1.2.0
build hiredis .hiredis-built -DBUILD_SHARED_LIBS=OFF -DDISABLE_TESTS=ON -DENABLE_SSL=ON \
  -DCMAKE_POSITION_INDEPENDENT_CODE=ON
