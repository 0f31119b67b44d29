"""An HTTP tracker on loopback that writes down every announce and names no peers.

usage: record_tracker.py PORT LOG_FILE
Each announce's query string is appended to LOG_FILE, one a line. Debian's opentracker
is built without WANT_IP_FROM_QUERY_STRING: it ignores the `ip` parameter (and the
UDP announce's IP field) and lists the address it sees, so what a client tells a
tracker about its own address is checked here.
"""
import http.server
import sys

port, log = int(sys.argv[1]), sys.argv[2]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        _, _, query = self.path.partition("?")
        with open(log, "a") as f:
            f.write(query + "\n")
        body = b"d8:intervali5e5:peers0:e"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
