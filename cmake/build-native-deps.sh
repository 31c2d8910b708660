#!/usr/bin/env bash
# Builds msgpack-c 6.x (the renamed CMake package, library and .pc file) natively into
# PREFIX from the upstream tarball of a newer Debian suite's source package, for the
# linux-release leg: Debian 12 ships 4.x, so this is how CI checks that multiproc finds,
# builds with and installs package files for the 6.x names.
# Usage: build-native-deps.sh WORKDIR PREFIX. Exits 3 if no 6.x source can be fetched.
set -euo pipefail
work=$1 prefix=$2 toolchain=
mkdir -p "$work" "$prefix"
. "$(dirname "$0")/debian-source.sh"

if [ ! -e "$prefix/.msgpack6-built" ]; then
  fetch_newer msgpack-c 6 || exit 3
fi
build msgpack-c .msgpack6-built -DMSGPACK_BUILD_TESTS=OFF -DMSGPACK_BUILD_EXAMPLES=OFF
