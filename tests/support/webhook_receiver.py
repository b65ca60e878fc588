#!/usr/bin/env python3
"""A webhook receiver for the tests: verifies each POST with the reference Standard
Webhooks library (standardwebhooks/, vendored unchanged) and prints one JSON line per
request to stdout: {"id", "timestamp", "signature", "verified", "error", "body"}.

    webhook_receiver.py SECRET [--fail N] [--port P]

Listens on 127.0.0.1 (port P, or a free one), prints "listening PORT" first. With
--fail N the first N requests are answered 500 (after being verified and printed).
"""
import http.server
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from standardwebhooks import Webhook  # noqa: E402

secret = sys.argv[1]
args = sys.argv[2:]
fail = int(args[args.index("--fail") + 1]) if "--fail" in args else 0
port = int(args[args.index("--port") + 1]) if "--port" in args else 0
wh = Webhook(secret)
seen = {"n": 0}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        headers = {k: v for k, v in self.headers.items()}
        verified, error = True, None
        try:
            wh.verify(body, headers)
        except Exception as e:  # the test reads the error
            verified, error = False, str(e)
        seen["n"] += 1
        line = {
            "id": headers.get("webhook-id") or headers.get("Webhook-Id"),
            "timestamp": self.headers.get("webhook-timestamp"),
            "signature": self.headers.get("webhook-signature"),
            "content_type": self.headers.get("Content-Type"),
            "verified": verified,
            "error": error,
            "body": body.decode("utf-8", "replace"),
        }
        print(json.dumps(line), flush=True)
        status = 500 if seen["n"] <= fail else (200 if verified else 400)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


server = http.server.HTTPServer(("127.0.0.1", port), Handler)
print("listening", server.server_address[1], flush=True)
server.serve_forever()
