#!/bin/sh
# Other machines, as far as the network goes (as root): two network namespaces TAG-1 and
# TAG-2, each with only its loopback and one veth link to this namespace, addressed in the
# link-local range 169.254.213.0/24 (never routed off the machine), and a private
# redis-server (redis-fixture.sh) listening on 127.0.0.1 and the host ends of both links.
#   redis-netns.sh up DIR TAG     exit 77: this machine cannot make namespaces or veths
#   redis-netns.sh down DIR TAG
# Inside TAG-i the server is redis://169.254.213.(4i-3):PORT/0 (PORT in DIR/port).
set -u
cmd=$1
dir=$2
tag=$3
fixture=$(dirname "$0")/redis-fixture.sh

down() {
  for i in 1 2; do
    ip netns del "$tag-$i" 2>/dev/null
    ip link del "$tag-h$i" 2>/dev/null
  done
  sh "$fixture" stop "$dir" >/dev/null
}

# Namespaces and links of earlier runs that died before "down" hold the same addresses:
# remove those whose process (the number in the tag) is gone.
sweep() {
  prefix=${tag%%[0-9]*}
  for name in $(ip netns list 2>/dev/null | awk '{print $1}') \
    $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//'); do
    case "$name" in
    "$prefix"[0-9]*-[0-9] | "$prefix"[0-9]*-h[0-9]) ;;
    *) continue ;;
    esac
    pid=${name#"$prefix"}
    pid=${pid%%-*}
    kill -0 "$pid" 2>/dev/null && continue
    ip netns del "$name" 2>/dev/null || ip link del "$name" 2>/dev/null
  done
}

case "$cmd" in
up)
  command -v ip >/dev/null || exit 77
  sweep
  ip netns add "$tag-1" 2>/dev/null || exit 77
  for i in 1 2; do
    [ "$i" = 1 ] || ip netns add "$tag-$i" || { down; exit 1; }
    ip link add "$tag-h$i" type veth peer name "$tag-n$i" 2>/dev/null || { down; exit 77; }
    ip link set "$tag-n$i" netns "$tag-$i" &&
      ip addr add "169.254.213.$((i * 4 - 3))/30" dev "$tag-h$i" &&
      ip link set "$tag-h$i" up &&
      ip netns exec "$tag-$i" ip addr add "169.254.213.$((i * 4 - 2))/30" dev "$tag-n$i" &&
      ip netns exec "$tag-$i" ip link set "$tag-n$i" up &&
      ip netns exec "$tag-$i" ip link set lo up || { down; exit 1; }
  done
  # Clients come from the links, so protected mode (loopback only without a password) is off.
  sh "$fixture" start "$dir" --bind 127.0.0.1 169.254.213.1 169.254.213.5 \
    --protected-mode no || { down; exit 1; }
  ;;
down)
  down
  ;;
*)
  echo "usage: $0 up|down DIR TAG" >&2
  exit 2
  ;;
esac
