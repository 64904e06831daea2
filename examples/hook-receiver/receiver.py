"""A receiver for hrsync's hooks that checks each delivery's signature with
`standardwebhooks`, the Standard Webhooks reference library (PyPI):

    pip install -r requirements.txt
    python receiver.py PORT SECRET      # SECRET: the endpoint's whsec_... secret

with, in hrsync's config:

    [[hooks.endpoints]]
    name = "example"
    url = "http://127.0.0.1:PORT/hrsync"
    secret = { env = "EXAMPLE_HOOK_SECRET" }

It prints "listening on PORT" once it accepts requests, then one JSON line
per delivery as it arrives: {"id", "timestamp", "verified", "status", "type",
"person_id", "employee_id", "version"}, where status is what it answers:
204, or 400 when the signature does not verify. A receiver must take a delivery it has
seen (the same webhook-id) again without acting twice: hrsync delivers at
least once.

To rehearse hrsync's retries (and for hrsync's own tests), `POST /faults`
with a JSON list of answers for the next deliveries, one each, in order:
{"status": N} (with "retry_after": "S", a Retry-After header) or
{"delay_ms": N} (wait, then answer 204).
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

PORT = int(sys.argv[1])
WEBHOOK = Webhook(sys.argv[2])
faults = []
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        global faults
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.path == "/faults":
            with lock:
                faults = json.loads(body)
            self.answer(204)
            return
        try:
            WEBHOOK.verify(body, dict(self.headers.items()))
            verified = True
        except WebhookVerificationError:
            verified = False
        with lock:
            fault = faults.pop(0) if faults else {}
        status = fault.get("status", 204) if verified else 400
        event = json.loads(body) if verified else {}
        data = event.get("data", {})
        line = json.dumps(
            {
                "id": self.headers.get("webhook-id"),
                "timestamp": self.headers.get("webhook-timestamp"),
                "verified": verified,
                "status": status,
                "type": event.get("type"),
                "person_id": data.get("person_id"),
                "employee_id": data.get("employee_id"),
                "version": data.get("version"),
            }
        )
        with lock:  # one whole line per delivery, whichever thread writes
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        if "delay_ms" in fault:
            time.sleep(fault["delay_ms"] / 1000)
        headers = {"Retry-After": fault["retry_after"]} if "retry_after" in fault else {}
        self.answer(status, headers)

    def answer(self, status, headers=None):
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format, *args):  # noqa: A002
        pass


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
print(f"listening on {PORT}", flush=True)
server.serve_forever()
