#!/usr/bin/env bash
# How long `swarm seed` takes to share N tiny files with a tracker, the first time (hashing)
# and again with nothing changed (every manifest reused from the state); from start until the
# folder's ticket is printed, i.e. every file is announced.
#   bash benches/seed-many.sh [N] [BIN]     (just seed-many N)
set -euo pipefail
n=${1:-20000}
bin=${2:-target/release/swarm}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/share"
for i in $(seq 1 "$n"); do echo "file $i" > "$work/share/f$i.txt"; done
SWARM_LOG=warn "$bin" tracker --listen 127.0.0.1:0 --state "$work/t" > "$work/t.out" 2>/dev/null &
until grep -q -- "--tracker" "$work/t.out" 2>/dev/null; do sleep 0.1; done
tracker=$(sed 's/.*--tracker //' "$work/t.out")
seed_once() {
  local start end
  start=$(date +%s.%N)
  SWARM_LOG=warn "$bin" seed "$work/share" --tracker "$tracker" --state "$work/s" --listen 127.0.0.1:0 \
    > "$work/seed.out" 2>/dev/null &
  local pid=$!
  until grep -q "swarm fetch" "$work/seed.out" 2>/dev/null; do sleep 0.05; done
  end=$(date +%s.%N)
  kill -INT "$pid"; wait "$pid" 2>/dev/null || true
  echo "$end - $start" | bc
}
first=$(seed_once)
again=$(seed_once)
echo "machine: $(nproc) cores; $n tiny files: seeded in $first s, re-seeded unchanged in $again s"
