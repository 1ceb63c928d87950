#!/usr/bin/env bash
# The compose demo: brings compose.yaml up afresh (tracker, p1 syncing a generated data set,
# p2..p9 syncing it too), waits until every syncing peer has the data set, checks that every copy is
# identical, and prints a completion table: per peer, the time its fetch took and how many
# bytes came from the seed (p1) and from the other peers. Leaves the network running (`just
# down` stops it). Needs Docker Compose (v2 or v1) and the image swarm:local (`just image`).
#
#   SWARM_DATASET_MIB (default 256) and SWARM_RATE (default 100Mbit/s) pass on to compose.yaml;
#   DEMO_TIMEOUT (default 600) bounds the wait in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
# Compose v2 (`docker compose`) when there, else v1 (`docker-compose`, as Debian 12 ships it).
if docker compose version >/dev/null 2>&1; then
  compose() { docker compose -p swarm "$@"; }
else
  compose() { docker-compose -p swarm "$@"; }
fi
timeout=${DEMO_TIMEOUT:-600}
export SWARM_DATASET_MIB=${SWARM_DATASET_MIB:-256}
peers=(p2 p3 p4 p5 p6 p7 p8 p9)

compose down --timeout 30 > /dev/null 2>&1 || true
rm -rf VOLUMES LOGS
mkdir -p LOGS
compose up -d --no-build
started=$(date +%s)
echo "up: a tracker and nine peers; p1 generates a $SWARM_DATASET_MIB MiB data set and shares it"

fetched() { grep -s '"event":"fetched"' "LOGS/$1.log" | grep '"name":"dataset.bin"' | tail -1; }
for peer in "${peers[@]}"; do
  until [ -n "$(fetched "$peer")" ]; do
    if [ $(($(date +%s) - started)) -gt "$timeout" ]; then
      echo "demo: $peer did not get the data set within ${timeout}s; its log:" >&2
      tail -20 "LOGS/$peer.log" >&2 || true
      exit 1
    fi
    sleep 1
  done
done
echo "every peer has the data set, $(($(date +%s) - started)) s after start"

seed_id=$(sed -n 's/^node \([0-9a-f]*\) listening.*/\1/p' LOGS/p1.log | head -1)
original=$(sha256sum VOLUMES/p1/data/dataset.bin | cut -d' ' -f1)
echo
printf '%-5s %9s %9s %15s %15s  %s\n' PEER SECONDS 'MB/s' 'FROM SEED p1' 'FROM PEERS' COPY
bad=0
for peer in "${peers[@]}"; do
  line=$(fetched "$peer")
  seconds=$(sed -n 's/.*"seconds":\([0-9.e+-]*\).*/\1/p' <<< "$line")
  size=$(sed -n 's/.*"size":\([0-9]*\).*/\1/p' <<< "$line")
  sources=$(sed -n 's/.*"received_from":{\([^}]*\)}.*/\1/p' <<< "$line" | tr ',' '\n')
  from_seed=$(awk -F: -v s="\"$seed_id\"" '$1 == s { n += $2 } END { print n + 0 }' <<< "$sources")
  from_peers=$(awk -F: -v s="\"$seed_id\"" '$1 != s && NF == 2 { n += $2 } END { print n + 0 }' <<< "$sources")
  copy=identical
  [ "$(sha256sum "VOLUMES/$peer/data/dataset.bin" | cut -d' ' -f1)" = "$original" ] || { copy=DIFFERENT; bad=1; }
  awk -v p="$peer" -v t="$seconds" -v z="$size" -v s="$from_seed" -v o="$from_peers" -v c="$copy" \
    'BEGIN { printf "%-5s %9.1f %9.1f %11.1f MiB %11.1f MiB  %s\n", p, t, z / t / 1e6, s / 1048576, o / 1048576, c }'
done
echo
[ "$bad" = 0 ] || { echo "demo: some copies differ from the seed's" >&2; exit 1; }
echo "all ${#peers[@]} copies identical to p1's; logs in LOGS/, files in VOLUMES/; just down stops it"
