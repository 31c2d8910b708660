#!/bin/sh
# mprun in a real terminal (a tmux pane), checked by what a person sees on the screen:
#  1. the progress bar appears, updates as jobs end, stays below their output, and is gone
#     at the end, leaving only the output and the next line of the shell;
#  2. Ctrl-C typed in the terminal stops mprun, kills every job and grandchild (checked in
#     the process table), writes the job log without the killed jobs, and mprun ends as
#     Ctrl-C ends programs (Linux: killed by SIGINT, 130 in the shell; Windows under Wine:
#     STATUS_CONTROL_C_EXIT, whose low byte 58 the shell sees).
# Jobs wait for gate files that this script creates, so every screen is awaited, never
# guessed; each wait has a deadline.
# usage: mprun_pty.sh MPRUN MP_TESTCHILD [wine]
set -eu
mprun=$1
child=$2
emu=${3:-}
command -v tmux >/dev/null || { echo "tmux is missing (scripts/dev installs it)"; exit 1; }

work=$(mktemp -d /tmp/mprun-pty-XXXXXX)
# The server's socket lives in the work folder, so nothing is left in /tmp/tmux-UID.
t() { tmux -S "$work/tmux.sock" "$@"; }
cleanup() {
  t kill-server >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*"
  echo "--- screen ---"
  t capture-pane -p -t "$session" 2>/dev/null || true
  exit 1
}

# A path as the program sees it (Z:\... under Wine).
if [ -n "$emu" ]; then
  native() { winepath -w "$1" 2>/dev/null; }
else
  native() { printf '%s' "$1"; }
fi

screen() { t capture-pane -p -t "$session"; }

# Waits until the screen matches an extended regular expression (at most $2 seconds).
wait_screen() {
  i=0
  while ! screen | grep -Eq -- "$1"; do
    i=$((i + 1))
    [ $i -le $(($2 * 10)) ] || fail "the screen never showed /$1/"
    sleep 0.1
  done
}

# Starts a script in a fresh 100x20 terminal (a new session $1); a trap keeps its shell
# alive through Ctrl-C (the shell then prints mprun's exit status), and the pane stays
# after the script ends. The previous session goes only once the new one exists: a server
# left without sessions exits, and a client racing that exit fails.
session=
start() {
  old=$session
  session=$1
  {
    echo "trap 'true' INT"
    cat
    echo 'echo "EXIT=$?"'
  } >"$work/run-$session.sh"
  t -f /dev/null new-session -d -s "$session" -x 100 -y 20 "sh '$work/run-$session.sh'; sleep 3600"
  [ -z "$old" ] || t kill-session -t "$old"
}

nl='
'
m="$emu '$mprun'"
c="'$(native "$child")'"
w=$(native "$work")
sep=/
[ -n "$emu" ] && sep='\'

# ---- 1. the progress bar -------------------------------------------------------------
start bar <<EOF
$m -j 3 $c wait-file '$w${sep}gate{}' print 'done {}$nl' ::: 1 2 3
EOF
wait_screen '^\[\.+\] +0% 0/3 done, 0 failed, 3 running, [0-9.]+/s, ETA \?$' 30
touch "$work/gate1"
wait_screen '^\[#+\.+\] +33% 1/3 done, 0 failed, 2 running, [0-9.]+/s, ETA [0-9:]+$' 30
# The job's output is above the bar: the bar moved down, it did not overwrite it.
screen | grep -v '^$' | head -n 2 | tr '\n' '|' | grep -Eq '^done 1\|\[#+' ||
  fail "the output is not directly above the bar"
touch "$work/gate2" "$work/gate3"
wait_screen '^EXIT=0$' 30
lines=$(screen | grep -v '^$' | tr '\n' '|')
case "$lines" in
"done 1|done 2|done 3|EXIT=0|" | "done 1|done 3|done 2|EXIT=0|") ;;
*) fail "the final screen is not just the output and the exit status: $lines" ;;
esac
echo "ok: the bar updates, stays below the output and is erased at the end"

# ---- 2. Ctrl-C -------------------------------------------------------------------------
mark=$((40000 + $$ % 10000))
# Processes of this run: their command lines start with the test child and hold $mark.
ours() { ps -eo args= | grep -E "^[^ ]*mp_testchild(\.exe)? .*$mark" || true; }
start ctrlc <<EOF
$m -j 2 --line-buffer --joblog '$w${sep}jobs.log' $c spawn-sleep $mark print 'ready{}$nl' wait-file '$w${sep}never' ::: 1 2 3
EOF
wait_screen '^ready1$' 60
wait_screen '^ready2$' 60
n=$(ours | wc -l)
[ "$n" -eq 4 ] || fail "expected 2 jobs and 2 grandchildren, found $n: $(ours)"
t send-keys -t "$session" C-c
wait_screen '^EXIT=[0-9]+$' 30
status=$(screen | sed -n 's/^EXIT=\([0-9]*\)$/\1/p')
want=130
[ -n "$emu" ] && want=58
[ "$status" = "$want" ] || fail "mprun ended with $status, not $want"
i=0
while [ -n "$(ours)" ]; do
  i=$((i + 1))
  [ $i -le 50 ] || fail "processes left after Ctrl-C: $(ours)"
  sleep 0.1
done
! screen | grep -q '^ready3$' || fail "the third job started after Ctrl-C"
[ "$(wc -l <"$work/jobs.log")" -eq 1 ] || fail "killed jobs were logged: $(cat "$work/jobs.log")"
echo "ok: Ctrl-C killed every job and grandchild, logged none of them, exit $status"
