#!/usr/bin/env bash
# Two builds of swarm side by side on one machine in one run, so that the figures compare
# (these machines swing 15-50% from run to run, so only same-run ratios count). Each round
# runs both builds in turn, alternating which goes first: a tracker, SEEDERS seeders and one
# verified fetch of SIZE_MIB MiB, all inside a private network namespace.
#
# Usage: benches/ab.sh OLD_SWARM NEW_SWARM [SIZE_MIB] [ROUNDS] [SEEDERS]   (needs root)
#   PATH_MTU=9000 runs the fetch between two namespaces joined by a veth pair of that MTU
#   (the seeders and tracker in one, the fetcher in the other) instead of over loopback,
#   where TCP and QUIC pay per packet alike.
# Prints each run (MB/s, fetcher CPU seconds) and, per build, the median MB/s and CPU seconds
# per GiB, and new/old ratios of the medians.
set -euo pipefail
old=$(realpath "$1")
new=$(realpath "$2")
size_mib=${3:-1024}
rounds=${4:-3}
seeders=${5:-1}

if [ -z "${SWARM_AB_INSIDE:-}" ]; then
  [ -x /usr/bin/time ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -q time >/dev/null
  exec unshare -n env SWARM_AB_INSIDE=1 "$0" "$@"
fi

ip link set lo up
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -z "${PATH_MTU:-}" ] || veth_down ab
  rm -rf "$work"
}
trap cleanup EXIT

# Where the seeders listen and how the fetcher reaches them: loopback, or a veth pair.
. "$(dirname "$0")/veth.sh"
[ -z "${PATH_MTU:-}" ] || veth_up ab "$PATH_MTU"

file=$work/file.bin
head -c "$((size_mib << 20))" /dev/urandom >"$file"
# Aged, so that a seeder trusts its hashing of it (engine/src/trust.rs).
touch -d "-1 hour" "$file"
echo "$(nproc) cores, $size_mib MiB, $seeders seeder(s), ${PATH_MTU:+veth MTU $PATH_MTU}${PATH_MTU:-loopback}, $rounds round(s)"

# run LABEL BINARY: one fetch with that build for tracker, seeders and fetcher.
run() {
  local label=$1 bin=$2 port=$((7100 + RANDOM % 800))
  local dir=$work/$label.$RANDOM
  mkdir -p "$dir"
  local started=()
  SWARM_LOG=warn "$bin" tracker --listen "$serve_ip:$port" --state "$dir/tracker" >/dev/null 2>&1 &
  started+=($!)
  sleep 0.3
  for i in $(seq "$seeders"); do
    SWARM_LOG=warn "$bin" seed "$file" --tracker "$serve_ip:$port" --state "$dir/seed$i" \
      --listen "$serve_ip:0" >"$dir/seed$i.out" 2>/dev/null &
    started+=($!)
    until grep -q "swarm fetch" "$dir/seed$i.out" 2>/dev/null; do sleep 0.1; done
  done
  pids+=("${started[@]}")
  local id
  id=$(head -1 "$dir/seed1.out" | awk '{print $1}')
  sync
  "${fetch[@]}" /usr/bin/time -f "%e %U %S" -o "$dir/time" env SWARM_LOG=warn "$bin" fetch "$id" \
    --tracker "$serve_ip:$port" -o "$dir/dl" --state "$dir/fetcher" --listen "0.0.0.0:0" -q >/dev/null 2>"$dir/err" ||
    { echo "FAILED: $label"; tail -3 "$dir/err"; }
  cmp -s "$file" "$dir/dl/file.bin" || echo "WRONG COPY: $label"
  read -r wall user sys <"$dir/time"
  echo "$label $wall $user $sys" >>"$work/results"
  printf '  %-4s %7.1f MB/s  fetcher CPU %5.2f s\n' "$label" \
    "$(echo "$size_mib * 1.048576 / $wall" | bc -l)" "$(echo "$user + $sys" | bc -l)"
  for p in "${started[@]}"; do kill "$p" 2>/dev/null || true; done
  wait "${started[@]}" 2>/dev/null || true
  rm -rf "$dir"
}

for round in $(seq "$rounds"); do
  echo "round $round"
  if [ $((round % 2)) = 1 ]; then run old "$old"; run new "$new"; else run new "$new"; run old "$old"; fi
done

python3 - "$work/results" "$size_mib" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
mib = float(sys.argv[2])
def med(label, f):
    return statistics.median(f(r) for r in rows if r[0] == label)
rate = lambda r: mib * 1.048576 / float(r[1])
cpu = lambda r: (float(r[2]) + float(r[3])) * 1024 / mib
for label in ("old", "new"):
    print(f"{label}: median {med(label, rate):7.1f} MB/s, fetcher {med(label, cpu):5.2f} CPU s per GiB")
print(f"new/old: speed {med('new', rate) / med('old', rate):.2f}x, fetcher CPU per GiB {med('new', cpu) / med('old', cpu):.2f}x")
PY
