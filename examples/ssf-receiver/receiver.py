"""An SSF receiver for hrsync's session-revoked events: takes Security
Event Tokens pushed as RFC 8935 says, and checks each with `jwcrypto`, a
JOSE library (PyPI), against the keys hrsync publishes:

    pip install -r requirements.txt
    python receiver.py PORT JWKS_URL ISSUER AUDIENCE [TOKEN]

with, in hrsync's config:

    [hooks.ssf]
    issuer = "ISSUER"                 # JWKS_URL is ISSUER/jwks.json
    ...
    [[hooks.ssf.receivers]]
    name = "example"
    url = "http://127.0.0.1:PORT/events"
    audience = "AUDIENCE"
    token = "TOKEN"                   # if given, asked for as a bearer token

It prints "listening on PORT" once it accepts requests, then one JSON line
per SET received: {"jti", "verified", "status", "typ", "iss", "aud",
"events" (the event types), "sub_id", "reason"}. A SET that verifies
(signature by a key of JWKS_URL, typ secevent+jwt, iss, aud) is answered 202
Accepted; one that does not, 400 with an RFC 8935 error. The keys are read
again when a SET names a key id not seen yet (a rotation).
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.request import urlopen

from jwcrypto import jwk, jwt

PORT = int(sys.argv[1])
JWKS_URL, ISSUER, AUDIENCE = sys.argv[2], sys.argv[3], sys.argv[4]
TOKEN = sys.argv[5] if len(sys.argv) > 5 else None
lock = threading.Lock()
keys = jwk.JWKSet()


def key_set(kid):
    """The published keys, read again when `kid` is not among them."""
    global keys
    with lock:
        if kid is None or keys.get_key(kid) is None:
            with urlopen(JWKS_URL, timeout=5) as answer:
                keys = jwk.JWKSet.from_json(answer.read())
        return keys


def check(body):
    """The claims and header of a SET that verifies; raises otherwise."""
    token = jwt.JWT()
    token.deserialize(body)
    header = json.loads(token.token.objects["protected"])
    token = jwt.JWT(
        jwt=body,
        key=key_set(header.get("kid")),
        algs=["EdDSA", "RS256"],
        check_claims={"iss": ISSUER, "aud": AUDIENCE},
    )
    if header.get("typ") != "secevent+jwt":
        raise ValueError(f"typ is {header.get('typ')!r}, not secevent+jwt")
    return json.loads(token.claims), header


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
        if TOKEN is not None and self.headers.get("authorization") != f"Bearer {TOKEN}":
            self.answer(401, {"err": "authentication_failed", "description": "bearer token"})
            return
        record = {"verified": False}
        try:
            claims, header = check(body)
            record.update(
                verified=True,
                typ=header.get("typ"),
                jti=claims.get("jti"),
                iss=claims.get("iss"),
                aud=claims.get("aud"),
                events=sorted(claims.get("events", {})),
                sub_id=claims.get("sub_id"),
                reason=next(iter(claims.get("events", {}).values()), {}).get("reason_admin"),
            )
            status, answer = 202, None
        except Exception as error:  # noqa: BLE001 - any failure is a refusal
            record["reason"] = str(error)
            status, answer = 400, {"err": "invalid_request", "description": str(error)}
        record["status"] = status
        with lock:
            sys.stdout.write(json.dumps(record) + "\n")
            sys.stdout.flush()
        self.answer(status, answer)

    def answer(self, status, body=None):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if body is not None:
            self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):  # noqa: A002
        pass


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
print(f"listening on {PORT}", flush=True)
server.serve_forever()
