#!/usr/bin/env bash
# What watching costs a fetch: one seeder (with --metrics and --http on throughout), one file
# over loopback, fetched in turn with nothing on, with --metrics, with --http (polled every
# second as the web view does), and with --stream (a reader following the download from its
# first byte to its last, as a player would). Rounds alternate so that the machine's swings fall on every variant alike.
# Prints MB/s per run and the median per variant; asserts nothing.
# Usage: benches/observability-cost.sh [SIZE_MIB] [ROUNDS]   (default 1024 MiB, 3 rounds)
#        VARIANTS="plain stream" benches/observability-cost.sh   (a subset)
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
rounds=${2:-3}
cargo build --release -q -p swarm-cli
bin=$PWD/target/release/swarm
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

mkdir -p "$work/share"
head -c "$((size_mib << 20))" /dev/urandom >"$work/share/big.bin"
SWARM_LOG=warn "$bin" tracker --state "$work/tracker" --listen 127.0.0.1:0 >"$work/tracker.out" &
pids+=($!)
until grep -q -- "--tracker" "$work/tracker.out" 2>/dev/null; do sleep 0.1; done
tracker=$(sed 's/.*--tracker //' "$work/tracker.out")
seed_metrics=127.0.0.1:$(free_port)
seed_http=127.0.0.1:$(free_port)
SWARM_LOG=warn "$bin" seed "$work/share/big.bin" --state "$work/seeder" --listen 127.0.0.1:0 --tracker "$tracker" \
  --metrics "$seed_metrics" --http "$seed_http" >"$work/seed.out" 2>/dev/null &
pids+=($!)
until grep -q "swarm fetch" "$work/seed.out" 2>/dev/null; do sleep 0.1; done
id=$(head -1 "$work/seed.out" | awk '{print $1}')

# One fetch with the flags given; prints its rate in MB/s.
fetch() {
  local variant=$1
  shift
  rm -rf "$work/out" "$work/fetcher" "$work/stream.url" "$work/streamed"
  local start end
  start=$(date +%s.%N)
  case $variant in
    stream)
      SWARM_LOG=warn "$bin" fetch "$id" --tracker "$tracker" -o "$work/out" --state "$work/fetcher" \
        --listen 127.0.0.1:0 --stream >"$work/stream.url" 2>/dev/null &
      local fetcher=$!
      until [ -s "$work/stream.url" ]; do sleep 0.05; done
      # A reader from the first byte to the last, as a player would.
      curl -sf "$(head -1 "$work/stream.url")" -o "$work/streamed"
      end=$(date +%s.%N)
      kill "$fetcher"
      wait "$fetcher" 2>/dev/null || true
      cmp -s "$work/share/big.bin" "$work/streamed" || { echo "streamed bytes differ" >&2; exit 1; }
      ;;
    http)
      local port=127.0.0.1:$(free_port)
      SWARM_LOG=warn "$bin" fetch "$id" --tracker "$tracker" -o "$work/out" --state "$work/fetcher" \
        --listen 127.0.0.1:0 --http "$port" >/dev/null 2>&1 &
      local fetcher=$!
      # The page polls status and the chunk map every second.
      (while kill -0 "$fetcher" 2>/dev/null; do
        curl -s "http://$port/api/status" >/dev/null || true
        curl -s "http://$port/api/files/$id" >/dev/null || true
        sleep 1
      done) &
      wait "$fetcher"
      end=$(date +%s.%N)
      ;;
    *)
      SWARM_LOG=warn "$bin" fetch "$id" --tracker "$tracker" -o "$work/out" --state "$work/fetcher" \
        --listen 127.0.0.1:0 "$@" >/dev/null 2>&1
      end=$(date +%s.%N)
      ;;
  esac
  python3 -c "print(f'{$size_mib * 1048576 / ($end - $start) / 1e6:.0f}')"
}

declare -A rates
variants=${VARIANTS:-plain metrics http stream}
for round in $(seq "$rounds"); do
  for variant in $variants; do
    case $variant in
      metrics) rate=$(fetch metrics --metrics "127.0.0.1:$(free_port)") ;;
      *) rate=$(fetch "$variant") ;;
    esac
    rates[$variant]="${rates[$variant]:-} $rate"
    echo "round $round  $variant: $rate MB/s"
  done
done
echo "== $size_mib MiB over loopback, one seeder, MB/s (median of $rounds; each run from process start)"
for variant in $variants; do
  median=$(echo "${rates[$variant]}" | tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  echo "$variant: median $median  (runs:${rates[$variant]})"
done
