#!/bin/sh
# one-machine.sh: several dmuc nodes on one machine, for tests and for learning.
#
# Each node is a network, mount and UTS namespace of its own, with a veth on a bridge of the
# host, its own /run (a tmpfs) and its own /etc/dmuc, /var/lib/{dmuc,kubelet,containerd,cni}
# and /var/log/{dmuc,pods,containers} (bind mounts of NODES/NAME/...). Inside it, dmucd and
# dmucctl run as on a machine of their own, with their default paths:
#
#   one-machine.sh up                      # the bridge: dmucbr0, 198.18.0.1/24 (add makes it too)
#   one-machine.sh add w1 198.18.0.11
#   one-machine.sh run w1 -- dmucctl join ...
#   one-machine.sh run w1 -- dmucd --config /etc/dmuc/cluster.toml --var cgroup-root=/w1
#   one-machine.sh list
#   one-machine.sh run w1 -- dmucctl reset --yes     # then:
#   one-machine.sh del w1 [--purge]
#   one-machine.sh down                    # the bridge, once no node is left
#
# docs/operations.md, "On one machine", is the whole recipe. What it uses: iproute2,
# util-linux (unshare, nsenter, mount, findmnt), root. Not `ip netns exec`: that remounts /sys
# and hides the cgroup hierarchies the kubelet needs.
#
# Environment (the defaults in brackets):
#   DMUC_BRIDGE      the bridge [dmucbr0]
#   DMUC_BRIDGE_IP   the host's address on it, with its prefix [198.18.0.1/24]
#   DMUC_NODES       where the nodes' directories are [/var/lib/dmuc-nodes]
#   DMUC_NODES_RUN   where their namespaces are kept [/run/dmuc-nodes]
set -eu

BRIDGE=${DMUC_BRIDGE:-dmucbr0}
BRIDGE_IP=${DMUC_BRIDGE_IP:-198.18.0.1/24}
NODES=${DMUC_NODES:-/var/lib/dmuc-nodes}
RUN=${DMUC_NODES_RUN:-/run/dmuc-nodes}
# A node's own directories: NODES/NAME/<dir> is mounted on <path> inside it.
DIRS="etc-dmuc:/etc/dmuc var-lib-dmuc:/var/lib/dmuc kubelet:/var/lib/kubelet
containerd:/var/lib/containerd cni:/var/lib/cni log-dmuc:/var/log/dmuc pods:/var/log/pods
containers:/var/log/containers"

me=$(basename "$0")
die() {
  echo "$me: $*" >&2
  exit 1
}

usage() {
  sed -n '2,/^set -eu/p' "$0" | sed -e '/^set -eu/d' -e 's/^# \{0,1\}//'
  exit "${1:-0}"
}

# A node's name: a host name and, with "veth-", an interface name (15 characters at most).
check_name() {
  case $1 in
  '' | -* | *[!a-z0-9-]*) die "node name '$1': use lowercase letters, digits and '-'" ;;
  esac
  [ ${#1} -le 10 ] || die "node name '$1': 10 characters at most (its veth is veth-NAME)"
}

exists() { [ -e "$RUN/$1.mnt" ] || ip netns list | grep -qx "dmuc-$1\( (id: [0-9]*)\)\{0,1\}"; }

# nsenter into NAME's namespaces, then "$@".
enter() {
  name=$1
  shift
  exists "$name" || die "no node '$name' (one-machine.sh list)"
  exec nsenter --net="/run/netns/dmuc-$name" --mount="$RUN/$name.mnt" --uts="$RUN/$name.uts" -- "$@"
}

# The PIDs in NAME's network namespace (ip netns pids).
pids() { ip netns pids "dmuc-$1" 2>/dev/null | tr '\n' ' ' | sed 's/ $//'; }

bridge_up() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$BRIDGE_IP" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    echo "bridge $BRIDGE: $BRIDGE_IP"
  fi
}

