"""Run the scim2-tester conformance checks (PyPI) against a SCIM server.

Usage: python run_scim2_tester.py BASE_URL TOKEN_FILE

The token is read from a file so that it never shows in a process list.
Prints JSON lines on stdout: first the inventory,
{"kind": "inventory", "version", "checkers"} (every checker the package
exports), then one {"kind": "result", "title", "status", "reason",
"resource_type", "tags"} per check.

Runs `check_server` (every check it orchestrates), then the checkers the
package exports but `check_server` does not call (`core_schemas_validation`
in 0.5.2), so that no exported check goes unrun.

scim2-client sends requests through an "engine"; the network engine needs
httpx2, which the hrsync venv does not hold, so this script brings a small
one built on the standard library's http.client.
"""

import http.client
import importlib.metadata
import json
import sys
import urllib.parse

import scim2_tester.checkers

from scim2_client import BaseSyncSCIMClient
from scim2_client import RequestNetworkException
from scim2_tester import CheckConfig
from scim2_tester import check_server
from scim2_tester.utils import CheckContext


class Headers:
    """Response headers, looked up by case-insensitive names."""

    def __init__(self, pairs):
        self._pairs = [(name.lower(), value) for name, value in pairs]

    def get(self, key, default=None):
        key = key.lower()
        values = [value for name, value in self._pairs if name == key]
        return ", ".join(values) if values else default


class Response:
    """What scim2-client reads of a response: status, headers and text."""

    def __init__(self, status_code, headers, content):
        self.status_code = status_code
        self.headers = headers
        self.content = content

    @property
    def text(self):
        return self.content.decode("utf-8", errors="replace")

    def json(self):
        return json.loads(self.content)


class StdlibSCIMClient(BaseSyncSCIMClient):
    """A synchronous scim2-client engine over http.client."""

    def __init__(self, base_url, token, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.base = urllib.parse.urlsplit(base_url.rstrip("/"))
        self.token = token
        self.connection = None

    def _url(self, url):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme:
            return parts
        path = self.base.path + "/" + parts.path.lstrip("/")
        return self.base._replace(path=path, query=parts.query)

    def _stays_under_base_url(self, endpoint):
        url = self._url(endpoint)
        segments = url.path.split("/")
        return (
            url.scheme == self.base.scheme
            and url.netloc == self.base.netloc
            and url.path.startswith(self.base.path + "/")
            and "." not in segments
            and ".." not in segments
        )

    def _parse_json(self, response):
        return response.json()

    def _connect(self):
        if self.connection is None:
            self.connection = http.client.HTTPConnection(
                self.base.hostname, self.base.port or 80, timeout=30
            )
        return self.connection

    def request(self, method, url, params=None, json=None, content=None, headers=None):
        target = self._url(url)
        query = target.query
        if params:
            extra = urllib.parse.urlencode(params, doseq=True)
            query = f"{query}&{extra}" if query else extra
        path = target.path + (f"?{query}" if query else "")
        sent = {"Authorization": f"Bearer {self.token}", "Accept": "application/scim+json"}
        body = content
        if json is not None:
            body = __import__("json").dumps(json).encode()
            sent["Content-Type"] = "application/scim+json"
        sent.update(headers or {})
        # One retry on a fresh connection: the server may have closed an idle one.
        for attempt in (1, 2):
            try:
                connection = self._connect()
                connection.request(method, path, body=body, headers=sent)
                response = connection.getresponse()
                return Response(
                    response.status, Headers(response.getheaders()), response.read()
                )
            except (OSError, http.client.HTTPException) as exc:
                self.connection = None
                if attempt == 2:
                    error = RequestNetworkException()
                    error.add_note(str(exc))
                    raise error from exc


# Checkers that run only inside others and take arguments check_server
# supplies (a model, a resource type): they are not run on their own.
ORCHESTRATED = {"resource_type_tests"}

# Exported checkers check_server does not call, run here after it.
STANDALONE = ["core_schemas_validation"]


def emit(result):
    print(
        json.dumps(
            {
                "kind": "result",
                "title": result.title,
                "status": result.status.name,
                "reason": result.reason,
                "resource_type": result.resource_type,
                "tags": sorted(result.tags),
            }
        ),
        flush=True,
    )


def main():
    base_url, token_file = sys.argv[1], sys.argv[2]
    with open(token_file) as f:
        token = f.read().strip()
    print(
        json.dumps(
            {
                "kind": "inventory",
                "version": importlib.metadata.version("scim2-tester"),
                "checkers": sorted(scim2_tester.checkers.__all__),
            }
        ),
        flush=True,
    )
    client = StdlibSCIMClient(base_url, token)
    for result in check_server(client):
        emit(result)
    # check_server left the server's description on the client.
    context = CheckContext(client, CheckConfig())
    for name in STANDALONE:
        for result in getattr(scim2_tester.checkers, name)(context):
            emit(result)


if __name__ == "__main__":
    main()
