"""A tracker on loopback, HTTP and UDP (BEP 15) on one port number, that writes down
every announce and names no peers.

usage: record_tracker.py PORT LOG_FILE
Each HTTP announce's query string is appended to LOG_FILE, one a line; each UDP
announce as `udp info_hash=HEX ip=A.B.C.D port=N`. Debian's opentracker is built
without WANT_IP_FROM_QUERY_STRING: it ignores the `ip` parameter (and the UDP
announce's IP field) and lists the address it sees, so what a client tells a tracker
about its own address is checked here.
"""
import http.server
import socket
import struct
import sys
import threading

port, log = int(sys.argv[1]), sys.argv[2]
lock = threading.Lock()


def note(line):
    with lock, open(log, "a") as f:
        f.write(line + "\n")


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        _, _, query = self.path.partition("?")
        note(query)
        body = b"d8:intervali5e5:peers0:e"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    while True:
        data, addr = s.recvfrom(2048)
        if len(data) >= 16 and struct.unpack(">I", data[8:12])[0] == 0:
            tid = data[12:16]
            s.sendto(struct.pack(">I", 0) + tid + struct.pack(">Q", 0x1234), addr)
        elif len(data) >= 98 and struct.unpack(">I", data[8:12])[0] == 1:
            tid, ih, ip = data[12:16], data[16:36], data[84:88]
            pport = struct.unpack(">H", data[96:98])[0]
            note("udp info_hash=%s ip=%s port=%d" % (ih.hex(), socket.inet_ntoa(ip), pport))
            s.sendto(struct.pack(">I", 1) + tid + struct.pack(">III", 5, 0, 1), addr)


threading.Thread(target=udp, daemon=True).start()
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
