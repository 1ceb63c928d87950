# Sourced by the benchmark scripts: a veth pair of a given MTU between the current network
# namespace (the servers') and a new one (the downloads'), in place of loopback.
#
#   veth_up NAME MTU   creates namespace NAME-fetcher joined to this one by a veth pair of MTU
#                      bytes, this end at 10.77.0.1, the other at 10.77.0.2; sets serve_ip,
#                      fetch_ip, and fetch (the command prefix that runs a download there)
#   veth_down NAME     removes the namespace (and with it the pair)
#
# Without veth_up, serve_ip and fetch_ip are loopback and fetch is empty.
serve_ip=127.0.0.1
fetch_ip=127.0.0.1
fetch=()

veth_up() {
  local name=$1 mtu=$2
  ip netns add "$name-fetcher"
  ip link add "$name-serve" type veth peer name "$name-fetch"
  ip link set "$name-fetch" netns "$name-fetcher"
  ip addr add 10.77.0.1/24 dev "$name-serve"
  ip link set "$name-serve" mtu "$mtu" up
  ip -n "$name-fetcher" addr add 10.77.0.2/24 dev "$name-fetch"
  ip -n "$name-fetcher" link set "$name-fetch" mtu "$mtu" up
  ip -n "$name-fetcher" link set lo up
  serve_ip=10.77.0.1
  fetch_ip=10.77.0.2
  fetch=(ip netns exec "$name-fetcher")
}

veth_down() {
  ip netns del "$1-fetcher" 2>/dev/null || true
}
