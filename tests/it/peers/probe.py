"""Listens for what a BitTorrent client tells the network, and writes it down.

usage: probe.py LOG ADDR DHT_PORT TRACKER_PORT...
Serves an HTTP tracker on ADDR at each TRACKER_PORT (answering every announce with no
peers), a DHT node on ADDR:DHT_PORT (answering every query, knowing no other node), and
listens for BEP 14 Local Service Discovery on 239.192.152.143:6771. Each thing heard
becomes one JSON line in LOG: {"kind": "tracker", "port": P, "info_hash": HEX},
{"kind": "dht", "q": QUERY, "info_hash": HEX or null} or {"kind": "lsd", "info_hash": HEX}.
"""
import json
import socket
import struct
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import libtorrent as lt

log_path, addr, dht_port = sys.argv[1], sys.argv[2], int(sys.argv[3])
ports = [int(p) for p in sys.argv[4:]]
lock = threading.Lock()


def note(entry):
    with lock, open(log_path, "a") as f:
        f.write(json.dumps(entry) + "\n")


def tracker(port):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            query = urllib.parse.urlparse(self.path).query
            for k, v in urllib.parse.parse_qsl(query, encoding="latin-1"):
                if k == "info_hash":
                    note({"kind": "tracker", "port": port,
                          "info_hash": v.encode("latin-1").hex()})
            body = b"d8:intervali1800e5:peers0:e"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    ThreadingHTTPServer((addr, port), Handler).serve_forever()


def dht():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((addr, dht_port))
    node_id = bytes(range(20))
    while True:
        data, peer = sock.recvfrom(65536)
        try:
            msg = lt.bdecode(data)
        except Exception:
            continue
        if not isinstance(msg, dict) or msg.get(b"y") != b"q":
            continue
        args = msg.get(b"a") or {}
        ih = args.get(b"info_hash")
        note({"kind": "dht", "q": msg.get(b"q", b"").decode("latin-1"),
              "info_hash": ih.hex() if isinstance(ih, bytes) else None})
        reply = {b"t": msg.get(b"t", b""), b"y": b"r",
                 b"r": {b"id": node_id, b"nodes": b"", b"token": b"probe"}}
        sock.sendto(lt.bencode(reply), peer)


for p in ports:
    threading.Thread(target=tracker, args=(p,), daemon=True).start()
threading.Thread(target=dht, daemon=True).start()

lsd = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
lsd.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lsd.bind(("", 6771))
lsd.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
               struct.pack("4s4s", socket.inet_aton("239.192.152.143"), socket.inet_aton(addr)))
note({"kind": "ready"})
while True:
    data, _ = lsd.recvfrom(65536)
    for line in data.decode("latin-1").split("\r\n"):
        if line.lower().startswith("infohash:"):
            note({"kind": "lsd", "info_hash": line.split(":", 1)[1].strip().lower()})
