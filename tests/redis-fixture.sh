#!/bin/sh
# A private redis-server for the tests (Debian's redis-server, never one that happens to be
# running): a free loopback port, its own data directory, persistence on (append-only file,
# fsync at every write) so that a restart keeps what Redis acknowledged, and three users:
#   default (no password), alice / alice-pw (everything), outsider / outsider-pw (only keys
#   other:*, so the queue's keys are refused with NOPERM).
#   redis-fixture.sh start DIR [redis-server options...]  writes DIR/port, DIR/pid, DIR/url
#   redis-fixture.sh restart DIR    kill -9, then the same server again on the same port
#   redis-fixture.sh stop DIR
# The Windows tests (under Wine) reach the server on 127.0.0.1 like the Linux ones.
set -u
cmd=$1
dir=$2
shift 2

ready() { # $1 = port, $2 = pid: 0 once the server answers PING, 1 if it died
  i=0
  while [ $i -lt 300 ]; do
    kill -0 "$2" 2>/dev/null || return 1
    [ "$(redis-cli -p "$1" ping 2>/dev/null)" = PONG ] && return 0
    sleep 0.05
    i=$((i + 1))
  done
  return 1
}

launch() { # $1 = port; the options of the first start are kept in $dir/opts
  # shellcheck disable=SC2046
  redis-server "$dir/redis.conf" --port "$1" $(cat "$dir/opts") </dev/null >>"$dir/server.log" 2>&1 &
  echo $! >"$dir/pid"
  ready "$1" $! && echo "$1" >"$dir/port" && echo "redis://127.0.0.1:$1/0" >"$dir/url"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

stop() {
  [ -f "$dir/pid" ] || return 0
  pid=$(cat "$dir/pid")
  kill -9 "$pid" 2>/dev/null
  while kill -0 "$pid" 2>/dev/null; do sleep 0.02; done
  rm -f "$dir/pid"
}

case "$cmd" in
start)
  command -v redis-server >/dev/null || { echo "redis-server is not installed"; exit 1; }
  stop
  rm -rf "$dir"
  mkdir -p "$dir/data"
  echo "$*" >"$dir/opts"
  cat >"$dir/redis.conf" <<CONF
bind 127.0.0.1
dir $dir/data
daemonize no
save ""
appendonly yes
appendfsync always
user default on nopass ~* &* +@all
user alice on >alice-pw ~* &* +@all
user outsider on >outsider-pw ~other:* &* +@all
CONF
  tries=0
  until launch "$(free_port)"; do
    tries=$((tries + 1))
    [ $tries -lt 5 ] || { echo "redis-server did not start:"; cat "$dir/server.log"; exit 1; }
  done
  echo "redis-server $(cat "$dir/pid") on $(cat "$dir/url"), data in $dir/data"
  ;;
restart)
  stop
  launch "$(cat "$dir/port")" || { echo "redis-server did not restart:"; tail "$dir/server.log"; exit 1; }
  echo "redis-server restarted: $(cat "$dir/pid")"
  ;;
stop)
  stop
  echo "redis-server stopped"
  ;;
*)
  echo "usage: $0 start|restart|stop DIR [redis-server options]" >&2
  exit 2
  ;;
esac
