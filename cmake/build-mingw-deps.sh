#!/usr/bin/env bash
# Builds the Windows leg's dependencies (cmocka, msgpack-c) from Debian's source packages
# with the mingw-w64 toolchain into PREFIX. Nothing of theirs is kept in the repository.
# Usage: build-mingw-deps.sh WORKDIR PREFIX TOOLCHAIN_FILE. Rebuilds only what is missing.
set -euo pipefail
work=$1 prefix=$2 toolchain=$3
mkdir -p "$work" "$prefix"
cd "$work"

fetch() { # $1 = source package; leaves its unpacked tree in ./$1-*/
  local pkg=$1
  if ! ls -d "$pkg"-*/ >/dev/null 2>&1; then
    # apt-get source downloads as root when _apt cannot write here; that is expected.
    apt-get source -qq "$pkg" >/dev/null 2>&1 || apt-get source "$pkg"
  fi
}

build() { # $1 = source package, $2 = stamp file, rest = cmake options
  local pkg=$1 stamp=$2; shift 2
  [ -e "$prefix/$stamp" ] && return 0
  fetch "$pkg"
  local src
  src=$(ls -d "$pkg"-*/ | head -n1)
  cmake -S "$src" -B "build-$pkg" -DCMAKE_TOOLCHAIN_FILE="$toolchain" \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$prefix" "$@" >"build-$pkg.log" 2>&1 ||
    { cat "build-$pkg.log"; exit 1; }
  cmake --build "build-$pkg" -j"$(nproc)" >>"build-$pkg.log" 2>&1 || { cat "build-$pkg.log"; exit 1; }
  cmake --install "build-$pkg" >>"build-$pkg.log" 2>&1 || { cat "build-$pkg.log"; exit 1; }
  touch "$prefix/$stamp"
}

build cmocka .cmocka-built -DWITH_STATIC_LIB=ON -DWITH_EXAMPLES=OFF -DUNIT_TESTING=OFF
build msgpack-c .msgpack-built -DMSGPACK_BUILD_TESTS=OFF -DMSGPACK_BUILD_EXAMPLES=OFF \
  -DBUILD_SHARED_LIBS=OFF
