#!/usr/bin/env bash
# CI's container tier: the real compose.yaml on a real Docker engine. Installs Debian's Docker
# engine and docker-compose if they are missing and starts dockerd if none answers, makes the
# debian:bookworm-slim base image with debootstrap if no registry has it (none is reachable on
# CI machines), builds swarm:local from the release binary, runs docker/demo.sh with a small
# data set, checks that every peer stopped cleanly on SIGTERM, and puts everything back.
# Root only.   SWARM_BIN (default target/release/swarm), SWARM_DATASET_MIB (default 64).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SWARM_BIN:-target/release/swarm}
export SWARM_DATASET_MIB=${SWARM_DATASET_MIB:-64}
CACHE=/var/cache/swarm-testbed
started=$(date +%s)
say() { echo "[$(($(date +%s) - started))s] $*"; }
[ "$(id -u)" = 0 ] || { echo "compose-tier: needs root" >&2; exit 1; }

need=""
command -v dockerd > /dev/null || need="$need docker.io"
command -v docker-compose > /dev/null || need="$need docker-compose"
command -v iptables > /dev/null || need="$need iptables"
command -v debootstrap > /dev/null || need="$need debootstrap"
if [ -n "$need" ]; then
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends $need > /dev/null
  say "installed$need"
fi

# The three-tracker variant is not started here (its Redis image comes from Docker Hub, which
# CI machines cannot reach), but it must merge with compose.yaml.
docker-compose -f compose.yaml -f compose.redis.yaml config -q
say "compose.redis.yaml merges with compose.yaml"

started_dockerd=""
forward_policy=""
ip_forward=$(cat /proc/sys/net/ipv4/ip_forward)
cleanup() {
  docker-compose -p swarm down --timeout 30 > /dev/null 2>&1 || true
  if [ -n "$started_dockerd" ]; then
    kill "$started_dockerd" 2> /dev/null || true
    for _ in $(seq 60); do kill -0 "$started_dockerd" 2> /dev/null || break; sleep 0.25; done
    echo "$ip_forward" > /proc/sys/net/ipv4/ip_forward
    [ -n "$forward_policy" ] && iptables -w -P FORWARD "$forward_policy"
    ip link del docker0 2> /dev/null || true
  fi
}
trap cleanup EXIT
if ! docker info > /dev/null 2>&1; then
  forward_policy=$(iptables -w -S FORWARD 2> /dev/null | awk '$1 == "-P" { print $3 }')
  mkdir -p /run/swarm-testbed
  dockerd > /run/swarm-testbed/dockerd.log 2>&1 &
  started_dockerd=$!
  for _ in $(seq 120); do docker info > /dev/null 2>&1 && break; sleep 0.25; done
  docker info > /dev/null 2>&1 || { tail -20 /run/swarm-testbed/dockerd.log >&2; exit 1; }
  say "dockerd $(docker version -f '{{.Server.Version}}') started"
fi

if ! docker image inspect debian:bookworm-slim > /dev/null 2>&1; then
  tar="$CACHE/bookworm-minbase.tar"
  if [ ! -s "$tar" ]; then
    mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2> /dev/null || true)
    [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list 2> /dev/null || true)
    [ -n "$mirror" ] || { echo "compose-tier: cannot find the Debian mirror apt uses" >&2; exit 1; }
    root=$(mktemp -d /var/tmp/swarm-rootfs.XXXXXX)
    debootstrap --variant=minbase bookworm "$root" "$mirror" > "$root.log" 2>&1 || { tail -20 "$root.log" >&2; exit 1; }
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    mkdir -p "$CACHE"
    tar -C "$root" -cf "$tar.part" . && mv "$tar.part" "$tar"
    rm -rf "$root" "$root.log"
  fi
  docker import "$tar" debian:bookworm-slim > /dev/null
  say "base image debian:bookworm-slim made with debootstrap"
fi

mkdir -p docker/bin
cp "$BIN" docker/bin/swarm
docker build -q -t swarm:local -f docker/Dockerfile . > /dev/null
say "image swarm:local built"

bash docker/demo.sh
for service in tracker p1 p2 p3 p4 p5 p6 p7 p8 p9; do
  # The first healthcheck runs 5 s after start; allow a few rounds.
  for _ in $(seq 60); do
    health=$(docker inspect -f '{{.State.Health.Status}}' "$(docker-compose -p swarm ps -q "$service")")
    [ "$health" = starting ] || break
    sleep 0.5
  done
  [ "$health" = healthy ] || { echo "compose-tier: $service is $health, not healthy" >&2; exit 1; }
done
say "all ten containers report healthy"

docker-compose -p swarm down --timeout 30 > /dev/null 2>&1
for peer in p1 p2 p3 p4 p5 p6 p7 p8 p9; do
  grep -q "leaving: telling the tracker" "LOGS/$peer.log" || { echo "compose-tier: $peer did not leave cleanly on SIGTERM" >&2; exit 1; }
done
say "down: every peer left the tracker on SIGTERM; compose tier PASSED"
