#!/usr/bin/env bash
# Peak memory (resident set, VmHWM) of real swarm processes on loopback:
#   1. a fetch of a SIZE_GIB file (default 4) from 1 seeder, then from 4 seeders;
#   2. one seeder serving a 1 GiB file to 8 fetchers at once.
# Prints figures; asserts nothing (the targets are in docs/performance.md). Every copy is checked.
#
# Usage: benches/memory.sh [SIZE_GIB]   (needs SIZE_GIB + 9 GiB of free disk in $TMPDIR)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
size_gib=${1:-4}
if [ ! -x /usr/bin/time ]; then
  echo "installing time (for peak RSS)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q time >/dev/null
fi
(cd "$root" && cargo build --release -q -p swarm-cli)
swarm=$root/target/release/swarm
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
export SWARM_LOG=warn
port=$((20000 + RANDOM % 20000))

"$swarm" tracker --listen "127.0.0.1:$port" --state "$work/tracker" >/dev/null 2>&1 &
pids+=($!)
# seed NAME FILE: starts a seeder of FILE and waits until it serves; sets $id to the id of the
# file it seeds and $seeder to its process id.
seed() {
  "$swarm" seed "$2" --tracker "127.0.0.1:$port" --state "$work/$1" --listen 127.0.0.1:0 >"$work/$1.out" 2>/dev/null &
  seeder=$!
  pids+=("$seeder")
  until grep -q "swarm fetch" "$work/$1.out" 2>/dev/null; do sleep 0.1; done
  id=$(head -1 "$work/$1.out" | awk '{print $1}')
}
peak_kib() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
mib() { echo $(( $1 / 1024 )); }

mkdir -p "$work/big" "$work/one"
head -c "$((size_gib << 30))" /dev/urandom >"$work/big/file.bin"
head -c "$((1 << 30))" /dev/urandom >"$work/one/file.bin"
echo "machine: $(nproc) cores, $(uname -r)"

seed big1 "$work/big/file.bin"
big=$id
for n in 1 4; do
  for i in $(seq 2 "$n"); do seed "big$i" "$work/big/file.bin"; done
  /usr/bin/time -f "%M" -o "$work/rss" "$swarm" fetch "$big" --tracker "127.0.0.1:$port" -o "$work/out$n" \
    --state "$work/fetch$n" --listen 127.0.0.1:0 >/dev/null 2>&1
  cmp "$work/big/file.bin" "$work/out$n/file.bin"
  echo "fetch of $size_gib GiB from $n seeder(s): peak RSS $(mib "$(cat "$work/rss")") MiB"
  rm -rf "$work/out$n"
done

seed server "$work/one/file.bin"
one=$id
server=$seeder
# Every fetcher takes everything from this seeder (--from), not from the other fetchers.
server_id=$("$swarm" peers "$one" --tracker "127.0.0.1:$port" --state "$work/query" --json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["peer"])')
before=$(peak_kib "$server")
fetchers=()
for i in $(seq 1 8); do
  "$swarm" fetch "$one" --tracker "127.0.0.1:$port" -o "$work/many$i" --state "$work/many-state$i" \
    --listen 127.0.0.1:0 --from "$server_id" >/dev/null 2>&1 &
  fetchers+=($!)
done
for p in "${fetchers[@]}"; do wait "$p"; done
for i in $(seq 1 8); do cmp "$work/one/file.bin" "$work/many$i/file.bin"; done
echo "seeder serving 1 GiB to 8 fetchers at once: peak RSS $(mib "$(peak_kib "$server")") MiB" \
  "($(mib "$before") MiB after hashing, before serving)"
