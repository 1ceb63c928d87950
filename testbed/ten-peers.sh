#!/usr/bin/env bash
# Ten hosts on network namespaces, every link capped: one tracker, one seeder holding a file,
# eight peers fetching it at once (two of them killed midway). Real release binaries.
# Checks that every surviving copy is byte-identical and that the seeder uploaded well under
# eight copies' worth; prints a completion table. Root only.
#
#   testbed/ten-peers.sh            environment: SWARM_BIN (default target/release/swarm),
#                                   SIZE_MIB (256), RATE (100mbit), KILL (2)
set -euo pipefail
cd "$(dirname "$0")/.."
. testbed/netns.sh
BIN=$(realpath "${SWARM_BIN:-target/release/swarm}")
SIZE_MIB=${SIZE_MIB:-256}
RATE=${RATE:-100mbit}
KILL=${KILL:-2}
FETCHERS=8
SIZE=$((SIZE_MIB * 1024 * 1024))
[ "$(id -u)" = 0 ] || { echo "ten-peers: needs root (network namespaces)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "ten-peers: no binary at $BIN (cargo build --release)" >&2; exit 1; }

WORK=$(mktemp -d /var/tmp/swarm-ten-peers.XXXXXX)
cleanup() {
  netns_down
  rm -rf "$WORK"
}
trap cleanup EXIT
started=$(date +%s.%N)
say() { printf '[%5.1fs] %s\n' "$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')" "$*"; }
fail() { echo "ten-peers: FAILED: $*" >&2; for f in "$WORK"/*.err; do echo "--- $f" >&2; tail -5 "$f" >&2; done; exit 1; }
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

netns_down
netns_up 10 "$RATE"
say "10 namespaces up, every link capped at $RATE each way"

mkdir -p "$WORK/share"
head -c "$SIZE" /dev/urandom > "$WORK/share/big.bin"
say "made a $SIZE_MIB MiB file of random bytes"

in_node 0 "$BIN" tracker --listen "$(node_addr 0):7070" --state "$WORK/n0" \
  > "$WORK/n0.out" 2> "$WORK/n0.err" &
wait_for "$WORK/n0.out" 10 "peers use --tracker" || fail "the tracker did not start"
tracker_id=$(sed -n 's/^tracker \([0-9a-f]*\) .*/\1/p' "$WORK/n0.out")
TRACKER="$tracker_id@$(node_addr 0):7070"

in_node 1 "$BIN" seed "$WORK/share" --tracker "$TRACKER" --listen "$(node_addr 1):7000" \
  --state "$WORK/n1" > "$WORK/n1.out" 2> "$WORK/n1.err" &
wait_for "$WORK/n1.out" 60 "big.bin" || fail "the seeder did not start"
file_id=$(awk '/big.bin/ { print $1; exit }' "$WORK/n1.out")
seeder_id=$(in_node 0 "$BIN" peers "$file_id" --tracker "$TRACKER" --state "$WORK/query" --json |
  sed -n 's/.*"peer": "\([0-9a-f]*\)".*/\1/p' | head -1)
[ -n "$seeder_id" ] || fail "the tracker does not list the seeder"
say "seeder ${seeder_id:0:8} at $(node_addr 1) shares big.bin as ${file_id:0:16}"

tx_before=$(node_tx_bytes 1)
declare -A pid
for ((k = 2; k < 2 + FETCHERS; k++)); do
  in_node "$k" "$BIN" fetch "$file_id" --tracker "$TRACKER" -o "$WORK/n$k" --state "$WORK/n$k/state" \
    --listen "$(node_addr "$k"):7000" --seed --json > "$WORK/n$k.json" 2> "$WORK/n$k.err" &
  pid[$k]=$!
  disown "${pid[$k]}" # killed on purpose below: no job-control noise
done
fetch_started=$(date +%s.%N)
say "$FETCHERS peers fetch at once"

rate_bits=$(bits_per_second "$RATE")
floor=$(awk -v s="$SIZE" -v r="$rate_bits" 'BEGIN { print s * 8 / r }')
# Kill the last KILL fetchers at 40% of the time one copy takes over one link.
sleep "$(awk -v f="$floor" 'BEGIN { print f * 0.4 }')"
killed=()
for ((k = 2 + FETCHERS - KILL; k < 2 + FETCHERS; k++)); do
  grep -q seconds "$WORK/n$k.json" && fail "peer n$k finished before the kill; use a bigger SIZE_MIB"
  kill -9 "${pid[$k]}"
  killed+=("$k")
done
say "killed ${#killed[@]} fetching peers with SIGKILL: ${killed[*]/#/n}"

survivors=$((FETCHERS - KILL))
limit=$(awk -v f="$floor" 'BEGIN { print int(f * 20) + 60 }')
for ((k = 2; k < 2 + survivors; k++)); do
  wait_for "$WORK/n$k.json" "$limit" '"seconds"' || fail "peer n$k did not finish within ${limit}s"
done
tx_after=$(node_tx_bytes 1)
say "all $survivors surviving peers finished"

for ((k = 2; k < 2 + survivors; k++)); do
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
printf '%-6s %10s %10s %16s %16s\n' PEER SECONDS 'MB/s' 'FROM SEEDER' 'FROM PEERS'
slowest=0
total_seeder=0
total_peers=0
for ((k = 2; k < 2 + survivors; k++)); do
  read -r secs from_seeder from_peers < <(from_report "$WORK/n$k.json")
  printf '%-6s %10.1f %10.1f %13.1f MiB %13.1f MiB\n' "n$k" "$secs" \
    "$(awk -v s="$SIZE" -v t="$secs" 'BEGIN { print s / t / 1e6 }')" \
    "$(awk -v b="$from_seeder" 'BEGIN { print b / 1048576 }')" "$(awk -v b="$from_peers" 'BEGIN { print b / 1048576 }')"
  slowest=$(awk -v a="$slowest" -v b="$secs" 'BEGIN { print (b > a) ? b : a }')
  total_seeder=$((total_seeder + from_seeder))
  total_peers=$((total_peers + from_peers))
done
for k in "${killed[@]}"; do printf '%-6s %10s\n' "n$k" killed; done
uploaded=$((tx_after - tx_before))
copies=$(awk -v u="$uploaded" -v s="$SIZE" 'BEGIN { printf "%.2f", u / s }')
echo
echo "file: $SIZE_MIB MiB; links: $RATE each way; one copy over one link takes ${floor}s"
awk -v t="$slowest" -v f="$floor" -v n="$FETCHERS" 'BEGIN {
  printf "slowest peer: %.1fs = %.2f x one copy over one link (the physical floor here)\n", t, t / f
  printf "               = %.2f x what one server would need for %d copies (%.1fs)\n", t / (n * f), n, n * f }'
echo "seeder uploaded $copies copies' worth ($uploaded bytes on its link, QUIC overhead included)"
echo "surviving peers got $(awk -v a="$total_seeder" 'BEGIN { printf "%.0f", a / 1048576 }') MiB from the seeder and $(awk -v a="$total_peers" 'BEGIN { printf "%.0f", a / 1048576 }') MiB from each other"
echo
awk -v c="$copies" -v n="$FETCHERS" 'BEGIN { exit !(c < n / 2) }' ||
  fail "the seeder uploaded $copies copies: swarming should keep it well under $FETCHERS"
say "ten-peers: PASSED"
