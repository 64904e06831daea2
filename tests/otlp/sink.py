"""An OTLP/HTTP receiver for the tests: oteltest's HttpSink (PyPI) on the
port given, printing one JSON line per span received to stdout:
{"trace_id", "span_id", "parent_span_id", "name", "service"} (ids in hex).
It prints "listening on PORT" once it accepts requests.

    python sink.py PORT
"""

import json
import logging
import sys
import time

from oteltest.sink import HttpSink


class Spans:
    def handle_trace(self, request, headers):  # noqa: ARG002
        for resource_spans in request.resource_spans:
            service = ""
            for attribute in resource_spans.resource.attributes:
                if attribute.key == "service.name":
                    service = attribute.value.string_value
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    print(
                        json.dumps(
                            {
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent_span_id": span.parent_span_id.hex(),
                                "name": span.name,
                                "service": service,
                            }
                        ),
                        flush=True,
                    )

    def handle_metrics(self, request, headers):  # noqa: ARG002
        pass

    def handle_logs(self, request, headers):  # noqa: ARG002
        pass


def main():
    port = int(sys.argv[1])
    logging.basicConfig(level=logging.WARNING)
    sink = HttpSink(Spans(), logging.getLogger("sink"), port=port)
    sink.start()
    print(f"listening on {port}", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
