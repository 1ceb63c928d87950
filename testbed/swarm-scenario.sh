#!/usr/bin/env bash
# Hosts on network namespaces, every link capped: one tracker, one seeder holding a file, and
# FETCHERS peers fetching it at once, KILL of them killed midway. Real release binaries.
# Checks that every surviving copy is byte-identical and that the seeder uploaded well under
# one copy per fetcher; prints each peer's completion time as a multiple of the floor and the
# seeder's upload in copies. Root only. ten-peers.sh and forty-peers.sh are presets of it.
#
# Environment:
#   SWARM_BIN   the binary (default target/release/swarm)
#   NAME        what the run is called in its output (scenario)
#   FETCHERS    peers fetching (8)             KILL       of them killed midway (2)
#   SIZE_MIB    the file (256)                 CHUNK      its chunk size (1MiB)
#   SEED_RATE   the seeder's link (100mbit)    RATES      the fetchers' links, a list given
#                                                         out in turn (100mbit)
#   ORIGIN      `nginx`: the file starts on nginx on the tracker's host, and the seeder reads it
#               with `swarm seed --url`; the origin's bytes sent (its access log) are printed
#               against the file's size
#
# The floor is Kumar and Ross's bound on the time any swarm needs to give N peers a file of
# F bits: max(F/u_seed, F/d_min, N*F/(u_seed + sum of the peers' uploads)), taken over the
# peers that survive (every link here is symmetric: u = d). Each peer's own floor puts its own
# link in place of d_min: a fast peer may well finish before the slowest one could.
set -euo pipefail
cd "$(dirname "$0")/.."
. testbed/netns.sh
BIN=$(realpath "${SWARM_BIN:-target/release/swarm}")
NAME=${NAME:-scenario}
FETCHERS=${FETCHERS:-8}
KILL=${KILL:-2}
SIZE_MIB=${SIZE_MIB:-256}
CHUNK=${CHUNK:-1MiB}
SEED_RATE=${SEED_RATE:-100mbit}
read -r -a RATES <<< "${RATES:-100mbit}"
SIZE=$((SIZE_MIB * 1024 * 1024))
[ "$(id -u)" = 0 ] || { echo "$NAME: needs root (network namespaces)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "$NAME: no binary at $BIN (cargo build --release)" >&2; exit 1; }
[ "$KILL" -lt "$FETCHERS" ] || { echo "$NAME: KILL must be under FETCHERS" >&2; exit 1; }

WORK=$(mktemp -d "/var/tmp/swarm-$NAME.XXXXXX")
cleanup() {
  [ -z "${cpu_sampler:-}" ] || kill "$cpu_sampler" 2>/dev/null || true
  netns_down
  [ -n "${KEEP:-}" ] && echo "kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT
started=$(date +%s.%N)
say() { printf '[%5.1fs] %s\n' "$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')" "$*"; }
fail() {
  echo "$NAME: FAILED: $*" >&2
  for f in "$WORK"/*.err; do
    [ -s "$f" ] || continue
    echo "--- $f" >&2
    tail -5 "$f" >&2
  done
  exit 1
}
# Waits up to $2 seconds for file $1 to contain text $3.
wait_for() {
  local deadline=$(($(date +%s) + $2))
  until grep -q -- "$3" "$1" 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}
bits_per_second() {
  awk -v r="$1" 'BEGIN { r = tolower(r); unit = r; sub(/^[0-9.]+/, "", unit); v = r + 0;
    m = 1; if (unit ~ /^k/) m = 1e3; else if (unit ~ /^m/) m = 1e6; else if (unit ~ /^g/) m = 1e9; print v * m }'
}

# Node 0 is the tracker, node 1 the seeder, nodes 2.. the fetchers.
first=2
last=$((first + FETCHERS - 1))
link=("$SEED_RATE" "$SEED_RATE")
for ((k = first; k <= last; k++)); do link[k]=${RATES[(k - first) % ${#RATES[@]}]}; done
netns_down
netns_up $((last + 1)) "${link[@]}"
say "$((last + 1)) namespaces up: seeder at $SEED_RATE, $FETCHERS fetchers at ${RATES[*]} in turn, each way"

mkdir -p "$WORK/share"
head -c "$SIZE" /dev/urandom > "$WORK/share/big.bin"
say "made a $SIZE_MIB MiB file of random bytes"

in_node 0 "$BIN" tracker --listen "$(node_addr 0):7070" --state "$WORK/n0" \
  > "$WORK/n0.out" 2> "$WORK/n0.err" &
wait_for "$WORK/n0.out" 10 "peers use --tracker" || fail "the tracker did not start"
tracker_id=$(sed -n 's/^tracker \([0-9a-f]*\) .*/\1/p' "$WORK/n0.out")
TRACKER="$tracker_id@$(node_addr 0):7070"

shared="$WORK/share/big.bin"
if [ "${ORIGIN:-}" = nginx ]; then
  command -v nginx >/dev/null || { echo "$NAME: ORIGIN=nginx needs nginx (apt-get install nginx)" >&2; exit 1; }
  cat > "$WORK/nginx.conf" <<CONF
daemon off;
user root;
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
events {}
http {
  access_log $WORK/origin.log;
  server { listen $(node_addr 0):8080; root $WORK/share; }
}
CONF
  in_node 0 nginx -c "$WORK/nginx.conf" 2> "$WORK/nginx.err" &
  sleep 0.5
  shared="--url http://$(node_addr 0):8080/big.bin"
  say "the file starts on nginx at $(node_addr 0):8080 (the tracker's host); the seeder reads it from there"
fi
# shellcheck disable=SC2086 # $shared is a path, or --url and a URL.
in_node 1 "$BIN" seed $shared --tracker "$TRACKER" --listen "$(node_addr 1):7000" \
  --chunk-size "$CHUNK" --state "$WORK/n1" > "$WORK/n1.out" 2> "$WORK/n1.err" &
wait_for "$WORK/n1.out" $((60 + SIZE_MIB / 4)) "big.bin" || fail "the seeder did not start"
file_id=$(awk '/big.bin/ { print $1; exit }' "$WORK/n1.out")
seeder_id=$(in_node 0 "$BIN" peers "$file_id" --tracker "$TRACKER" --state "$WORK/query" --json |
  sed -n 's/.*"peer": "\([0-9a-f]*\)".*/\1/p' | head -1)
[ -n "$seeder_id" ] || fail "the tracker does not list the seeder"
say "seeder ${seeder_id:0:8} at $(node_addr 1) shares big.bin as ${file_id:0:16} in $CHUNK chunks"

# The last KILL fetchers are killed; the floor is over the others.
survivors=$((FETCHERS - KILL))
F=$((SIZE * 8))
u_seed=$(bits_per_second "$SEED_RATE")
rates_bits=""
for ((k = first; k < first + survivors; k++)); do rates_bits+=" $(bits_per_second "${link[k]}")"; done
# Prints "swarm_floor" with no argument, or node k's own floor given its link in bits/s.
floor_of() {
  awk -v F="$F" -v us="$u_seed" -v rates="$rates_bits" -v own="${1:-}" 'BEGIN {
    n = split(rates, r, " "); sum = us; dmin = -1
    for (i = 1; i <= n; i++) { sum += r[i]; if (dmin < 0 || r[i] < dmin) dmin = r[i] }
    d = (own == "") ? dmin : own
    t = F / us; if (F / d > t) t = F / d; if (n * F / sum > t) t = n * F / sum
    printf "%.2f\n", t }'
}
floor=$(floor_of)
first_floor=$floor
for ((k = first; k < first + survivors; k++)); do
  own=$(floor_of "$(bits_per_second "${link[k]}")")
  first_floor=$(awk -v a="$first_floor" -v b="$own" 'BEGIN { print (b < a) ? b : a }')
done

# Busy and total CPU time of the whole machine so far, in clock ticks.
cpu_ticks() { awk '/^cpu / { busy = $2 + $3 + $4 + $7 + $8; print busy, busy + $5 + $6 }' /proc/stat; }
read -r busy_before all_before < <(cpu_ticks)
# The average hides a busy start: the machine's busy share every 2 s goes to cpu.log.
(
  read -r b0 a0 < <(cpu_ticks)
  while sleep 2; do
    read -r b1 a1 < <(cpu_ticks)
    awk -v b=$((b1 - b0)) -v a=$((a1 - a0)) 'BEGIN { if (a > 0) printf "%.0f\n", 100 * b / a }'
    b0=$b1 a0=$a1
  done
) > "$WORK/cpu.log" &
cpu_sampler=$!
tx_before=$(node_tx_bytes 1)
declare -A pid
for ((k = first; k <= last; k++)); do
  # `ip netns exec` itself, not in_node: a function in the background is a subshell, and
  # SIGKILL to the subshell would leave the peer running.
  ip netns exec "$NETNS_PREFIX-n$k" "$BIN" fetch "$file_id" --tracker "$TRACKER" -o "$WORK/n$k" \
    --state "$WORK/n$k/state" --listen "$(node_addr "$k"):7000" --seed --json \
    > "$WORK/n$k.json" 2> "$WORK/n$k.err" &
  pid[$k]=$!
  disown "${pid[$k]}" # killed on purpose below: no job-control noise
done
say "$FETCHERS peers fetch at once"

# Killed at 40% of the soonest any survivor could finish.
sleep "$(awk -v f="$first_floor" 'BEGIN { print f * 0.4 }')"
killed=()
for ((k = first + survivors; k <= last; k++)); do
  grep -q seconds "$WORK/n$k.json" && fail "peer n$k finished before the kill; use a bigger SIZE_MIB"
  kill -9 "${pid[$k]}"
  killed+=("$k")
done
[ "$KILL" = 0 ] || say "killed ${#killed[@]} fetching peers with SIGKILL: ${killed[*]/#/n}"

limit=$(awk -v f="$floor" 'BEGIN { print int(f * 20) + 60 }')
for ((k = first; k < first + survivors; k++)); do
  wait_for "$WORK/n$k.json" "$limit" '"seconds"' || fail "peer n$k did not finish within ${limit}s"
done
for k in "${killed[@]}"; do
  # A killed peer that finished would make the run's churn a fiction (as it was before the
  # peers were started by `ip netns exec` itself).
  ! grep -q seconds "$WORK/n$k.json" || fail "peer n$k finished though it was killed"
done
tx_after=$(node_tx_bytes 1)
read -r busy_after all_after < <(cpu_ticks)
kill "$cpu_sampler" 2>/dev/null || true
# Packets the links' queues dropped: the seeder's upload, and the fetchers' both ways.
read -r seeder_drops _ < <(node_drops 1)
fetcher_up_drops=0
fetcher_down_drops=0
for ((k = first; k <= last; k++)); do
  read -r up down < <(node_drops "$k")
  fetcher_up_drops=$((fetcher_up_drops + up))
  fetcher_down_drops=$((fetcher_down_drops + down))
done
say "all $survivors surviving peers finished"

for ((k = first; k < first + survivors; k++)); do
  cmp -s "$WORK/share/big.bin" "$WORK/n$k/big.bin" || fail "n$k's copy differs from the original"
done
say "all $survivors copies are byte-identical to the original"

# received_from in each report: bytes per peer id. Sum the seeder's and everyone else's.
from_report() { # file -> "seconds from_seeder from_peers"
  awk -v seeder="$seeder_id" '
    /"received_from"/ { inside = 1; next }
    inside && /}/ { inside = 0 }
    inside { gsub(/[",:]/, " "); if ($1 == seeder) s += $2; else p += $2 }
    /"seconds"/ { gsub(/[",:]/, " "); secs = $2 }
    END { printf "%s %d %d\n", secs, s, p }' "$1"
}
echo
printf '%-6s %8s %8s %8s %9s %9s %13s %13s\n' PEER LINK SECONDS 'MB/s' 'x FLOOR' 'x OWN' 'FROM SEEDER' 'FROM PEERS'
total_seeder=0
total_peers=0
multiples=""
own_multiples=""
for ((k = first; k < first + survivors; k++)); do
  read -r secs from_seeder from_peers < <(from_report "$WORK/n$k.json")
  own=$(floor_of "$(bits_per_second "${link[k]}")")
  x=$(awk -v t="$secs" -v f="$floor" 'BEGIN { printf "%.2f", t / f }')
  x_own=$(awk -v t="$secs" -v f="$own" 'BEGIN { printf "%.2f", t / f }')
  printf '%-6s %8s %8.1f %8.1f %9s %9s %9.1f MiB %9.1f MiB\n' "n$k" "${link[k]}" "$secs" \
    "$(awk -v s="$SIZE" -v t="$secs" 'BEGIN { print s / t / 1e6 }')" "$x" "$x_own" \
    "$(awk -v b="$from_seeder" 'BEGIN { print b / 1048576 }')" "$(awk -v b="$from_peers" 'BEGIN { print b / 1048576 }')"
  multiples+="$x"$'\n'
  own_multiples+="$x_own"$'\n'
  total_seeder=$((total_seeder + from_seeder))
  total_peers=$((total_peers + from_peers))
done
for k in "${killed[@]}"; do printf '%-6s %8s %8s\n' "n$k" "${link[k]}" killed; done
# p50 and p99 by nearest rank.
percentiles() {
  sort -g | awk 'NF { v[++n] = $1 } END {
    p50 = v[int((n * 50 + 99) / 100)]; p99 = v[int((n * 99 + 99) / 100)]
    printf "p50 %.2fx, p99 %.2fx, slowest %.2fx", p50, p99, v[n] }'
}
uploaded=$((tx_after - tx_before))
copies=$(awk -v u="$uploaded" -v s="$SIZE" 'BEGIN { printf "%.2f", u / s }')
payload=$(awk -v a="$total_seeder" -v s="$SIZE" 'BEGIN { printf "%.2f", a / s }')
echo
echo "file: $SIZE_MIB MiB in $CHUNK chunks; seeder link $SEED_RATE; $survivors surviving fetchers"
echo "floor (Kumar-Ross over the survivors): ${floor}s"
echo "completion / floor:       $(printf '%s' "$multiples" | percentiles)"
echo "completion / own floor:   $(printf '%s' "$own_multiples" | percentiles)"
cpu=$(awk -v b=$((busy_after - busy_before)) -v a=$((all_after - all_before)) 'BEGIN { printf "%.0f", 100 * b / a }')
# Seconds sampled at 85% busy or more, and the first 30 s alone.
read -r saturated first_30s < <(awk '{ if ($1 >= 85) n += 2; if (NR <= 15) { s += $1; k++ } }
  END { printf "%d %.0f\n", n, (k ? s / k : 0) }' "$WORK/cpu.log")
echo "the machine's CPUs were ${cpu}% busy while the peers fetched (${first_30s}% in the first 30 s; ${saturated} s at 85% or more)$([ "$cpu" -lt 85 ] || echo ': CPU-bound, so the times above say little; lower the RATES')"
echo "seeder uploaded $copies copies' worth on its link ($uploaded bytes, QUIC overhead and killed peers' share included)"
if [ "${ORIGIN:-}" = nginx ]; then
  # Fields of the combined log format: the status is $9, the bytes sent $10.
  origin_bytes=$(awk '$7 == "/big.bin" { b += $10 } END { print b + 0 }' "$WORK/origin.log")
  echo "the origin (nginx) sent $(awk -v b="$origin_bytes" -v s="$SIZE" 'BEGIN { printf "%.3f", b / s }') copies of the file ($origin_bytes bytes in $(grep -c ' /big.bin ' "$WORK/origin.log") request(s))"
fi
echo "packets dropped by full link queues: seeder's upload $seeder_drops; fetchers' uploads $fetcher_up_drops, downloads $fetcher_down_drops"
echo "surviving peers got $payload copies from the seeder ($(awk -v a="$total_seeder" 'BEGIN { printf "%.0f", a / 1048576 }') MiB) and $(awk -v a="$total_peers" 'BEGIN { printf "%.0f", a / 1048576 }') MiB from each other"
echo
if [ "${ORIGIN:-}" = nginx ]; then
  awk -v b="$origin_bytes" -v s="$SIZE" 'BEGIN { exit !(b <= s * 1.05) }' ||
    fail "the origin sent $origin_bytes bytes: more than 1.05 times the file"
fi
awk -v c="$copies" -v n="$FETCHERS" 'BEGIN { exit !(c < n / 2) }' ||
  fail "the seeder uploaded $copies copies: swarming should keep it well under $FETCHERS"
say "$NAME: PASSED"