add() {
  [ $# -eq 2 ] || die "usage: $me add NAME IP (the node's address on $BRIDGE, e.g. 198.18.0.11)"
  name=$1
  ip=$2
  check_name "$name"
  case $ip in
  */*) ;;
  *) ip="$ip/${BRIDGE_IP#*/}" ;;
  esac
  exists "$name" && die "node '$name' exists ($me del $name first)"
  gw=${BRIDGE_IP%/*}
  bridge_up
  # The namespaces' files, on a mount of their own that does not propagate (unshare(1)).
  mkdir -p "$RUN"
  if ! mountpoint -q "$RUN"; then
    mount --bind "$RUN" "$RUN"
    mount --make-private "$RUN"
  fi
  binds=
  for d in $DIRS; do
    mkdir -p "$NODES/$name/${d%%:*}"
    binds="$binds $NODES/$name/${d%%:*}:${d#*:}"
  done
  ip netns add "dmuc-$name"
  ip link add "veth-$name" type veth peer name eth0 netns "dmuc-$name"
  ip link set "veth-$name" master "$BRIDGE" up
  touch "$RUN/$name.mnt" "$RUN/$name.uts"
  # In the new mount namespace: what it copied of the host's mounts under /run and the node's
  # own directories is let go first (the host's pods' volumes and network namespaces, which a
  # copy would keep alive), then the node's own are mounted there.
  nsenter --net="/run/netns/dmuc-$name" -- \
    unshare --mount="$RUN/$name.mnt" --uts="$RUN/$name.uts" --propagation private \
    sh -eu -c '
      name=$1 ip=$2 gw=$3
      shift 3
      hostname "$name"
      ip link set lo up
      ip addr add "$ip" dev eth0
      ip link set eth0 up
      ip route add default via "$gw"
      for b in "$@"; do
        at=${b#*:}
        findmnt -rn -o TARGET | grep -E "^$at(/|\$)" | sort -r | while read -r m; do
          umount -l "$m" 2>/dev/null || true
        done
      done
      findmnt -rn -o TARGET | grep -E "^/run(/|\$)" | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
      done
      mount -t tmpfs -o mode=0755 tmpfs /run
      for b in "$@"; do
        mkdir -p "${b#*:}"
        mount --bind "${b%%:*}" "${b#*:}"
      done
    ' sh "$name" "$ip" "$gw" $binds
  echo "node $name: $ip on $BRIDGE, directories in $NODES/$name ($me run $name -- COMMAND)"
}

del() {
  purge=
  name=
  for a in "$@"; do
    case $a in
    --purge) purge=1 ;;
    *) name=$a ;;
    esac
  done
  [ -n "$name" ] || die "usage: $me del NAME [--purge]"
  check_name "$name"
  exists "$name" || { [ -n "$purge" ] && [ -d "$NODES/$name" ]; } || die "no node '$name'"
  p=$(pids "$name")
  [ -z "$p" ] || die "node '$name' still runs processes ($p): stop them first, e.g. '$me run $name -- dmucctl reset'"
  if [ -e "$RUN/$name.mnt" ]; then
    umount "$RUN/$name.mnt" "$RUN/$name.uts" 2>/dev/null || true
    rm -f "$RUN/$name.mnt" "$RUN/$name.uts"
  fi
  if ip netns list | grep -q "^dmuc-$name\b"; then
    ip netns del "dmuc-$name" # its veth goes with it
  fi
  echo "node $name: its namespaces and veth-$name removed"
  if [ -n "$purge" ]; then
    rm -rf "${NODES:?}/$name"
    echo "node $name: removed $NODES/$name"
  elif [ -d "$NODES/$name" ]; then
    echo "node $name: kept $NODES/$name (--purge removes it)"
  fi
}

list() {
  [ -d "$RUN" ] || return 0
  for f in "$RUN"/*.mnt; do
    [ -e "$f" ] || continue
    name=$(basename "$f" .mnt)
    addr=$(ip -n "dmuc-$name" -4 -o addr show dev eth0 2>/dev/null | awk '{print $4}')
    n=$(pids "$name" | wc -w)
    echo "$name ${addr:--} $n processes"
  done
}

down() {
  left=$(list)
  [ -z "$left" ] || die "nodes left: $(echo "$left" | cut -d' ' -f1 | tr '\n' ' ')($me del NAME first)"
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link del "$BRIDGE"
    echo "bridge $BRIDGE removed"
  fi
  if mountpoint -q "$RUN"; then umount "$RUN"; fi
  rmdir "$RUN" 2>/dev/null || true
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
up) bridge_up ;;
add) add "$@" ;;
run)
  [ $# -ge 1 ] || die "usage: $me run NAME [-- COMMAND...]"
  name=$1
  shift
  [ "${1:-}" = -- ] && shift
  [ $# -gt 0 ] || set -- "${SHELL:-/bin/sh}"
  enter "$name" "$@"
  ;;
del) del "$@" ;;
list) list ;;
down) down ;;
-h | --help | help) usage ;;
*) usage 2 >&2 ;;
esac
