#!/bin/sh
# Fails if a built .exe or .dll (the library's, the tests', the examples') names USER32.dll
# among its imports. mp_testchild is exempt: it stands for any program, and reads its
# command line with shell32's CommandLineToArgvW as such programs do.
# Usage: no-user32.sh OBJDUMP BUILD_DIR
objdump=$1
dir=$2
n=0
bad=0
for f in $(find "$dir" -name '*.exe' -o -name '*.dll' | grep -v -e wineprefix -e mp_testchild -e consumer-work); do
  n=$((n + 1))
  if "$objdump" -p "$f" | grep -qi 'DLL Name: *user32'; then
    echo "imports USER32.dll: $f"
    bad=1
  fi
done
echo "checked $n programs and libraries"
[ "$n" -gt 0 ] && [ "$bad" -eq 0 ]
