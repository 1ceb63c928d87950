#!/usr/bin/env bash
# Side-by-side transfer of one file: swarm beside the tools people would otherwise use, on
# the same machine in the same run, over each path in turn: loopback (where TCP moves 64 KB
# segments and QUIC, whatever the path allows), and a veth pair between two network
# namespaces with an MTU of 1500 and of 9000 (an Ethernet LAN and a data centre's jumbo
# frames, where every tool pays per packet alike). Every process runs inside a private
# network namespace (unshare -n), so no tool can reach anything beyond this machine. Every
# copy is checked byte for byte against the source.
#
# Prints one table: MB/s (10^6 bytes per second of wall time for the download command), CPU
# seconds and peak RSS of the downloading process, and swarm's speed as a ratio to each row.
# Servers (nginx, seeders, tracker) are started before the clock starts and are not counted.
#
# Usage: benches/compare/run.sh [SIZE_MIB]   (default 1024; needs root for unshare -n)
# PATHS="loopback 1500 9000" (the default) names the paths: loopback, or a veth pair's MTU.
# Installs nginx and aria2 from Debian's packages, and rqbit and sendme from crates.io, if they
# are missing (SKIP_RQBIT=1 or SKIP_SENDME=1 skips one). aria2's BitTorrent peers find each
# other through bt_tracker.py, a minimal tracker, since nothing else may reach the network.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
size_mib=${1:-1024}

if [ -z "${SWARM_COMPARE_INSIDE:-}" ]; then
  missing=()
  command -v nginx >/dev/null || missing+=(nginx-light)
  command -v aria2c >/dev/null || missing+=(aria2)
  [ -x /usr/bin/time ] || missing+=(time)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
  fi
  if [ -z "${SKIP_RQBIT:-}" ] && ! command -v rqbit >/dev/null; then
    echo "installing rqbit from crates.io (a few minutes)"
    cargo install rqbit --locked -q
  fi
  if [ -z "${SKIP_SENDME:-}" ] && ! command -v sendme >/dev/null; then
    echo "installing sendme from crates.io (a few minutes)"
    cargo install sendme --locked -q
  fi
  (cd "$root" && cargo build --release -q -p swarm-cli -p swarm-benches --bin swarm --bin quic-perf)
  for path in ${PATHS:-loopback 1500 9000}; do
    mtu=$([ "$path" = loopback ] || echo "$path")
    unshare -n env SWARM_COMPARE_INSIDE=1 PATH_MTU="$mtu" PATH="$PATH:$HOME/.cargo/bin" "$0" "$@"
  done
  exit 0
fi

ip link set lo up
swarm=$root/target/release/swarm
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  nginx -c "$work/nginx.conf" -s stop 2>/dev/null || true
  [ -z "${PATH_MTU:-}" ] || veth_down cmp
  rm -rf "$work"
}
trap cleanup EXIT

# Where the servers listen and where the downloads run: all on loopback, or the servers on
# one end of a veth pair and the downloads in a namespace of their own at the other.
. "$here/../veth.sh"
path_name=loopback
if [ -n "${PATH_MTU:-}" ]; then
  veth_up cmp "$PATH_MTU"
  path_name="veth pair, MTU $PATH_MTU"
fi
mkdir -p "$work/src" "$work/results"
chmod 755 "$work"  # nginx workers run as an unprivileged user
file=$work/src/file.bin
head -c "$((size_mib << 20))" /dev/urandom >"$file"
# Aged as a file at rest would be: a seeder trusts its hashing of a file only once the
# file has settled (engine/src/trust.rs), and a file written a moment ago has not.
touch -d "-1 hour" "$file"
bytes=$(stat -c %s "$file")
echo
echo "== $path_name"
echo "machine: $(nproc) cores, $(uname -r); file: $size_mib MiB of random bytes; $path_name, in private network namespaces"

# measure LABEL SOURCES OUTPUT_FILE COMMAND...: runs the download, checks the copy (unless
# OUTPUT_FILE is -: nothing is written), records wall seconds, CPU seconds and peak RSS.
measure() {
  local label=$1 sources=$2 out=$3
  shift 3
  sync
  "${fetch[@]}" /usr/bin/time -f "%e %U %S %M" -o "$work/time" "$@" >"$work/last.log" 2>&1 || {
    echo "FAILED: $label"; tail -5 "$work/last.log"; return 0; }
  if [ "$out" != - ] && ! cmp -s "$file" "$out"; then echo "WRONG COPY: $label"; return 0; fi
  read -r wall user sys rss <"$work/time"
  echo "$label|$sources|$wall|$user|$sys|$rss" >>"$work/results/table"
  [ "$out" = - ] || rm -f "$out"
  echo "  $label: ${wall}s"
}

