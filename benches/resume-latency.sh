#!/usr/bin/env bash
# How long a fetch that is 90% done takes, after a restart, to get its first new chunk on disk.
# Makes a 1 GiB random file, seeds it, lays down a partial download holding its first 90%
# (as a crashed `swarm fetch` would leave it), runs `swarm fetch` again and reads the times
# off its log. Loopback only; prints figures, asserts nothing.
# Usage: benches/resume-latency.sh [SIZE_MIB]   (default 1024)
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
cargo build --release -q -p swarm-cli
bin=$PWD/target/release/swarm
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

mkdir -p "$work/share" "$work/out"
head -c "$((size_mib << 20))" /dev/urandom >"$work/share/big.bin"
SWARM_LOG=warn "$bin" tracker --state "$work/tracker" --listen 127.0.0.1:0 >"$work/tracker.out" &
pids+=($!)
until grep -q -- "--tracker" "$work/tracker.out" 2>/dev/null; do sleep 0.1; done
tracker=$(sed 's/.*--tracker //' "$work/tracker.out")
SWARM_LOG=warn "$bin" seed "$work/share/big.bin" --state "$work/seeder" --listen 127.0.0.1:0 --tracker "$tracker" \
  >"$work/seed.out" 2>/dev/null &
pids+=($!)
until grep -q "swarm fetch" "$work/seed.out" 2>/dev/null; do sleep 0.1; done
id=$(head -1 "$work/seed.out" | awk '{print $1}')

# The first 90% of the chunks are in place; the rest is a hole, as after a crash.
keep=$((size_mib * 9 / 10))
dd if="$work/share/big.bin" of="$work/out/.big.bin.swarm-part" bs=1M count="$keep" status=none
truncate -s "$((size_mib << 20))" "$work/out/.big.bin.swarm-part"
sync

start=$(date +%s.%N)
SWARM_LOG=info,swarm_engine::fetch=trace "$bin" fetch "$id" --tracker "$tracker" -o "$work/out" \
  --state "$work/fetcher" --listen 127.0.0.1:0 --json >"$work/fetch.json" 2>"$work/fetch.log"
end=$(date +%s.%N)
cmp "$work/share/big.bin" "$work/out/big.bin"

python3 - "$start" "$end" "$work/fetch.log" "$work/fetch.json" "$size_mib" <<'PY'
import datetime, json, sys
start, end, log, report, size_mib = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
def when(line):
    stamp = line.split()[0].rstrip("Z")
    return datetime.datetime.fromisoformat(stamp).replace(tzinfo=datetime.timezone.utc).timestamp()
lines = open(log).read().splitlines()
resumed = next(when(l) for l in lines if "resuming with" in l)
first = next(when(l) for l in lines if "chunk written" in l)
r = json.load(open(report))
print(f"file: {size_mib} MiB, 90% on disk before the restart; {r['resumed_chunks']} chunks resumed")
print(f"process start -> resume check done (every chunk re-hashed): {resumed - start:.3f} s")
print(f"process start -> first new chunk verified and written:     {first - start:.3f} s")
print(f"whole run (the last 10% fetched, whole file verified, renamed): {end - start:.3f} s")
PY
