#!/bin/sh
# Prints the -dev packages that own the .pc files named in Requires.private of the installed
# multiproc.pc under $1 (debian/tmp), as a Depends list: "libmsgpack-dev, libssl-dev".
set -e
pc=$(find "$1" -name multiproc.pc | head -n1)
deps=$(sed -n 's/^Requires.private: *//p' "$pc" | tr ',' ' ')
out=""
for dep in $deps; do
  file=$(pkg-config --variable=pcfiledir "$dep")/$dep.pc
  pkg=$(dpkg-query -S "$file" | head -n1 | cut -d: -f1)
  [ -n "$pkg" ] || { echo "no package owns $file" >&2; exit 1; }
  out="${out:+$out, }$pkg"
done
echo "$out"
