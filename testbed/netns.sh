#!/usr/bin/env bash
# Network namespaces for multi-host tests, sourced by the scenario scripts. Root only.
#
#   netns_up NODES RATE...
#                         NODES namespaces ${NETNS_PREFIX}-n0 .. -n(NODES-1) on one bridge,
#                         node k at ${NETNS_SUBNET}.(k+1); node k's link capped at the k-th
#                         RATE (tc syntax, e.g. 100mbit; the last one given serves every node
#                         after it) in both directions, or uncapped if that RATE is 0
#   netns_down            removes all of it (safe to call twice, or after a failed netns_up)
#   in_node K CMD...      runs CMD inside node K's namespace
#   node_addr K           node K's address
#   node_tx_bytes K       bytes node K has sent on its link so far
#   node_drops K          packets node K's link has dropped so far: "UPLOAD DOWNLOAD" (its
#                         queues overflowing; 0 0 for an uncapped link)
#
# Facts this rests on (Debian, a kernel without modules): veth, bridge and tc tbf are built
# in; there is no netem. Bridged frames go through the host's iptables FORWARD chain when
# br_netfilter is active, and dockerd sets that chain's policy to DROP, so an ACCEPT rule for
# the bridge is added when iptables exists. Nothing is routed off the bridge.
NETNS_PREFIX=${NETNS_PREFIX:-swt}
NETNS_SUBNET=${NETNS_SUBNET:-10.88.0}
NETNS_NODES=0

node_addr() { echo "$NETNS_SUBNET.$(($1 + 1))"; }
in_node() { local k=$1; shift; ip netns exec "$NETNS_PREFIX-n$k" "$@"; }
node_tx_bytes() { in_node "$1" cat /sys/class/net/eth0/statistics/tx_bytes; }
node_drops() {
  local up down
  up=$(tc -n "$NETNS_PREFIX-n$1" -s qdisc show dev eth0 | sed -n 's/.*(dropped \([0-9]*\),.*/\1/p' | head -1)
  down=$(tc -s qdisc show dev "$NETNS_PREFIX-v$1" | sed -n 's/.*(dropped \([0-9]*\),.*/\1/p' | head -1)
  echo "${up:-0} ${down:-0}"
}

# tbf needs a bucket of at least one MTU and enough for ~10 ms at the rate.
tbf_burst() {
  awk -v r="$1" 'BEGIN { r = tolower(r); unit = r; sub(/^[0-9.]+/, "", unit); v = r + 0;
    m = 1; if (unit ~ /^k/) m = 1e3; else if (unit ~ /^m/) m = 1e6; else if (unit ~ /^g/) m = 1e9;
    b = int(v * m / 8 / 100); if (b < 32768) b = 32768; print b }'
}

# The kernel keeps one ARP table for every namespace together, by default at most 1,024
# entries (gc_thresh3) and trimmed above 512: N nodes that all talk to each other need about
# N*N. Past the limit, packets to a neighbour not yet resolved are dropped ("neighbor table
# overflow" in dmesg): at forty and a hundred nodes, dials, keep-alives and whole connections
# timed out at random. Raised (never lowered) to four times N*N, and left so: lowering it
# under another run would break that run.
neighbour_room() {
  local need=$((4 * $1 * $1)) t value
  for t in 1 2 3; do
    value=$((need * t / 3))
    [ "$(cat /proc/sys/net/ipv4/neigh/default/gc_thresh$t)" -ge "$value" ] \
      || echo "$value" > /proc/sys/net/ipv4/neigh/default/gc_thresh$t
  done
}

netns_up() {
  local nodes=$1 bridge="$NETNS_PREFIX-br" k ns host_end burst rate
  shift
  local rates=("$@")
  command -v ip >/dev/null && command -v tc >/dev/null || {
    echo "netns: ip and tc are needed (apt-get install iproute2)" >&2
    return 1
  }
  NETNS_NODES=$nodes
  neighbour_room "$nodes"
  ip link add "$bridge" type bridge
  ip link set "$bridge" up
  if command -v iptables >/dev/null && iptables -w -S FORWARD >/dev/null 2>&1; then
    iptables -w -I FORWARD -i "$bridge" -o "$bridge" -j ACCEPT
  fi
  for ((k = 0; k < nodes; k++)); do
    rate=${rates[k < ${#rates[@]} ? k : ${#rates[@]} - 1]}
    burst=$(tbf_burst "$rate")
    ns="$NETNS_PREFIX-n$k"
    host_end="$NETNS_PREFIX-v$k"
    ip netns add "$ns"
    ip link add "$host_end" type veth peer name eth0 netns "$ns"
    ip link set "$host_end" master "$bridge" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$(node_addr "$k")/24" dev eth0
    ip -n "$ns" link set eth0 up
    if [ "$rate" != 0 ]; then
      # Upload: the node's own eth0. Download: the bridge side of its veth.
      tc -n "$ns" qdisc add dev eth0 root tbf rate "$rate" burst "$burst" latency 100ms
      tc qdisc add dev "$host_end" root tbf rate "$rate" burst "$burst" latency 100ms
    fi
  done
}

netns_down() {
  local bridge="$NETNS_PREFIX-br" ns
  for ns in $(ip netns list 2>/dev/null | awk -v p="$NETNS_PREFIX-n" 'index($1, p) == 1 { print $1 }'); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  if command -v iptables >/dev/null; then
    while iptables -w -D FORWARD -i "$bridge" -o "$bridge" -j ACCEPT 2>/dev/null; do :; done
  fi
  ip link del "$bridge" 2>/dev/null || true
}
