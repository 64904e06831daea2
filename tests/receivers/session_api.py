"""A stand-in for an app's own session API, for the tests of hrsync's
revocation calls (`[[hooks.revocations]]`):

    python session_api.py PORT

It prints "listening on PORT" once it accepts requests, then one JSON line
per request as it arrives: {"method", "path", "authorization", "body"}
(the body parsed as JSON, or null), and answers 204.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1])
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def handle_any(self):
        length = int(self.headers.get("content-length", 0))
        body = self.rfile.read(length) if length else b""
        line = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "authorization": self.headers.get("authorization"),
                "body": json.loads(body) if body else None,
            }
        )
        with lock:  # one whole line per request, whichever thread writes
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()

    do_POST = do_DELETE = do_PUT = do_PATCH = handle_any  # noqa: N815

    def log_message(self, format, *args):  # noqa: A002
        pass


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
print(f"listening on {PORT}", flush=True)
server.serve_forever()
