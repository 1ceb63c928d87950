#!/usr/bin/env bash
# What idle readers cost a node's HTTP port: a seeder of one 64 MiB file (1 MiB chunks) with
# --http, then N connections that each ask for the whole file (a range from 0) and never read
# it. Prints the node's resident memory and threads before and after, and how the readers
# were answered.   bash benches/http-readers.sh [N] [BIN]     (just http-readers N)
set -euo pipefail
n=${1:-2000}
bin=${2:-target/release/swarm}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
ulimit -n 65536 2>/dev/null || true
mkdir -p "$work/share"
head -c $((64 << 20)) /dev/urandom > "$work/share/big.bin"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
SWARM_LOG=warn "$bin" seed "$work/share/big.bin" --state "$work/node" --listen 127.0.0.1:0 \
  --tracker-listen 127.0.0.1:0 --chunk-size 1MiB --http "127.0.0.1:$port" > "$work/out" 2>"${HTTP_READERS_LOG:-/dev/null}" &
node=$!
until [ -s "$work/out" ]; do sleep 0.1; done
id=$(head -n 1 "$work/out" | cut -d' ' -f1)
rss() { awk '/^VmRSS/ { printf "%.0f MiB", $2 / 1024 }' "/proc/$node/status"; }
threads() { awk '/^Threads/ { print $2 }' "/proc/$node/status"; }
echo "before: $(rss), $(threads) threads"
python3 - "$port" "$id" "$n" "$node" <<'PY'
import socket, sys, time
port, file_id, n, pid = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
readers, answers, waiting = [], {}, 0
started = time.time()
for _ in range(n):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=0.2)
    except OSError:
        # The kernel's queue of connections not yet accepted is full: the node is at its cap.
        waiting += 1
        continue
    s.sendall(f"GET /files/{file_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nRange: bytes=0-\r\n\r\n".encode())
    readers.append(s)
print(f"opened {len(readers)} connections in {time.time() - started:.1f} s ({waiting} more timed out in the queue)")
time.sleep(2)
import selectors
poll = selectors.DefaultSelector()
for s in readers:
    poll.register(s, selectors.EVENT_READ)
ready = [key.fileobj for key, _ in poll.select(1.0)]
for s in ready:
    try:
        status = s.recv(64).split(b" ")[1].decode()
    except Exception:
        status = "closed"
    answers[status] = answers.get(status, 0) + 1
answers["not accepted yet"] = len(readers) - len(ready)
time.sleep(3)
rss = [l for l in open(f"/proc/{pid}/status") if l.startswith(("VmRSS", "Threads"))]
print(f"with {n} idle readers: " + ", ".join(l.split()[0] + " " + " ".join(l.split()[1:]) for l in rss))
print("answers: " + ", ".join(f"{k}: {v}" for k, v in sorted(answers.items())))
PY
echo "after they left: $(sleep 1; rss), $(threads) threads"
