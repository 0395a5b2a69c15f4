#!/usr/bin/env python3
"""A minimal OTLP/HTTP (JSON) trace receiver for the tests.

otlp_receiver.py PORT OUT CONTROL: listens on 127.0.0.1:PORT, appends the
body of every POST /v1/traces to OUT (one JSON document per line) and
answers 200 {} -- unless the file CONTROL holds "500", then it answers 500
and records nothing (a collector that refuses).  A request that carries
an Expect header is noted on a line of OUT.expect: this receiver never
answers "100 Continue", so such a client waits before sending its body.
Stopping the process is the collector being down.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, out, control = int(sys.argv[1]), sys.argv[2], sys.argv[3]


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        if self.headers.get("Expect") is not None:
            with open(out + ".expect", "a") as f:
                f.write(self.headers.get("Expect") + "\n")
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            mode = open(control).read().strip()
        except OSError:
            mode = ""
        ok = (self.path == "/v1/traces" and mode != "500" and
              self.headers.get("Content-Type") == "application/json")
        if ok:
            json.loads(body)  # a body that is not JSON fails the handler: 500
            with open(out, "a") as f:
                f.write(body.decode() + "\n")
        answer = b"{}" if ok else b'{"error":"refused"}'
        self.send_response(200 if ok else 500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, fmt, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
