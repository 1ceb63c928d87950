#!/usr/bin/env python3
"""The least BitTorrent needs to find peers on this machine, for benches/compare/run.sh.

  bt_tracker.py torrent FILE ANNOUNCE_URL OUT   writes a .torrent for FILE (1 MiB pieces, SHA-1)
  bt_tracker.py serve ADDRESS PORT              an HTTP tracker: every announce of an info-hash
                                                is answered with the peers that announced it

Only for the side-by-side benchmark: no expiry, no scrape, IPv4 only.
"""
import hashlib
import os
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PIECE = 1 << 20


def bencode(value):
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, v) for k, v in value.items())
        return b"d" + b"".join(bencode(k) + bencode(v) for k, v in items) + b"e"
    raise TypeError(type(value))


def make_torrent(path, announce, out):
    pieces = bytearray()
    with open(path, "rb") as f:
        while block := f.read(PIECE):
            pieces += hashlib.sha1(block).digest()
    info = {"name": os.path.basename(path), "length": os.path.getsize(path),
            "piece length": PIECE, "pieces": bytes(pieces)}
    with open(out, "wb") as f:
        f.write(bencode({"announce": announce, "info": info}))


SWARMS = {}


class Announce(BaseHTTPRequestHandler):
    def do_GET(self):
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query, encoding="latin-1")
        info_hash = query["info_hash"][0].encode("latin-1")
        port = int(query["port"][0])
        peers = SWARMS.setdefault(info_hash, set())
        me = (self.client_address[0], port)
        compact = b"".join(bytes(map(int, ip.split("."))) + p.to_bytes(2, "big")
                           for ip, p in peers if (ip, p) != me)
        if query.get("event", [""])[0] != "stopped":
            peers.add(me)
        else:
            peers.discard(me)
        body = bencode({"interval": 5, "peers": compact})
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    if sys.argv[1] == "torrent":
        make_torrent(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        ThreadingHTTPServer((sys.argv[2], int(sys.argv[3])), Announce).serve_forever()
