# swarm: common tasks. `just --list` shows them.

# Compose v2 (`docker compose`, current Docker) when there, else v1 (`docker-compose`, Debian 12).
compose := `docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose`

# Build the release binary (target/release/swarm).
build:
    cargo build --locked --release

# The test suite, as CI runs it (the 4 GiB test included).
test:
    bash .ci/run

# Seed a generated 1 GiB file from 4 in-process peers and fetch it, printing the rate.
local-demo size="1GiB" seeders="4":
    cargo run --locked --release -p swarm-cli -- demo --size {{size}} --seeders {{seeders}}

# The web view in headless Chromium (installed if missing; root), its screenshot saved as
# docs/web-view.png for docs/usage.md.
screenshot:
    SWARM_SCREENSHOT={{justfile_directory()}}/docs/web-view.png cargo test --locked -p swarm-cli --test end_to_end web_view::

# The man pages (swarm(1) and one per subcommand) into docs/man, from the command-line
# definitions.
man:
    cargo run --locked -q --release -p swarm-cli -- man docs/man

# Coverage-guided fuzzing of every decoder (cargo fuzz on stable, installed if missing): each
# target for TIME seconds from its corpus in fuzz/corpus/.
fuzz time="60":
    command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
    cd fuzz && for t in $(cargo fuzz list); do cargo fuzz run -s none "$t" "corpus/$t" -- -max_total_time={{time}} -timeout=10 -rss_limit_mb=2048 || exit 1; done

# Format the code.
fmt:
    cargo fmt --all

# Lints, as CI runs them.
lint:
    cargo clippy --locked --workspace --all-targets -- -D warnings

# How long a 90%-done 1 GiB fetch takes, after a restart, to get its first new chunk.
resume-latency size_mib="1024":
    bash benches/resume-latency.sh {{size_mib}}

# Criterion benchmarks: fetch throughput (1-8 seeders, capped and not, beside a raw QUIC
# stream), hashing beside plain BLAKE3, tracker rates, frames. HTML in target/criterion/report.
bench:
    cargo bench -p swarm-benches

# swarm beside nginx+curl, aria2c (HTTP and BitTorrent), rqbit and sendme on one file over
# loopback and over veth pairs of MTU 1500 and 9000, in private network namespaces (root);
# installs the tools if missing. PATHS="1500" runs one path only.
compare size_mib="1024":
    bash benches/compare/run.sh {{size_mib}}

# Two builds of swarm in one run, rounds alternating (root): MB/s and the fetcher's CPU per GiB,
# with new/old ratios. `just ab /tmp/swarm-old target/release/swarm`; PATH_MTU=1500 (or 9000)
# fetches across a veth pair of that MTU instead of loopback.
ab old new size_mib="1024" rounds="3" seeders="1":
    bash benches/ab.sh {{old}} {{new}} {{size_mib}} {{rounds}} {{seeders}}

# swarm (1 and 4 seeders) and one bare QUIC stream (quic-perf) through wan-relay at 10, 50
# and 100 ms round trips with 0% and 0.5% loss, in a loopback-only namespace (root).
# CONGESTION="cubic newreno bbr bbr-bound by-path" runs each controller in turn (by-path, the
# default, is CUBIC under 10 ms and BBR under a bound set by heavy loss beyond); RTTS, LOSSES,
# RATE_ONE and RATE_FOUR change the paths (benches/wan.sh says how).
wan size_mib="512":
    bash benches/wan.sh {{size_mib}}

# Every pair of routers (none, a home router's NAT, a symmetric NAT) between a seeder and a
# fetcher on network namespaces, with a bigger file than CI's: prints the NAT table of docs/networking.md.
# Needs root.
nat-matrix size_mb="64":
    SWARM_NAT_MB={{size_mb}} cargo test --locked --release -p swarm-cli --test end_to_end nat:: -- --nocapture

# What --metrics, --http (polled as the web view does) and --stream cost a 1 GiB loopback fetch.
observability-cost size_mib="1024" rounds="3":
    bash benches/observability-cost.sh {{size_mib}} {{rounds}}

# Seconds for `swarm seed` to share N tiny files, then again unchanged (release build).
seed-many n="20000":
    cargo build --locked --release -p swarm-cli
    bash benches/seed-many.sh {{n}} target/release/swarm

# Files a second for `swarm fetch` of a folder of N tiny files from one seeder, then the same
# command again with every file complete (release build).
fetch-many n="10000":
    cargo build --locked --release -p swarm-cli
    bash benches/fetch-many.sh {{n}} target/release/swarm

# Seconds for `swarm sync` to bring N tiny files to a second node (release build).
sync-many n="2000":
    cargo build --locked --release -p swarm-cli
    bash benches/sync-many.sh {{n}} target/release/swarm

# What N idle readers of /files/ID cost a node (memory, threads, how they were answered).
http-readers n="2000":
    cargo build --locked --release -p swarm-cli
    bash benches/http-readers.sh {{n}} target/release/swarm

# Peak memory of a fetch (1 and 4 seeders) and of a seeder serving 8 fetchers at once.
memory size_gib="4":
    bash benches/memory.sh {{size_gib}}

