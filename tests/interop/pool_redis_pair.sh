#!/bin/sh
# Runs examples/pool_redis: the master, then two workers started separately, against the
# redis-fixture.sh server in DIR; the master's output must be the squares in order.
#   pool_redis_pair.sh DIR command...   (command may start with an emulator: wine)
set -u
dir=$1
shift
url=$(cat "$dir/url")
name="example-$$"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$@" "$url" "$name" </dev/null >"$tmp/master.out" 2>&1 &
mpid=$!
"$@" --worker "$url" "$name" </dev/null >"$tmp/w1.out" 2>&1 &
w1=$!
"$@" --worker "$url" "$name" </dev/null >"$tmp/w2.out" 2>&1 &
w2=$!
rc=0
wait $mpid || rc=1
wait $w1 || rc=1
wait $w2 || rc=1
for f in master w1 w2; do echo "--- $f"; cat "$tmp/$f.out"; done
exit $rc
