"""The pika side of tests/tests/interop_pika.rs: consumes what our client published and prints
it, or publishes a fixed set of messages for our client to read. Runs in the venv that
scripts/python-env.sh makes, and talks to the broker only through pika's public API.

    pika_peer.py HOST:PORT consume QUEUE N   read N messages, print one JSON line each
    pika_peer.py HOST:PORT publish QUEUE     publish MESSAGES below, with publisher confirms

Every value is printed tagged with the Python type pika produced, so the Rust side compares
exactly, with no float or encoding guesswork: ["str", s], ["bytes", base64], ["int", digits],
["float", repr], ["bool", "true"|"false"], ["decimal", str(Decimal)], ["datetime",
isoformat], ["none"], ["list", [values]], ["dict", [[key, value], ...]] (wire order kept).
The JSON holds only strings and arrays, and is ASCII (non-ASCII as \\u escapes).
"""

import base64
import datetime
import decimal
import json
import signal
import sys

import pika
from pika.compat import long

# pika.spec.BasicProperties's attributes, in the spec's flag order.
PROPERTIES = [
    "content_type",
    "content_encoding",
    "headers",
    "delivery_mode",
    "priority",
    "correlation_id",
    "reply_to",
    "expiration",
    "message_id",
    "timestamp",
    "type",
    "user_id",
    "app_id",
    "cluster_id",
]

# A peer that hangs would hang the Rust test; every run ends well within this.
DEADLINE_SECONDS = 60
# How long consume waits for the next message before failing.
INACTIVITY_SECONDS = 20

UTC = datetime.timezone.utc


def pattern(size):
    """Bytes 0, 1, ..., 250, 0, 1, ...: a body whose every offset is checkable."""
    return bytes(i % 251 for i in range(size))


# What `publish` sends, in order; the Rust test holds the same list as FieldValues. The header
# values cover every Python type pika's encoder accepts (pika.data.encode_value): str -> S,
# bytes -> x, bool -> t, int -> I (or l beyond 32 bits), pika.compat.long -> l, Decimal -> D,
# datetime -> T (whole seconds, naive taken as UTC), dict -> F, list -> A, None -> V. It has
# no branch for float, so pika cannot send f or d (UnsupportedAMQPFieldException), and none
# for b, B, s, u or i.
ALL_TYPES_HEADERS = {
    "str": "hello",
    "str-utf8": "caf\u00e9 \u2615 \u65e5\u672c",
    "str-empty": "",
    "bytes": b"\x00\x01\xfe\xff",
    "bytes-empty": b"",
    "true": True,
    "false": False,
    "int": 42,
    "int-negative": -7,
    "int-i32-max": 2**31 - 1,
    "int-i32-min": -(2**31),
    "int-beyond-i32": 2**31,
    "int-below-i32": -(2**31) - 1,
    "int-i64-max": 2**63 - 1,
    "int-i64-min": -(2**63),
    "long": long(5),
    "decimal": decimal.Decimal("123.45"),
    "decimal-trailing-zero": decimal.Decimal("1.50"),
    "decimal-integer": decimal.Decimal("7"),
    "decimal-exponent": decimal.Decimal("1E+3"),
    "decimal-max": decimal.Decimal("2147483.647"),
    "datetime": datetime.datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC),
    "datetime-naive": datetime.datetime(2001, 9, 9, 1, 46, 40),
    "datetime-epoch": datetime.datetime(1970, 1, 1, tzinfo=UTC),
    "datetime-microseconds": datetime.datetime(2023, 11, 14, 22, 13, 20, 999999, tzinfo=UTC),
    "table": {"a": 1, "b": "two", "nested": {"deep": True}},
    "table-empty": {},
    "array": [
        1,
        2**40,
        "two",
        b"\x03",
        True,
        None,
        decimal.Decimal("0.5"),
        datetime.datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC),
        [False, []],
        {"k": "v"},
    ],
    "array-empty": [],
    "void": None,
}

MESSAGES = [
    (
        pika.BasicProperties(
            content_type="application/json",
            content_encoding="gzip",
            headers=ALL_TYPES_HEADERS,
            delivery_mode=2,
            priority=7,
            correlation_id="corr-\u00fc",
            reply_to="replies",
            expiration="60000",
            message_id="msg-1",
            timestamp=1700000000,
            type="order.created",
            user_id="guest",  # RabbitMQ refuses a user-id other than the connection's user.
            app_id="pika-peer",
            # cluster_id is left out: it is deprecated, and RabbitMQ refuses it.
        ),
        b"hello from pika",
    ),
    (pika.BasicProperties(), b""),
    (pika.BasicProperties(delivery_mode=1), b"\x00"),
    (
        pika.BasicProperties(
            priority=0,
            message_id="m" * 255,  # the longest short string
            timestamp=2**64 - 1,
            headers={},
        ),
        pattern(1 << 20),
    ),
]


def tagged(value):
    """The JSON form of one value pika produced; fails on a type it does not know."""
    if isinstance(value, bool):  # before int: bool is an int
        return ["bool", "true" if value else "false"]
    if isinstance(value, int):
        return ["int", str(int(value))]
    if isinstance(value, float):
        return ["float", repr(value)]
    if isinstance(value, str):
        return ["str", value]
    if isinstance(value, bytes):
        return ["bytes", base64.b64encode(value).decode("ascii")]
    if isinstance(value, decimal.Decimal):
        return ["decimal", str(value)]
    if isinstance(value, datetime.datetime):
        return ["datetime", value.isoformat()]
    if value is None:
        return ["none"]
    if isinstance(value, list):
        return ["list", [tagged(v) for v in value]]
    if isinstance(value, dict):
        return ["dict", [[tagged(k), tagged(v)] for k, v in value.items()]]
    raise TypeError(f"pika produced a {type(value).__name__}: {value!r}")


def connect(addr):
    host, _, port = addr.rpartition(":")
    params = pika.ConnectionParameters(
        host=host,
        port=int(port),
        credentials=pika.PlainCredentials("guest", "guest"),
        socket_timeout=10,
        blocked_connection_timeout=30,
    )
    return pika.BlockingConnection(params)


def consume(addr, queue, count):
    connection = connect(addr)
    channel = connection.channel()
    received = 0
    for method, properties, body in channel.consume(queue, inactivity_timeout=INACTIVITY_SECONDS):
        if method is None:
            sys.exit(f"pika_peer: only {received} of {count} messages arrived in {INACTIVITY_SECONDS} s")
        fields = [[name, tagged(getattr(properties, name))] for name in PROPERTIES]
        fields.append(["body", tagged(body)])
        print(json.dumps(fields, ensure_ascii=True), flush=True)
        channel.basic_ack(method.delivery_tag)
        received += 1
        if received == count:
            break
    channel.cancel()
    connection.close()


def publish(addr, queue):
    connection = connect(addr)
    channel = connection.channel()
    channel.confirm_delivery()  # basic_publish now raises unless the broker acks
    for properties, body in MESSAGES:
        channel.basic_publish("", queue, body, properties, mandatory=True)
    connection.close()
    print(len(MESSAGES), flush=True)


def main(argv):
    signal.alarm(DEADLINE_SECONDS)
    match argv:
        case [addr, "consume", queue, count]:
            consume(addr, queue, int(count))
        case [addr, "publish", queue]:
            publish(addr, queue)
        case _:
            sys.exit(f"usage: pika_peer.py HOST:PORT (consume QUEUE N | publish QUEUE); got {argv}")


if __name__ == "__main__":
    main(sys.argv[1:])
