# Shell functions for building dependencies from Debian's source packages into a prefix in
# the build folder (sourced by build-mingw-deps.sh and build-native-deps.sh). Nothing of
# theirs is kept in the repository. The caller sets: work (download and build folder),
# prefix (install prefix), toolchain (a CMake toolchain file, or empty for a native build).

# The first Debian archive URI the machine's own sources name (deb822 or one-line format):
# CI machines may reach only their configured mirror.
debian_archive_uri() {
  local uri
  uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
    awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }')
  [ -n "$uri" ] || uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }')
  echo "${uri:-http://deb.debian.org/debian}"
}

# fetch PKG: leaves PKG's unpacked tree in $work/PKG-*/ (Debian 12's version).
fetch() {
  local pkg=$1
  if ! ls -d "$work/$pkg"-*/ >/dev/null 2>&1; then
    # apt-get source downloads as root when _apt cannot write here; that is expected.
    (cd "$work" && { apt-get source -qq "$pkg" >/dev/null 2>&1 || apt-get source "$pkg"; })
  fi
}

# fetch_newer PKG VERSION: leaves the upstream tree of PKG's newest version VERSION[.x] (a
# major version such as 6, or an exact upstream version such as 1.2.0) from a newer Debian
# suite (trixie, then sid) in $work/PKG-*/. apt reads a private source list
# and private indexes, so the machine's own package sources are never changed. Only the
# upstream tarball is needed for a build.
fetch_newer() {
  local pkg=$1 want=$2 suite lists list versions v
  ls -d "$work/$pkg-$want"*/ >/dev/null 2>&1 && return 0
  for suite in trixie sid; do
    lists=$work/apt-$suite-lists # apt update removes any other file from this folder
    list=$work/apt-$suite.sources
    mkdir -p "$lists/partial"
    printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$(debian_archive_uri)" "$suite" >"$list"
    local opts=(-o "Dir::Etc::SourceList=$list" -o Dir::Etc::SourceParts=/dev/null
                -o "Dir::State::Lists=$lists")
    apt-get "${opts[@]}" update -qq >/dev/null 2>&1 || continue
    versions=$(apt-cache "${opts[@]}" showsrc "$pkg" 2>/dev/null | sed -n 's/^Version: //p' |
               grep -E "^${want//./\\.}([.-]|$)" | sort -rV)
    for v in $versions; do
      if (cd "$work" && apt-get "${opts[@]}" source -qq --download-only --tar-only "$pkg=$v" \
            >/dev/null 2>&1); then
        local tarball
        tarball=$(ls "$work/${pkg}_${v%-*}".orig.tar.* | head -n1)
        tar -C "$work" -xf "$tarball" && return 0
      fi
    done
  done
  return 1
}

# build PKG STAMP [cmake options...]: configures, builds and installs $work/PKG-*/ into
# $prefix with CMake (Release), once: STAMP in $prefix records that it is done.
build() {
  local pkg=$1 stamp=$2
  shift 2
  [ -e "$prefix/$stamp" ] && return 0
  local src log=$work/build-$pkg.log
  src=$(ls -d "$work/$pkg"-*/ | sort -rV | head -n1)
  local args=(-S "$src" -B "$work/build-$pkg" -DCMAKE_BUILD_TYPE=Release
              -DCMAKE_INSTALL_PREFIX="$prefix" "$@")
  [ -n "$toolchain" ] && args+=(-DCMAKE_TOOLCHAIN_FILE="$toolchain")
  { cmake "${args[@]}" && cmake --build "$work/build-$pkg" -j2 && cmake --install "$work/build-$pkg"; } \
    >"$log" 2>&1 || { tail -n 40 "$log"; return 1; }
  touch "$prefix/$stamp"
}
