# Sourced by cmake/build-*-deps.sh: fetches Debian source packages into the current folder.
#
# fetch_source PKG [SUITE] leaves PKG's unpacked tree in ./PKG-*/. With SUITE (e.g. trixie,
# for hiredis 1.2.0, whose networking builds for Windows too), the source package is read
# through a private sources file and lists folder under ./apt-SUITE/ from the same Debian
# archive as the machine's own sources: the machine's package sources stay untouched.

# The first Debian archive URI the machine's sources name (deb822 or one-line format).
debian_archive_uri() {
  local uri
  uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
    awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }')
  [ -n "$uri" ] || uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }')
  echo "${uri:-http://deb.debian.org/debian}"
}

fetch_source() {
  local pkg=$1 suite=${2:-}
  ls -d "$pkg"-*/ >/dev/null 2>&1 && return 0
  local opts=()
  if [ -n "$suite" ]; then
    local dir=$PWD/apt-$suite
    mkdir -p "$dir/lists/partial"
    cat >"$dir/$suite.sources" <<SRC
Types: deb-src
URIs: $(debian_archive_uri)
Suites: $suite
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    opts=(-o Dir::Etc::SourceList="$dir/$suite.sources" -o Dir::Etc::SourceParts=/dev/null
          -o Dir::State::Lists="$dir/lists")
    if [ ! -e "$dir/lists/.updated" ]; then
      apt-get "${opts[@]}" update -qq >"$dir/update.log" 2>&1 || { cat "$dir/update.log"; return 1; }
      touch "$dir/lists/.updated"
    fi
  fi
  # apt-get source downloads as root when _apt cannot write here; that is expected.
  apt-get "${opts[@]}" source -qq "$pkg" >/dev/null 2>&1 || apt-get "${opts[@]}" source "$pkg"
}

# The one hiredis both legs use: Debian 13's source package (see docs/redis.md).
HIREDIS_SUITE=trixie
HIREDIS_VERSION=1.2.0

# build PKG STAMP [cmake options...]: configures, builds and installs PKG's source package
# into $prefix once (STAMP marks it done). $suite_of_PKG picks a suite (see fetch_source);
# the array DEPS_CMAKE_ARGS holds options common to every package of a leg (a toolchain).
build() {
  local pkg=$1 stamp=$2
  shift 2
  [ -e "$prefix/$stamp" ] && return 0
  local suite=
  [ "$pkg" = hiredis ] && suite=$HIREDIS_SUITE
  fetch_source "$pkg" $suite || exit 1
  local src
  src=$(ls -d "$pkg"-*/ | head -n1)
  if [ "$pkg" = hiredis ] && [ "$src" != "hiredis-$HIREDIS_VERSION/" ]; then
    echo "expected hiredis $HIREDIS_VERSION from Debian $HIREDIS_SUITE, found $src" >&2
    exit 1
  fi
  cmake -S "$src" -B "build-$pkg" "${DEPS_CMAKE_ARGS[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$prefix" "$@" >"build-$pkg.log" 2>&1 ||
    { cat "build-$pkg.log"; exit 1; }
  cmake --build "build-$pkg" -j2 >>"build-$pkg.log" 2>&1 || { cat "build-$pkg.log"; exit 1; }
  cmake --install "build-$pkg" >>"build-$pkg.log" 2>&1 || { cat "build-$pkg.log"; exit 1; }
  touch "$prefix/$stamp"
}
