#!/usr/bin/env python3
"""Publish HR lifecycle events straight onto hrsync's `hr.lifecycle.v1` topic.

This is the example a team that owns an HR source can copy when it wants to
publish lifecycle events from its own code instead of going through an hrsync
connector. It sends two events for one worker:

1. a Hire (the worker joins, with their attributes), then
2. an immediate Terminate (access is cut now, whatever effective_at says).

The contract it follows (see README.md next to this file):

* Value: Avro single-object encoding of `hrsync.v1.LifecycleEvent`:
  the bytes C3 01, the 8-byte CRC-64-AVRO fingerprint of the schema's parsing
  canonical form (little endian), then the Avro binary datum.
* Key: the employee id, UTF-8. All events of one worker then land on one
  partition, in the order they were sent.
* event_id: deterministic, derived from the content exactly as hrsync derives
  it (`derive_event_id` below), so sending the same change twice gives the
  same id and hrsync drops the duplicate.

For every event the broker acknowledged, one JSON object is printed on its own
line on stdout (topic, partition, offset, key, value bytes and the event
itself). Progress and errors go to stderr. The exit status is 0 only if every
event was acknowledged.

Usage:
    python produce_hire.py --brokers localhost:9092 --topic hr.lifecycle.v1
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import json
import struct
import sys
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import fastavro
import fastavro.validation
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from fastavro.schema import fingerprint, to_parsing_canonical_form

# The schema file shipped in this repository (schemas/ at the repository root).
DEFAULT_SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "hr.lifecycle.v1.avsc"

# ---------------------------------------------------------------------------
# Avro single-object encoding
# ---------------------------------------------------------------------------

SINGLE_OBJECT_MARKER = b"\xc3\x01"


class LifecycleCodec:
    """Encodes LifecycleEvent records with single-object framing."""

    def __init__(self, schema_path: Path) -> None:
        raw = json.loads(schema_path.read_text(encoding="utf-8"))
        # The fingerprint is taken over the schema's *parsing canonical form*
        # (Avro spec, "Schema Fingerprints"): docs, defaults and logicalType
        # are dropped, so `{"type": "long", "logicalType": "timestamp-millis"}`
        # becomes "long". fastavro returns the 8 CRC-64-AVRO bytes already in
        # the little-endian order single-object encoding puts on the wire, as
        # hex.
        canonical = to_parsing_canonical_form(raw)
        self.fingerprint = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
        if len(self.fingerprint) != 8:
            raise ValueError(f"unexpected CRC-64-AVRO fingerprint {self.fingerprint.hex()}")
        self.header = SINGLE_OBJECT_MARKER + self.fingerprint
        self.schema = fastavro.parse_schema(raw)
        self.standard_attributes = standard_attributes(raw)
        if not self.standard_attributes:
            raise ValueError(f"{schema_path} has no WorkerAttributes record")

    @property
    def fingerprint_u64(self) -> int:
        """The fingerprint as a number, as `hrsync schemas list` prints it."""
        return int.from_bytes(self.fingerprint, "little")

    def encode(self, event: dict[str, Any]) -> bytes:
        # Validate first, so a record that does not match the schema fails
        # with an error naming the field, before anything is sent.
        fastavro.validation.validate(event, self.schema, raise_errors=True)
        body = io.BytesIO()
        fastavro.schemaless_writer(body, self.schema, event)
        return self.header + body.getvalue()


# ---------------------------------------------------------------------------
# Deterministic event ids (hrsync's EventId::derive)
# ---------------------------------------------------------------------------
#
# hrsync accepts any non-empty event_id (at most 256 characters, no
# surrounding whitespace or control characters), but it drops duplicates by
# id, so a retried or re-imported change must carry the same id. The simplest
# way to get that, and the one this example uses, is hrsync's own rule:
#
#   UUIDv5 in the namespace d67891f5-435a-43c4-85b0-33243ef24473 over
#     lp(b"hrsync-event-id/1") + lp(source_system) + lp(employee_id)
#     + lp(kind) + lp(effective_at as 8-byte big-endian signed milliseconds)
#     + lp(content)
#   where lp(x) is len(x) as an 8-byte big-endian unsigned integer, then x,
#   and content is the canonical encoding of the payload (below).
#
# occurred_at is deliberately not part of the id.

EVENT_ID_NAMESPACE = uuid.UUID("d67891f5-435a-43c4-85b0-33243ef24473")
EVENT_ID_SCHEME = b"hrsync-event-id/1"


def standard_attributes(schema: Any) -> tuple[str, ...]:
    """The standard attribute names in canonical order: the fields of the
    schema's WorkerAttributes record, `custom` left out (custom.<key>
    attributes follow them, sorted by key). hrsync's tests check that its own
    list of attributes is exactly this record, in this order."""
    if isinstance(schema, dict):
        if schema.get("type") == "record" and schema.get("name") == "WorkerAttributes":
            return tuple(f["name"] for f in schema["fields"] if f["name"] != "custom")
        children = list(schema.values())
    elif isinstance(schema, list):
        children = schema
    else:
        children = []
    for child in children:
        found = standard_attributes(child)
        if found:
            return found
    return ()


# Union branch name -> the kind name used in the id.
KINDS = {
    "hrsync.v1.Hire": "hire",
    "hrsync.v1.Move": "move",
    "hrsync.v1.Terminate": "terminate",
    "hrsync.v1.Rehire": "rehire",
    "hrsync.v1.LeaveStarted": "leave_started",
    "hrsync.v1.LeaveEnded": "leave_ended",
}


def _lp(data: bytes) -> bytes:
    """Length-prefixed bytes: 8-byte big-endian length, then the bytes."""
    return struct.pack(">Q", len(data)) + data


def _entry(key: str, value: str | None) -> bytes:
    """One canonical (key, optional value) entry: 0 = absent, 1 = present."""
    if value is None:
        return _lp(key.encode()) + b"\x00"
    return _lp(key.encode()) + b"\x01" + _lp(value.encode())


def _present(key: str, value: str | None) -> bytes:
    """An entry for an optional field, left out entirely when absent."""
    return b"" if value is None else _entry(key, value)


def _date(value: date | int | None) -> str | None:
    """A calendar date as YYYY-MM-DD (the Avro value may be days since 1970)."""
    if value is None:
        return None
    if isinstance(value, int):
        value = date.fromordinal(date(1970, 1, 1).toordinal() + value)
    return value.isoformat()


def _attribute_order(name: str, standard: tuple[str, ...]) -> tuple[int, str]:
    """Sort key of attribute names: canonical order, then custom.* by key."""
    if name in standard:
        return (standard.index(name), "")
    return (len(standard), name)


def canonical_content(branch: str, payload: dict[str, Any], standard: tuple[str, ...]) -> bytes:
    """The canonical bytes of a payload (hrsync's LifecyclePayload::canonical_bytes).

    `standard` is the standard attributes in canonical order
    (`standard_attributes` of the schema)."""
    kind = KINDS[branch]
    if kind in ("hire", "rehire"):
        attributes = payload["attributes"]
        out = b"".join(
            _entry(name, attributes[name])
            for name in standard
            if attributes.get(name) is not None
        )
        custom = attributes.get("custom") or {}
        return out + b"".join(_entry(f"custom.{k}", custom[k]) for k in sorted(custom))
    if kind == "move":
        changes = sorted(
            payload["changes"], key=lambda c: _attribute_order(c["attribute"], standard)
        )
        return b"".join(_entry(c["attribute"], c.get("value")) for c in changes)
    if kind == "terminate":
        return (
            _entry("immediate", "true" if payload["immediate"] else "false")
            + _present("last_day_worked", _date(payload.get("last_day_worked")))
            + _present("reason", payload.get("reason"))
        )
    if kind == "leave_started":
        return _present("leave_type", payload.get("leave_type")) + _present(
            "expected_return", _date(payload.get("expected_return"))
        )
    return _present("reason", payload.get("reason"))  # leave_ended


def derive_event_id(
    source_system: str,
    employee_id: str,
    branch: str,
    effective_at_ms: int,
    payload: dict[str, Any],
    standard: tuple[str, ...],
) -> str:
    """The deterministic event id hrsync itself would give this change."""
    name = b"".join(
        _lp(part)
        for part in (
            EVENT_ID_SCHEME,
            source_system.encode(),
            employee_id.encode(),
            KINDS[branch].encode(),
            struct.pack(">q", effective_at_ms),
            canonical_content(branch, payload, standard),
        )
    )
    # uuid.uuid5 only takes text names before Python 3.12; this is the same
    # computation (SHA-1 over namespace + name, version and variant bits set).
    digest = hashlib.sha1(EVENT_ID_NAMESPACE.bytes + name).digest()
    return str(uuid.UUID(bytes=digest[:16], version=5))


# ---------------------------------------------------------------------------
# Building events
# ---------------------------------------------------------------------------


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def millis(moment: datetime) -> int:
    """A timezone-aware datetime as UTC milliseconds since the epoch (exact)."""
    if moment.tzinfo is None:
        raise ValueError("use timezone-aware datetimes")
    return (moment - EPOCH) // timedelta(milliseconds=1)


def lifecycle_event(
    *,
    source_system: str,
    employee_id: str,
    occurred_at: datetime,
    effective_at: datetime,
    time_zone: str,
    branch: str,
    payload: dict[str, Any],
    standard: tuple[str, ...],
) -> dict[str, Any]:
    """A LifecycleEvent record ready for the Avro writer.

    `branch` names the payload union branch (`hrsync.v1.Hire`, ...). It is
    passed to fastavro as a (name, record) tuple because Hire and Rehire have
    the same shape: a plain dict could be written as the wrong branch.
    """
    effective_ms = millis(effective_at)
    return {
        "event_id": derive_event_id(
            source_system, employee_id, branch, effective_ms, payload, standard
        ),
        "employee_id": employee_id,
        "source_system": source_system,
        # timestamp-millis fields carry plain UTC milliseconds.
        "occurred_at": millis(occurred_at),
        "effective_at": effective_ms,
        "time_zone": time_zone,  # IANA name, e.g. Europe/Berlin
        "payload": (branch, payload),
    }


def example_events(
    employee_id: str, source_system: str, standard: tuple[str, ...]
) -> list[dict[str, Any]]:
    """A hire and an immediate termination of one worker.

    `standard` is the schema's standard attributes (`standard_attributes`).

    A real producer reads these values from its HR records. The effective
    times here are fixed so that running the example twice produces the same
    event ids (only occurred_at, which is not part of the id, changes).
    """
    now = datetime.now(timezone.utc)
    attributes = {
        # Every field is given explicitly; optional ones are None when unset.
        "given_name": "Grace",
        "family_name": "Hopper",
        "preferred_name": None,
        "display_name": "Grace Hopper",
        "work_email": "grace.hopper@example.com",
        "personal_email": None,
        "phone": "+49 30 1234567",
        "title": "Staff Engineer",
        "department": "Compilers",
        "manager_id": None,
        "location": "Berlin",
        "cost_center": "CC-4711",
        "employment_type": "EMPLOYEE",  # EMPLOYEE, CONTRACTOR or INTERN
        # Source-specific attributes, sorted by key (hrsync keeps them sorted).
        "custom": {"badge": "B-42", "building": "HQ-2"},
    }
    # Both events are this worker's, in Berlin, sent now.
    worker_event = functools.partial(
        lifecycle_event,
        source_system=source_system,
        employee_id=employee_id,
        occurred_at=now,
        time_zone="Europe/Berlin",
        standard=standard,
    )
    hire = worker_event(
        # First day, 09:00 in Berlin.
        effective_at=datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc),
        branch="hrsync.v1.Hire",
        payload={"attributes": attributes},
    )
    terminate = worker_event(
        effective_at=datetime(2026, 9, 30, 16, 0, tzinfo=timezone.utc),
        branch="hrsync.v1.Terminate",
        payload={
            "immediate": True,  # cut access now, whatever effective_at says
            "last_day_worked": date(2026, 9, 30),  # a `date`: calendar day, no time
            "reason": "for cause",
        },
    )
    return [hire, terminate]


def as_json(event: dict[str, Any]) -> dict[str, Any]:
    """The event as plain JSON (for printing what was sent)."""
    branch, payload = event["payload"]
    payload = dict(payload)
    for field in ("last_day_worked", "expected_return"):
        if isinstance(payload.get(field), date):
            payload[field] = payload[field].isoformat()
    return {**event, "payload": {"type": branch, **payload}}


# ---------------------------------------------------------------------------
# Publishing
# ---------------------------------------------------------------------------


def make_producer(brokers: str) -> tuple[Producer, list[KafkaError]]:
    """An idempotent producer; errors reported by librdkafka are collected."""
    errors: list[KafkaError] = []

    def on_error(error: KafkaError) -> None:
        # Transient errors (a broker unreachable for a while) are retried by
        # librdkafka, which logs them itself; a record that still fails after
        # delivery.timeout.ms is reported by its delivery callback. Fatal
        # errors (e.g. the idempotent producer was fenced) end the run.
        if error.fatal():
            print(f"fatal kafka error: {error}", file=sys.stderr)
            errors.append(error)

    producer = Producer(
        {
            "bootstrap.servers": brokers,
            "client.id": "hr-lifecycle-example",
            # Idempotence: retries never duplicate or reorder records within a
            # partition. It implies acks=all; set it anyway to say so.
            "enable.idempotence": True,
            "acks": "all",
            # How long one record may be retried before it fails.
            "delivery.timeout.ms": 30000,
            # librdkafka's default partitioner (CRC32 of the key), the same as
            # hrsync's own producer: a worker's events from this producer and
            # from hrsync land on the same partition. (Java clients default to
            # murmur2; set partitioner there if you mix clients on one topic.)
            "partitioner": "consistent_random",
            "error_cb": on_error,
        }
    )
    return producer, errors


def publish(producer: Producer, topic: str, events: list[tuple[str, bytes]]) -> list[Message]:
    """Sends (key, value) pairs in order and waits until each is acknowledged.

    Raises KafkaException if any record fails.
    """
    delivered: list[Message] = []
    failed: list[KafkaError] = []

    def on_delivery(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            failed.append(error)
        else:
            delivered.append(message)

    for key, value in events:
        producer.produce(topic, key=key.encode("utf-8"), value=value, on_delivery=on_delivery)
    # flush() serves the delivery callbacks; it returns how many records are
    # still in flight. delivery.timeout.ms bounds each one, so give it a bit more.
    remaining = producer.flush(40)
    if failed:
        raise KafkaException(failed[0])
    if remaining:
        error = KafkaError(KafkaError._TIMED_OUT, f"{remaining} record(s) not acknowledged")
        raise KafkaException(error)
    return delivered


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brokers", required=True, help="bootstrap servers, host:port[,host:port]")
    parser.add_argument("--topic", default="hr.lifecycle.v1", help="topic (default: %(default)s)")
    parser.add_argument(
        "--schema",
        type=Path,
        default=DEFAULT_SCHEMA,
        help="hr.lifecycle.v1.avsc (default: %(default)s)",
    )
    parser.add_argument("--employee-id", default="E-20001", help="worker's HR id and Kafka key")
    parser.add_argument("--source-system", default="example-hr", help="name of your HR source")
    args = parser.parse_args()

    codec = LifecycleCodec(args.schema)
    print(f"schema fingerprint 0x{codec.fingerprint_u64:016x}", file=sys.stderr)

    events = example_events(args.employee_id, args.source_system, codec.standard_attributes)
    # Key = employee id, value = single-object encoded event.
    records = [(event["employee_id"], codec.encode(event)) for event in events]

    producer, errors = make_producer(args.brokers)
    started = time.monotonic()
    try:
        delivered = publish(producer, args.topic, records)
    except KafkaException as error:
        print(f"publishing failed: {error}", file=sys.stderr)
        return 1
    if errors:
        print(f"publishing failed: {errors[0]}", file=sys.stderr)
        return 1
    if len(delivered) != len(records):
        print(f"only {len(delivered)} of {len(records)} records acknowledged", file=sys.stderr)
        return 1

    # Delivery callbacks run in send order for one partition; match them up
    # by value to be safe.
    by_value = {message.value(): message for message in delivered}
    for event, (key, value) in zip(events, records):
        message = by_value[value]
        sent = {
            "topic": message.topic(),
            "partition": message.partition(),
            "offset": message.offset(),
            "key": key,
            "fingerprint": f"0x{codec.fingerprint_u64:016x}",
            "value_hex": value.hex(),
            "event": as_json(event),
        }
        print(json.dumps(sent, sort_keys=True), flush=True)
        print(
            f"sent {event['payload'][0]} {event['event_id']} for {key} to "
            f"{message.topic()}/{message.partition()}@{message.offset()}",
            file=sys.stderr,
        )
    print(f"done in {time.monotonic() - started:.2f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
