#!/bin/sh
# A private redis-server for the tests (Debian's redis-server, never one that happens to be
# running): a free loopback port, its own data directory, persistence on (append-only file,
# fsync at every write) so that a restart keeps what Redis acknowledged, and three users:
#   default (no password), alice / alice-pw (everything), outsider / outsider-pw (only keys
#   other:*, so the queue's keys are refused with NOPERM).
#   redis-fixture.sh start DIR [redis-server options...]  writes DIR/port, DIR/pid, DIR/url
#   redis-fixture.sh start-tls DIR  the same over TLS only (rediss://), with a CA of its own
#                                   (DIR/ca.crt) and a certificate for 127.0.0.1
#   redis-fixture.sh stop DIR       kill -9 (what Redis acknowledged is in its files)
#   redis-fixture.sh resume DIR     the same server again, on the same port and data
#   redis-fixture.sh restart DIR    stop, then resume
# The Windows tests (under Wine) reach the server on 127.0.0.1 like the Linux ones.
set -u
cmd=$1
dir=$2
shift 2

cli() { # $1 = port, then redis-cli arguments
  p=$1
  shift
  if [ -f "$dir/ca.crt" ]; then
    redis-cli --tls --cacert "$dir/ca.crt" -p "$p" "$@"
  else
    redis-cli -p "$p" "$@"
  fi
}

ready() { # $1 = port, $2 = pid: 0 once the server answers PING, 1 if it died
  i=0
  while [ $i -lt 300 ]; do
    kill -0 "$2" 2>/dev/null || return 1
    [ "$(cli "$1" ping 2>/dev/null)" = PONG ] && return 0
    sleep 0.05
    i=$((i + 1))
  done
  return 1
}

launch() { # $1 = port; the options of the first start are kept in $dir/opts
  scheme=redis
  ports="--port $1"
  if [ -f "$dir/ca.crt" ]; then
    scheme=rediss
    ports="--port 0 --tls-port $1 --tls-cert-file $dir/server.crt --tls-key-file $dir/server.key"
    ports="$ports --tls-ca-cert-file $dir/ca.crt --tls-auth-clients no"
  fi
  # shellcheck disable=SC2046,SC2086
  redis-server "$dir/redis.conf" $ports $(cat "$dir/opts") </dev/null >>"$dir/server.log" 2>&1 &
  echo $! >"$dir/pid"
  ready "$1" $! && echo "$1" >"$dir/port" && echo "$scheme://127.0.0.1:$1/0" >"$dir/url"
}

make_certs() {
  (
    cd "$dir" || exit 1
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 \
      -subj /CN=multiproc-test-ca
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1
    printf 'subjectAltName=IP:127.0.0.1\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt \
      -days 2 -extfile server.ext
  ) >"$dir/certs.log" 2>&1 || { cat "$dir/certs.log"; exit 1; }
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
start | start-tls)
  command -v redis-server >/dev/null || { echo "redis-server is not installed"; exit 1; }
  stop
  rm -rf "$dir"
  mkdir -p "$dir/data"
  [ "$cmd" = start ] || make_certs
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
resume | restart)
  [ "$cmd" = resume ] || stop
  launch "$(cat "$dir/port")" || { echo "redis-server did not come back:"; tail "$dir/server.log"; exit 1; }
  echo "redis-server back: $(cat "$dir/pid")"
  ;;
stop)
  stop
  echo "redis-server stopped"
  ;;
*)
  echo "usage: $0 start|start-tls|stop|resume|restart DIR [redis-server options]" >&2
  exit 2
  ;;
esac