# --- HTTP from nginx (sendfile), no verification ---
mkdir -p "$work/nginx"
cat >"$work/nginx.conf" <<CONF
daemon on; worker_processes 2; pid $work/nginx/pid; error_log $work/nginx/error.log;
events { worker_connections 256; }
http { access_log off; sendfile on; tcp_nopush on;
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx; fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  server { listen $serve_ip:8081; listen $serve_ip:8082; listen $serve_ip:8083; listen $serve_ip:8084;
           root $work/src; } }
CONF
nginx -c "$work/nginx.conf"
url=http://$serve_ip:8081/file.bin
mkdir -p "$work/dl"
echo "running:"
measure "curl from nginx (1 TCP stream, no verification)" 1 "$work/dl/c.bin" curl -sf -o "$work/dl/c.bin" "$url"
aria=(aria2c -q -d "$work/dl" --allow-overwrite=true --file-allocation=none --check-certificate=false)
measure "aria2c from nginx, 1 connection" 1 "$work/dl/a1.bin" "${aria[@]}" -o a1.bin -x1 -s1 "$url"
measure "aria2c from nginx, 16 connections" 1 "$work/dl/a16.bin" "${aria[@]}" -o a16.bin -x16 -s16 -k1M "$url"
measure "aria2c from 4 nginx mirrors" 4 "$work/dl/a4.bin" "${aria[@]}" -o a4.bin -s4 -k1M \
  "$url" "http://$serve_ip:8082/file.bin" "http://$serve_ip:8083/file.bin" "http://$serve_ip:8084/file.bin"

# --- the QUIC ceiling: one bare quinn stream with swarm's windows, buffers and congestion
# controller; no disk, no hashing (quinn's own perf tool is not on crates.io) ---
"$root/target/release/quic-perf" serve --listen "$serve_ip:7400" --cert "$work/perf.der" >/dev/null 2>&1 &
pids+=($!)
until [ -s "$work/perf.der" ]; do sleep 0.1; done
measure "quic-perf (1 QUIC stream, no disk, no verification)" 1 - \
  "$root/target/release/quic-perf" fetch --from "$serve_ip:7400" --cert "$work/perf.der" --size "$bytes"

# --- swarm: separate tracker, seeder and fetcher processes, every chunk verified ---
SWARM_LOG=warn "$swarm" tracker --listen "$serve_ip:7070" --state "$work/tracker" >/dev/null 2>&1 &
pids+=($!)
sleep 0.5
for i in 1 2 3 4; do
  SWARM_LOG=warn "$swarm" seed "$work/src/file.bin" --tracker "$serve_ip:7070" --state "$work/seed$i" \
    --listen "$serve_ip:0" >"$work/seed$i.out" 2>/dev/null &
  pids+=($!)
  until grep -q "swarm fetch" "$work/seed$i.out" 2>/dev/null; do sleep 0.1; done
  if [ "$i" = 1 ]; then
    id=$(head -1 "$work/seed1.out" | awk '{print $1}')
    first_seeder=$(SWARM_LOG=warn "$swarm" peers "$id" --tracker "$serve_ip:7070" --state "$work/q" --json \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["peer"])')
    measure "swarm, 1 seeder (verified)" 1 "$work/dl/file.bin" env SWARM_LOG=warn "$swarm" fetch "$id" \
      --tracker "$serve_ip:7070" -o "$work/dl" --state "$work/f1" --listen "$fetch_ip:0" --from "$first_seeder"
  fi
done
measure "swarm, 4 seeders (verified)" 4 "$work/dl/file.bin" env SWARM_LOG=warn "$swarm" fetch "$id" \
  --tracker "$serve_ip:7070" -o "$work/dl" --state "$work/f4" --listen "$fetch_ip:0"

# --- rqbit (BitTorrent, SHA-1 pieces verified): `rqbit share` seeders, peers given directly ---
if command -v rqbit >/dev/null && [ -z "${SKIP_RQBIT:-}" ]; then
  rq=(rqbit --disable-dht --disable-upnp-port-forward)
  peers=""
  for i in 1 2 3 4; do
    RQBIT_LOG_LEVEL_CONSOLE=info "${rq[@]}" --listen-port "4200$i" --http-api-listen-addr "127.0.0.1:303$i" \
      share "$file" >"$work/rq$i.log" 2>&1 &
    pids+=($!)
    until grep -aq "Initial check results" "$work/rq$i.log" 2>/dev/null; do sleep 0.2; done
    peers="${peers:+$peers,}$serve_ip:4200$i"
    magnet=$(grep -ao "magnet:?xt=urn:btih:[0-9a-f]*" "$work/rq1.log" | head -1)
    if [ "$i" = 1 ]; then
      measure "rqbit BitTorrent, 1 seeder (verified)" 1 "$work/rqdl1/file.bin" "${rq[@]}" --listen-port 42011 \
        download --disable-http-api -e -o "$work/rqdl1" --initial-peers "$peers" "$magnet"
    fi
  done
  measure "rqbit BitTorrent, 4 seeders (verified)" 4 "$work/rqdl4/file.bin" "${rq[@]}" --listen-port 42014 \
    download --disable-http-api -e -o "$work/rqdl4" --initial-peers "$peers" "$magnet"
