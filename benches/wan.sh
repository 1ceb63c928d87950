#!/usr/bin/env bash
# swarm across a wide-area path: every transfer goes through wan-relay (testbed/wan-relay),
# which adds half the round-trip time each way, random loss, and a rate cap with a buffer of
# one round trip. Everything runs in a loopback-only network namespace (unshare -n).
#
# For each round-trip time and loss rate, three transfers of one file:
#   quic-perf    one QUIC stream through one relay capped at RATE_ONE (the QUIC ceiling)
#   swarm x1     a swarm fetch from one seeder behind that same relay (--from it)
#   swarm x4     a swarm fetch from four seeders, each behind its own relay capped at RATE_FOUR
# and prints MB/s, the share of the cap reached, and swarm's ratio to quic-perf.
#
# Usage: benches/wan.sh [SIZE_MIB]   (default 512; root, for unshare -n)
# Settings from the environment: RTTS="10 50 100" (ms), LOSSES="0 0.5" (%), RATE_ONE=1gbit,
# RATE_FOUR=250mbit, CONGESTION="by-path" (any of cubic newreno bbr bbr-bound by-path; each is run in turn, by
# SWARM_CONGESTION, for swarm and quic-perf alike), LIMIT=60 (seconds a transfer may take:
# loss-based controllers crawl through random loss, and the table then shows "<" a bound),
# SWARM_BIN (another swarm binary than target/release/swarm), MTU=1500 (the path's: the relays
# drop larger datagrams, and swarm and quic-perf are told their interface carries no more, as
# on a host of such a path: loopback's 64 KiB would have them search for far larger packets).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
size_mib=${1:-512}

if [ -z "${SWARM_WAN_INSIDE:-}" ]; then
  (cd "$root" && cargo build --release -q -p swarm-cli -p wan-relay -p swarm-benches \
    --bin swarm --bin wan-relay --bin quic-perf)
  exec unshare -n env SWARM_WAN_INSIDE=1 "$0" "$@"
fi

