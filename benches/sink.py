#!/usr/bin/env python3
"""An upstream that reads each POST's body whole before answering with the
number of bytes it got, so an upload's time through a gateway includes the
last byte's arrival. Plain HTTP/1.1 with keep-alive, a thread per connection.

    sink.py PORT
"""

import http.server
import sys


class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        left = int(self.headers.get("content-length", "0"))
        got = 0
        while left:
            b = self.rfile.read(min(left, 1 << 20))
            if not b:
                break
            got += len(b)
            left -= len(b)
        body = str(got).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
