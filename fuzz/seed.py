#!/usr/bin/env python3
"""Seeds fuzz/corpus/<target>/ from the recorded pika traffic in amqp-codec/testdata/pika.

Each .bin is one direction of a connection: c2s files open with the 8-byte protocol header,
s2c files are frames only. Seeds, named by their SHA-1 as libFuzzer names its own:

  frame_stream    2 bytes choosing frame_max 131072 (0xffff), then a whole stream cut at a
                  frame boundary to fit MAX_SEED, and then each frame on its own
  method          method frame payloads
  content_header  content header frame payloads
  table           the tables (without length prefix) of connection.start server-properties,
                  connection.start-ok client-properties and content header `headers`
  roundtrip       nothing: its input is structured (arbitrary), not wire bytes

Idempotent; the corpus directories are gitignored, so CI runs this before fuzzing.
"""

import collections
import hashlib
import pathlib
import struct
import sys

FUZZ = pathlib.Path(__file__).resolve().parent
TRAFFIC = FUZZ.parent / "amqp-codec" / "testdata" / "pika"
CORPUS = FUZZ / "corpus"
PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
# frame_stream's first two bytes map 0xffff to frame_max 131072, what pika negotiated.
FRAME_MAX_SELECTOR = b"\xff\xff"
# Matches -max_len in run.sh.
MAX_SEED = 65536
# Recorded traffic repeats itself (thousands of publishes); a few of each kind are enough.
PER_KIND = 16


def frames(stream):
    """(type, payload, whole frame bytes) for every complete frame of a stream."""
    at = 0
    while at + 7 <= len(stream):
        kind, _channel, size = struct.unpack_from(">BHI", stream, at)
        end = at + 8 + size
        if end > len(stream) or stream[end - 1] != 0xCE:
            raise ValueError(f"bad frame at {at}")
        yield kind, stream[at + 7 : end - 1], stream[at:end]
        at = end


def long_str(payload, at):
    (size,) = struct.unpack_from(">I", payload, at)
    return payload[at + 4 : at + 4 + size]


def header_table(payload):
    """The `headers` table of a content header payload, if its flags say there is one."""
    (flags,) = struct.unpack_from(">H", payload, 12)
    if not flags & 0x2000 or flags & 1:
        return None
    at = 14
    for bit in (0x8000, 0x4000):  # content-type, content-encoding: short strings
        if flags & bit:
            at += 1 + payload[at]
    return long_str(payload, at)


class Corpus:
    def __init__(self):
        self.written = collections.Counter()
        self.per_kind = collections.Counter()

    def add(self, target, data, kind=None):
        if len(data) > MAX_SEED:
            return
        if kind is not None:
            self.per_kind[target, kind] += 1
            if self.per_kind[target, kind] > PER_KIND:
                return
        folder = CORPUS / target
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / hashlib.sha1(data).hexdigest()
        if not path.exists():
            path.write_bytes(data)
            self.written[target] += 1


def main():
    corpus = Corpus()
    (CORPUS / "roundtrip").mkdir(parents=True, exist_ok=True)
    files = sorted(TRAFFIC.glob("*.bin"))
    if not files:
        sys.exit(f"no recorded traffic in {TRAFFIC}")
    for path in files:
        stream = path.read_bytes()
        if stream.startswith(PROTOCOL_HEADER):
            stream = stream[len(PROTOCOL_HEADER) :]
        cut, cut_done = 0, False
        for kind, payload, frame in frames(stream):
            cut_done = cut_done or cut + len(frame) + len(FRAME_MAX_SELECTOR) > MAX_SEED
            if not cut_done:
                cut += len(frame)
            corpus.add("frame_stream", FRAME_MAX_SELECTOR + frame, kind=(kind, payload[:4], len(frame) > 64))
            if kind == 1:
                corpus.add("method", payload, kind=payload[:4])
                class_method = struct.unpack_from(">HH", payload)
                if class_method == (10, 10):
                    corpus.add("table", long_str(payload, 6))
                elif class_method == (10, 11):
                    corpus.add("table", long_str(payload, 4))
            elif kind == 2:
                corpus.add("content_header", payload, kind=struct.unpack_from(">H", payload, 12))
                table = header_table(payload)
                if table:
                    corpus.add("table", table, kind="headers")
        # A whole stream, or a stream whose first frame is already too big: its start.
        corpus.add("frame_stream", FRAME_MAX_SELECTOR + stream[: cut or MAX_SEED - len(FRAME_MAX_SELECTOR)])
    for target in ("frame_stream", "method", "content_header", "table", "roundtrip"):
        total = len(list((CORPUS / target).iterdir()))
        print(f"seed.py: {target}: {corpus.written[target]} new, {total} in corpus/{target}")


if __name__ == "__main__":
    main()
