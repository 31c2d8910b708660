#!/bin/sh
# Runs the seed's master and N workers against each other on 127.0.0.1 and checks the
# master got all ten results:
#   seed_pair.sh N PAUSE_MS master-command... -- worker-command...
# The master gets "127.0.0.1:0 abc" (any free port) and prints "... serving on host:port"
# first; each worker gets "host:port abc PAUSE_MS" (its pause per task, the seed's
# time.sleep). Commands may start with an emulator (wine) or an interpreter (python3).
# With several workers, PAUSE_MS must leave the later ones time to start before the first
# has done all ten tasks (the seed's 1000 does); with one worker the run is deterministic.
# With SEED_REDIS_DIR set (a redis-fixture.sh directory), the pair is task_master_redis and
# task_worker_redis: the master gets "URL NAME" and prints "Put task" first, each worker
# gets "URL NAME PAUSE_MS".
set -u
n=$1
pause=$2
shift 2
master=""
while [ "$1" != "--" ]; do master="$master $1"; shift; done
shift
worker="$*"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ -n "${SEED_REDIS_DIR:-}" ]; then
  ready="Put task"
  master_args="$(cat "$SEED_REDIS_DIR/url") seed-$$"
else
  ready="serving on"
  master_args="127.0.0.1:0 abc"
fi
# shellcheck disable=SC2086
$master $master_args </dev/null >"$tmp/master.out" 2>&1 &
mpid=$!
# Wait for the master's first line (its address, or its first task), at most 60 s.
i=0
until grep -q "$ready" "$tmp/master.out" 2>/dev/null; do
  i=$((i + 1))
  if [ $i -gt 600 ] || ! kill -0 $mpid 2>/dev/null; then
    echo "master did not start:"; cat "$tmp/master.out"; exit 1
  fi
  sleep 0.1
done
if [ -n "${SEED_REDIS_DIR:-}" ]; then
  worker_args=$master_args
else
  worker_args="$(sed -n 's/.*serving on \([0-9.:]*\).*/\1/p' "$tmp/master.out" | head -1) abc"
fi
pids=""
w=1
while [ $w -le "$n" ]; do
  # shellcheck disable=SC2086
  $worker $worker_args "$pause" </dev/null >"$tmp/worker$w.out" 2>&1 &
  pids="$pids $!"
  w=$((w + 1))
done
rc=0
for p in $pids; do wait "$p" || rc=1; done
wait $mpid || rc=1
w=1
while [ $w -le "$n" ]; do
  echo "--- worker $w"; cat "$tmp/worker$w.out"
  grep -q "worker exit." "$tmp/worker$w.out" || rc=1
  w=$((w + 1))
done
echo "--- master"; cat "$tmp/master.out"
results=$(grep -c "^Result: [0-9]* \* [0-9]* = [0-9]*" "$tmp/master.out")
[ "$results" -eq 10 ] || { echo "expected 10 results, got $results"; rc=1; }
# Each result must be right: n * n = n².
grep "^Result:" "$tmp/master.out" | tr -d '\r' | while read -r _ a _ b _ c; do
  [ "$a" = "$b" ] && [ $((a * a)) -eq "$c" ] || { echo "wrong result: $a * $b = $c"; exit 1; }
done || rc=1
grep -q "master exit." "$tmp/master.out" || rc=1
exit $rc
