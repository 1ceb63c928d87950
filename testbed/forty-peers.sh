#!/usr/bin/env bash
# Forty hosts on network namespaces besides the tracker: one seeder at 10 Mbit/s and 39
# fetchers on links of 5, 10 and 20 Mbit/s in turn, three of them killed midway
# (swarm-scenario.sh says what is checked and printed). Sized for CI on 2 cores: forty QUIC
# processes cost more CPU per byte than one, and faster links made the run CPU-bound, which
# says nothing about the swarm. `just netns-big` runs a hundred hosts. Root only. Any setting
# may be given in the environment.
export NAME=${NAME:-forty-peers} FETCHERS=${FETCHERS:-39} KILL=${KILL:-3} SIZE_MIB=${SIZE_MIB:-16}
export CHUNK=${CHUNK:-64KiB} SEED_RATE=${SEED_RATE:-10mbit} RATES=${RATES:-"5mbit 10mbit 20mbit"}
exec bash "$(dirname "$0")/swarm-scenario.sh"
