#!/bin/bash
# Entry point of a swarm container: runs `swarm $SWARM_ROLE` (tracker, seed, sync or shell)
# with its output also appended to /logs/HOSTNAME.log, passes SIGTERM on so the node leaves
# the tracker cleanly, and, for a peer with SWARM_GENERATE_MIB set, first makes a data set of
# that many MiB of random bytes in $SWARM_DATA if it has none.
#
#   SWARM_ROLE          tracker | seed | sync | shell   (default: sync)
#   SWARM_DATA          the folder a peer shares        (default: /data)
#   SWARM_GENERATE_MIB  size of the generated data set  (default: 0, none)
# Every other setting is a SWARM_* variable read by swarm itself (see `swarm help`).
set -euo pipefail
role=${SWARM_ROLE:-sync}
data=${SWARM_DATA:-/data}
# Started as root (a bind mount belongs to whoever made it on the host): hand the node's
# folders to the user swarm and go on as that user, never running the node as root.
if [ "$(id -u)" = 0 ] && id swarm > /dev/null 2>&1; then
  mkdir -p /logs "$data" "${SWARM_STATE:-/state}"
  chown -R swarm:swarm /logs "$data" "${SWARM_STATE:-/state}"
  exec setpriv --reuid=swarm --regid=swarm --init-groups "$0" "$@"
fi
mkdir -p /logs "$data"
log=/logs/$(hostname).log

if [ "$role" = shell ]; then
  exec swarm shell "$data" "$@"
fi
if [ "$role" != tracker ] && [ "${SWARM_GENERATE_MIB:-0}" -gt 0 ] && [ ! -e "$data/dataset.bin" ]; then
  head -c $((SWARM_GENERATE_MIB * 1024 * 1024)) /dev/urandom > "$data/.dataset.tmp"
  mv "$data/.dataset.tmp" "$data/dataset.bin"
  echo "generated $data/dataset.bin ($SWARM_GENERATE_MIB MiB)" | tee -a "$log"
fi
if [ "$role" = tracker ]; then
  set -- tracker "$@"
else
  set -- "$role" "$data" "$@"
fi
swarm "$@" > >(tee -a "$log") 2> >(tee -a "$log" >&2) &
child=$!
trap 'kill -TERM "$child" 2>/dev/null || true' TERM INT
status=0
wait "$child" || status=$?
# A trapped signal ends the first wait early; wait again for the node to leave.
if kill -0 "$child" 2>/dev/null; then
  status=0
  wait "$child" || status=$?
fi
exit "$status"
