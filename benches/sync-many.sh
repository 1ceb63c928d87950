#!/usr/bin/env bash
# How fast `swarm sync` brings many tiny files across: two sync nodes on loopback, N files of a
# few bytes on the first; prints the seconds from the second's start until it holds them all.
#   bash benches/sync-many.sh [N] [BIN]     (just sync-many N)
set -euo pipefail
n=${1:-2000}
bin=${2:-target/release/swarm}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/a" "$work/b"
for i in $(seq 1 "$n"); do echo "file $i" > "$work/a/f$i.txt"; done
SWARM_LOG=warn "$bin" tracker --listen 127.0.0.1:0 --state "$work/t" > "$work/t.out" 2>/dev/null &
until grep -q -- "--tracker" "$work/t.out" 2>/dev/null; do sleep 0.1; done
tracker=$(sed 's/.*--tracker //' "$work/t.out")
share=$("$bin" secret share-key | head -n 1)
SWARM_LOG=warn "$bin" sync "$work/a" --share "$share" --tracker "$tracker" --state "$work/sa" --listen 127.0.0.1:0 --settle 0s \
  > /dev/null 2>&1 &
listed() { SWARM_LOG=error "$bin" ls --tracker "$tracker" --state "$work/q" --json 2>/dev/null | grep -c '"name"' || true; }
until [ "$(listed)" -ge "$n" ]; do sleep 0.2; done
start=$(date +%s.%N)
SWARM_LOG=warn "$bin" sync "$work/b" --share "$share" --tracker "$tracker" --state "$work/sb" --listen 127.0.0.1:0 --settle 0s \
  > /dev/null 2>&1 &
until [ "$(find "$work/b" -name 'f*.txt' | wc -l)" -ge "$n" ]; do sleep 0.1; done
end=$(date +%s.%N)
echo "machine: $(nproc) cores; $n tiny files synced to a second node in $(echo "$end - $start" | bc) s"
