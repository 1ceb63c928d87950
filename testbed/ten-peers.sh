#!/usr/bin/env bash
# Ten hosts on network namespaces: one tracker, one seeder and eight fetchers, every link at
# 100 Mbit/s each way, two fetchers killed midway (swarm-scenario.sh says what is checked and
# printed). Root only. Any of its settings may be given in the environment, e.g. SIZE_MIB=64.
export NAME=ten-peers FETCHERS=${FETCHERS:-8} KILL=${KILL:-2} SIZE_MIB=${SIZE_MIB:-256}
export SEED_RATE=${SEED_RATE:-${RATE:-100mbit}} RATES=${RATES:-${RATE:-100mbit}}
exec bash "$(dirname "$0")/swarm-scenario.sh"