ip link set lo up
# Every endpoint on an address of the benchmarking range (RFC 2544), not loopback's: nodes
# choose their congestion controller by the peer's address, and these paths stand for the
# internet, where a loopback or private address would mean the local network.
host=198.18.0.1
ip addr add "$host/15" dev lo
bin=$root/target/release
# SWARM_BIN runs another build of swarm (to compare two builds in one sitting).
swarm=${SWARM_BIN:-$bin/swarm}
rtts=${RTTS:-10 50 100}
losses=${LOSSES:-0 0.5}
rate_one=${RATE_ONE:-1gbit}
rate_four=${RATE_FOUR:-250mbit}
controllers=${CONGESTION:-by-path}
limit=${LIMIT:-60}
mtu=${MTU:-1500}
export SWARM_MAX_DATAGRAM=$((mtu - 28))
work=$(mktemp -d)
pids=()
relays=()
cleanup() {
  for p in "${relays[@]}" "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
file=$work/src/file.bin
mkdir -p "$work/src"
head -c "$((size_mib << 20))" /dev/urandom >"$file"
bytes=$(stat -c %s "$file")
echo "machine: $(nproc) cores, $(uname -r); file: $size_mib MiB; loopback in a private network namespace; path MTU $mtu"
"$bin/wan-relay" --blast 3s

# bits per second from 1gbit / 250mbit
bits() { python3 -c "import re,sys; m=re.fullmatch(r'([0-9.]+)([kmg]?)bit', sys.argv[1]); print(float(m[1])*{'':1,'k':1e3,'m':1e6,'g':1e9}[m[2]])" "$1"; }
cap_one=$(bits "$rate_one")
cap_four=$(bits "$rate_four")

# relay N RTT LOSS RATE: relay $host:810N -> $host:710N (the seeders' and quic-perf's ports)
relay() {
  "$bin/wan-relay" --listen "$host:810$1" --to "$host:710$1" --rtt "$2ms" --loss "$3" \
    --rate "$4" --mtu "$mtu" >/dev/null 2>>"$work/relays.log" &
  relays+=($!)
}
stop_relays() {
  for p in "${relays[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${relays[@]}"; do wait "$p" 2>/dev/null || true; done
  relays=()
}

# timed LABEL OUTPUT COMMAND...: seconds of wall time for the command, its copy checked;
# "-LIMIT" if it had not finished after LIMIT seconds.
timed() {
  local label=$1 out=$2
  shift 2
  local start end status=0
  start=$(date +%s.%N)
  timeout -s KILL "$limit" "$@" >"$work/last.log" 2>&1 || status=$?
  if [ "$status" = 137 ]; then echo "-$limit"; return 0; fi
  if [ "$status" != 0 ]; then
    echo "FAILED: $label" >&2; tail -5 "$work/last.log" >&2; echo "nan"; return 0
  fi
  end=$(date +%s.%N)
  if [ -n "$out" ]; then
    cmp -s "$file" "$out" || { echo "WRONG COPY: $label" >&2; echo "nan"; return 0; }
    rm -f "$out"
  fi
  python3 -c "print($end - $start)"
}

# --- servers: a tracker, four seeders advertising their relay's address, quic-perf ---
SWARM_LOG=warn "$swarm" tracker --listen $host:7070 --state "$work/tracker" >/dev/null 2>&1 &
pids+=($!)
sleep 0.5
start_servers() {
  for i in 1 2 3 4; do
    SWARM_LOG=warn "$swarm" seed "$file" --tracker $host:7070 --state "$work/seed$i" \
      --listen "$host:710$i" --advertise "$host:810$i" >"$work/seed$i.out" 2>/dev/null &
    pids+=($!)
  done
  for i in 1 2 3 4; do
    until grep -q "swarm fetch" "$work/seed$i.out" 2>/dev/null; do sleep 0.1; done
  done
  "$bin/quic-perf" serve --listen $host:7100 --cert "$work/perf.der" >/dev/null &
  pids+=($!)
  until [ -s "$work/perf.der" ]; do sleep 0.1; done
}
stop_servers() {
  for p in "${pids[@]:1}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]:1}"; do wait "$p" 2>/dev/null || true; done
  pids=("${pids[0]}")
  rm -f "$work/perf.der"
}

echo "controller|rtt|loss|what|seconds" >"$work/results"
for controller in $controllers; do
  export SWARM_CONGESTION=$controller
  start_servers
  id=$(head -1 "$work/seed1.out" | awk '{print $1}')
  for rtt in $rtts; do
    for loss in $losses; do
      echo "$controller, ${rtt} ms, ${loss}% loss"
      relay 0 "$rtt" "$loss" "$rate_one"
      relay 1 "$rtt" "$loss" "$rate_one"
      sleep 0.2
      t=$(timed "quic-perf" "" "$bin/quic-perf" fetch --from $host:8100 --cert "$work/perf.der" --size "$bytes")
      echo "$controller|$rtt|$loss|quic-perf|$t" >>"$work/results"
      rm -rf "$work/dl" "$work/f"
      t=$(timed "swarm x1" "$work/dl/file.bin" env SWARM_LOG=warn "$swarm" fetch "$id" \
        --tracker $host:7070 -o "$work/dl" --state "$work/f" --listen $host:0 --from $host:8101)
      echo "$controller|$rtt|$loss|swarm x1|$t" >>"$work/results"
      stop_relays
      for i in 1 2 3 4; do relay "$i" "$rtt" "$loss" "$rate_four"; done
      sleep 0.2
      rm -rf "$work/dl" "$work/f"
      t=$(timed "swarm x4" "$work/dl/file.bin" env SWARM_LOG=warn "$swarm" fetch "$id" \
        --tracker $host:7070 -o "$work/dl" --state "$work/f" --listen $host:0)
      echo "$controller|$rtt|$loss|swarm x4|$t" >>"$work/results"
      stop_relays
    done
  done
  stop_servers
done

python3 - "$work/results" "$bytes" "$cap_one" "$cap_four" "$rate_one" "$rate_four" <<'PY'
import sys
path, size, cap_one, cap_four, rate_one, rate_four = sys.argv[1:]
size, cap_one, cap_four = int(size), float(cap_one) / 8e6, 4 * float(cap_four) / 8e6
rows = [l.rstrip("\n").split("|") for l in open(path)][1:]
mbs = {}
for controller, rtt, loss, what, seconds in rows:
    s = float(seconds)
    # A negative time is a transfer stopped at that limit: its rate is below size / limit.
    mbs[(controller, rtt, loss, what)] = size / 1e6 / s if s == s else float("nan")
print()
print(f"caps: quic-perf and swarm x1 behind one {rate_one} relay ({cap_one:.0f} MB/s); "
      f"swarm x4 behind four {rate_four} relays ({cap_four:.0f} MB/s in all)")
print(f"{'controller':<10} {'RTT':>6} {'loss':>5}  {'quic-perf':>14}  {'swarm x1':>14}  {'swarm x4':>14}  x1/quic-perf")
for key in sorted({k[:3] for k in mbs}, key=lambda k: (k[0], float(k[1]), float(k[2]))):
    q, one, four = (mbs.get(key + (w,), float("nan")) for w in ("quic-perf", "swarm x1", "swarm x4"))
    cell = lambda v, cap: f"<{-v:5.1f} (   -)" if v < 0 else f"{v:6.1f} ({v / cap:4.0%})"
    print(f"{key[0]:<10} {key[1] + ' ms':>6} {key[2] + '%':>5}  {cell(q, cap_one)}  {cell(one, cap_one)}  "
          f"{cell(four, cap_four)}  {one / q if one > 0 and q > 0 else float('nan'):.2f}")
print()
print("targets: swarm x1 >= 80% of its cap at 50 ms; swarm x4 >= 90% of the sum at 50 ms;"
      " with 0.5% loss, swarm x1 >= quic-perf")
PY