# The container image swarm:local, from the host's release binary (docker/Dockerfile).
image: build
    mkdir -p docker/bin
    cp target/release/swarm docker/bin/swarm
    # The image needs no line tables (kept in target/release for profiling): strip them.
    strip docker/bin/swarm
    docker build -q -t swarm:local -f docker/Dockerfile .

# The ten-node compose network (compose.yaml), in the background.
up: image
    mkdir -p LOGS
    {{compose}} -p swarm up -d --no-build

# The same network with three trackers sharing one Redis (compose.redis.yaml).
up-redis: image
    mkdir -p LOGS
    {{compose}} -p swarm -f compose.yaml -f compose.redis.yaml up -d --no-build

# Stop the compose network; every node leaves the tracker first. Files stay in VOLUMES/.
down:
    {{compose}} -p swarm -f compose.yaml -f compose.redis.yaml down --timeout 30 --remove-orphans

# Start the compose network afresh, wait until every peer has the data set, print a table.
demo: image
    bash docker/demo.sh

# Ten hosts on network namespaces with capped links, as CI runs it (root).
netns-demo: build
    bash testbed/ten-peers.sh

# Forty hosts on namespaces, links of 5 to 20 Mbit/s, three killed, as CI runs it (root).
netns-forty: build
    bash testbed/forty-peers.sh

# A simulated swarm (swarm-sim: the engine's own decisions over simulated links and clock):
# HOSTS fetchers of SIZE in CHUNK chunks at MBIT Mbit/s (given out in turn), one seeder at
# SEED_MBIT, 5% killed midway, RUNS seeds. `just sim-calibrate` compares it with the namespaces.
sim hosts="1000" size="64MiB" chunk="1MiB" mbit="10,50,100,1000" seed_mbit="1000" runs="1":
    cargo build --locked --release -p swarm-sim
    target/release/swarm-sim --fetchers {{hosts}} --kill $(( {{hosts}} / 20 )) --size {{size}} --chunk {{chunk}} --mbit {{mbit}} --seed-mbit {{seed_mbit}} --runs {{runs}}

# The simulator beside the namespace scenarios it is calibrated on (10, 40 and 100 hosts).
sim-calibrate:
    cargo build --locked --release -p swarm-sim
    for preset in ten forty hundred; do target/release/swarm-sim --preset $preset --runs 3; done

# A hundred hosts on namespaces and a bigger file (root; several minutes on 2 cores).
# Twenty hosts fetch a 1 GiB file that starts on nginx (`swarm seed --url` on the seeder), every
# link at 100 Mbit/s: prints the origin's bytes sent against the file (goal at most 1.05) and
# completion against the floor (root; installs nginx if missing).
origin-crowd: build
    command -v nginx >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx
    ORIGIN=nginx NAME=origin-crowd FETCHERS=20 KILL=0 SIZE_MIB=1024 CHUNK=1MiB SEED_RATE=100mbit \
      RATES=100mbit bash testbed/swarm-scenario.sh

# `swarm registry` on HOSTS hosts pulling an image of three LAYER_MIB layers at once through
# skopeo, against the same pulls straight from docker-registry (root; installs them if missing).
registry-mirror hosts="20" layer_mib="32":
    SWARM_REGISTRY_HOSTS={{hosts}} SWARM_REGISTRY_LAYER_MIB={{layer_mib}} cargo test --locked --release \
      -p swarm-cli --test end_to_end registry:: -- --nocapture

netns-big: build
    NAME=hundred-peers FETCHERS=99 KILL=5 SIZE_MIB=16 CHUNK=64KiB SEED_RATE=10mbit \
      RATES="2mbit 4mbit 8mbit" bash testbed/forty-peers.sh

# The same load on one tracker alone, one tracker on Redis and three on one Redis, side by
# side; then each flooded with back-to-back changes (release; needs redis-server).
tracker-load-redis fetchers="1000" size="1GB" idle="2000" seconds="30":
    cargo build --locked --release -p swarm-cli -p swarm-benches
    for mode in "" "--redis" "--redis --trackers 3"; do echo "== tracker-load $mode"; target/release/tracker-load --fetchers {{fetchers}} --size {{size}} --idle {{idle}} --seconds {{seconds}} --ramp 10 --download 30 --peer-timeout 30s $mode; done
    for mode in "" "--redis" "--redis --trackers 3"; do echo "== flood $mode"; target/release/tracker-load --fetchers 200 --size 100MB --seconds 15 --ramp 3 --flood --peer-timeout 30s $mode; done

# One tracker under simulated load: N fetchers of a file of SIZE, IDLE idle peers (release).
tracker-load fetchers="5000" size="1GB" idle="0" seconds="60":
    cargo build --locked --release -p swarm-cli -p swarm-benches
    target/release/tracker-load --fetchers {{fetchers}} --size {{size}} --idle {{idle}} --seconds {{seconds}}

# What a tracker's memory and disk grow by per byte of manifests kept, running and after a
# restart: big manifests, then many small ones (release).
tracker-memory:
    cargo build --locked --release -p swarm-cli -p swarm-benches
    target/release/tracker-memory --kept 120MiB --manifest 2MiB
    target/release/tracker-memory --kept 16MiB --manifest 1KiB