else
  echo "  (rqbit rows skipped: SKIP_RQBIT is set or rqbit is not installed)"
fi

# --- aria2c BitTorrent (SHA-1 pieces verified): a minimal HTTP tracker finds the peers ---
python3 "$here/bt_tracker.py" serve "$serve_ip" 6969 &
pids+=($!)
python3 "$here/bt_tracker.py" torrent "$file" "http://$serve_ip:6969/announce" "$work/file.torrent"
bt=(aria2c -q --enable-dht=false --enable-dht6=false --bt-enable-lpd=false --enable-peer-exchange=false
    --file-allocation=none --bt-max-peers=0 --summary-interval=0)
for i in 1 2 3 4; do
  "${bt[@]}" --listen-port="691$i" -d "$work/src" --bt-seed-unverified=true --seed-ratio=0.0 \
    "$work/file.torrent" >"$work/bt$i.log" 2>&1 &
  pids+=($!)
  sleep 1
  if [ "$i" = 1 ]; then
    measure "aria2c BitTorrent, 1 seeder (verified)" 1 "$work/btdl1/file.bin" "${bt[@]}" --listen-port=6901 \
      -d "$work/btdl1" --seed-time=0 "$work/file.torrent"
  fi
done
measure "aria2c BitTorrent, 4 seeders (verified)" 4 "$work/btdl4/file.bin" "${bt[@]}" --listen-port=6904 \
  -d "$work/btdl4" --seed-time=0 "$work/file.torrent"

# --- sendme (iroh: BLAKE3-verified QUIC), one sender ---
if command -v sendme >/dev/null && [ -z "${SKIP_SENDME:-}" ]; then
  # No relay (it would try the internet) and a ticket with direct addresses only.
  (cd "$work/src" && exec sendme send --relay disabled --ticket-type addresses --no-progress \
    --magic-ipv4-addr "$serve_ip:5555" file.bin >"$work/sendme.log" 2>&1) &
  pids+=($!)
  # It imports (hashes) the file before it prints the ticket.
  for _ in $(seq 300); do grep -aq "sendme receive" "$work/sendme.log" 2>/dev/null && break; sleep 0.2; done
  ticket=$(grep -ao "sendme receive [A-Za-z0-9]*" "$work/sendme.log" | head -1 | awk '{print $3}')
  mkdir -p "$work/sdl"
  measure "sendme (iroh, BLAKE3-verified QUIC)" 1 "$work/sdl/file.bin" \
    bash -c 'cd "$1" && exec sendme receive --relay disabled --no-progress "$2"' _ "$work/sdl" "$ticket"
else
  echo "  (sendme row skipped: SKIP_SENDME is set or sendme is not installed)"
fi

python3 - "$work/results/table" "$bytes" "${PATH_MTU:-loopback}" <<'PY'
import sys
path, size, link = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = [l.rstrip("\n").split("|") for l in open(path)]
def rate(r): return size / 1e6 / float(r[2])
swarm = {r[1]: rate(r) for r in rows if r[0].startswith("swarm")}
print()
print(f"{'tool':<50} {'src':>3} {'MB/s':>8} {'CPU s':>7} {'peak RSS':>9}  swarm (same sources) / this")
for r in rows:
    label, sources = r[0], r[1]
    cpu = float(r[3]) + float(r[4])
    rss = int(r[5]) / 1024
    mine = swarm.get(sources) or swarm.get("4" if sources != "1" else "1")
    ratio = f"{mine / rate(r):.2f}x" if mine and not label.startswith("swarm") else ""
    print(f"{label:<50} {sources:>3} {rate(r):>8.0f} {cpu:>7.2f} {rss:>7.0f} MB  {ratio}")
print()
by_label = {r[0]: rate(r) for r in rows}
def target(name, mine, theirs, goal):
    if mine in by_label and theirs in by_label:
        got = by_label[mine] / by_label[theirs]
        print(f"target {name}: {got:.2f}x (goal >= {goal}x) {'met' if got >= goal else 'MISSED'}")
x1, x4 = "swarm, 1 seeder (verified)", "swarm, 4 seeders (verified)"
target("swarm 1 seeder / quic-perf", x1, "quic-perf (1 QUIC stream, no disk, no verification)", 0.9)
target("swarm 4 seeders / rqbit 4 seeders", x4, "rqbit BitTorrent, 4 seeders (verified)", 0.9 if link == "loopback" else 1.0)
target("swarm 1 seeder / rqbit 1 seeder", x1, "rqbit BitTorrent, 1 seeder (verified)", 1.0)
target("swarm 1 seeder / sendme", x1, "sendme (iroh, BLAKE3-verified QUIC)", 3)
target("swarm 4 seeders / aria2c from 4 mirrors", x4, "aria2c from 4 nginx mirrors", 1.0)
PY
