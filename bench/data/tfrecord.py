"""TFRecord files of ``tf.train.Example`` records, read and written without TensorFlow.

Framing of one record (all little-endian)::

    uint64 length | uint32 masked_crc32c(length bytes) | payload | uint32 masked_crc32c(payload)

with ``masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8 (mod 2**32)`` and CRC-32C (Castagnoli,
reflected polynomial 0x82F63B78). The payload is a serialized protobuf ``tf.train.Example``::

    Example  { Features features = 1; }
    Features { map<string, Feature> feature = 1; }      # map entry: key = 1, value = 2
    Feature  { oneof { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
    BytesList { repeated bytes value = 1; }  FloatList { repeated float value = 1 [packed]; }
    Int64List { repeated int64 value = 1 [packed]; }

A ``SequenceExample``'s ``context`` is the same field 1, so its context features parse the same way
(other fields are skipped). CRC-32C runs over numpy lanes (the CRC is linear over GF(2): chunks are
checksummed in parallel, then combined), fast enough to verify every record of BAIR.
"""

from __future__ import annotations

import math
import os
import struct
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence, Union

import numpy as np

Feature = Union[list[bytes], np.ndarray]  # bytes_list -> list of bytes; float/int64 lists -> arrays
FeatureInput = Union[bytes, Sequence[bytes], np.ndarray, Sequence[float], Sequence[int]]


class TFRecordError(ValueError):
    """A TFRecord file or an Example inside it is malformed."""


# ----------------------------------------------------------------------------- CRC-32C

_MASK32 = 0xFFFFFFFF


def _make_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(0x82F63B78), table >> 1).astype(np.uint32)
    return table


_TABLE = _make_table()
_TABLE_LIST = [int(v) for v in _TABLE]


@lru_cache(maxsize=16)
def _zeros_operator(length: int) -> tuple[list[int], list[int], list[int], list[int]]:
    """Byte tables of the linear map 'CRC register after ``length`` zero bytes'."""
    images = np.uint32(1) << np.arange(32, dtype=np.uint32)  # the 32 basis registers
    for _ in range(length):
        images = _TABLE[images & 0xFF] ^ (images >> 8)
    values = np.arange(256, dtype=np.uint32)
    tables = []
    for k in range(4):
        t = np.zeros(256, dtype=np.uint32)
        for bit in range(8):
            t ^= np.where((values >> bit) & 1, images[8 * k + bit], 0).astype(np.uint32)
        tables.append([int(v) for v in t])
    return tables[0], tables[1], tables[2], tables[3]


def crc32c(data: bytes | bytearray | memoryview) -> int:
    """CRC-32C (Castagnoli) of ``data``, e.g. ``crc32c(b"123456789") == 0xE3069283``."""
    buf = np.frombuffer(data, dtype=np.uint8)
    reg = _MASK32
    done = 0
    if buf.size >= 4096:
        lane = math.isqrt(buf.size)
        lanes = buf.size // lane
        columns = np.ascontiguousarray(buf[:lanes * lane].reshape(lanes, lane).T)
        regs = np.zeros(lanes, dtype=np.uint32)
        for column in columns:  # every lane starts from a zero register
            regs = _TABLE[(regs ^ column) & 0xFF] ^ (regs >> 8)
        t0, t1, t2, t3 = _zeros_operator(lane)
        for r in regs.tolist():  # register(A + B) = zeros_|B|(register(A)) ^ register_0(B)
            reg = t0[reg & 0xFF] ^ t1[(reg >> 8) & 0xFF] ^ t2[(reg >> 16) & 0xFF] ^ t3[reg >> 24] ^ r
        done = lanes * lane
    for b in buf[done:].tolist():
        reg = _TABLE_LIST[(reg ^ b) & 0xFF] ^ (reg >> 8)
    return reg ^ _MASK32


def masked_crc32c(data: bytes | bytearray | memoryview) -> int:
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & _MASK32) + 0xA282EAD8) & _MASK32


# ----------------------------------------------------------------------------- record framing


def encode_record(payload: bytes) -> bytes:
    """One framed record."""
    header = struct.pack("<Q", len(payload))
    return b"".join([header, struct.pack("<I", masked_crc32c(header)), payload,
                     struct.pack("<I", masked_crc32c(payload))])


def _read_header(f, path: Path, offset: int) -> int | None:
    """The payload length of the record at ``offset`` (None at a clean end of file)."""
    header = f.read(12)
    if not header:
        return None
    if len(header) < 12:
        raise TFRecordError(f"{path}: truncated record header at byte {offset} ({len(header)} of 12 bytes)")
    (length,), (crc,) = struct.unpack("<Q", header[:8]), struct.unpack("<I", header[8:])
    if crc != masked_crc32c(header[:8]):
        raise TFRecordError(f"{path}: length CRC mismatch at byte {offset}: stored {crc:#010x}, "
                            f"computed {masked_crc32c(header[:8]):#010x} (not a TFRecord file, or corrupt)")
    return length


def record_offsets(path: str | Path) -> list[int]:
    """Byte offsets of every record in a TFRecord file (reads only the headers; checks their CRCs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"TFRecord file {path} does not exist")
    size = path.stat().st_size
    offsets: list[int] = []
    with open(path, "rb") as f:
        offset = 0
        while (length := _read_header(f, path, offset)) is not None:
            end = offset + 12 + length + 4
            if end > size:
                raise TFRecordError(f"{path}: record at byte {offset} claims {length} payload bytes; "
                                    f"the file ends {end - size} bytes early (truncated download?)")
            offsets.append(offset)
            f.seek(end)
            offset = end
    return offsets


def read_record(path: str | Path, offset: int = 0, verify: bool = True) -> bytes:
    """The payload of the record starting at byte ``offset``; ``verify`` checks its data CRC."""
    path = Path(path)
    with open(path, "rb") as f:
        f.seek(offset)
        length = _read_header(f, path, offset)
        if length is None:
            raise TFRecordError(f"{path}: no record at byte {offset} (end of file)")
        payload = f.read(length)
        footer = f.read(4)
    if len(payload) < length or len(footer) < 4:
        raise TFRecordError(f"{path}: record at byte {offset} is truncated ({len(payload)} of {length} "
                            f"payload bytes)")
    if verify:
        (stored,) = struct.unpack("<I", footer)
        if stored != masked_crc32c(payload):
            raise TFRecordError(f"{path}: data CRC mismatch in the record at byte {offset}: stored "
                                f"{stored:#010x}, computed {masked_crc32c(payload):#010x}")
    return payload


def iter_records(path: str | Path, verify: bool = True) -> Iterator[bytes]:
    """Every record payload in file order."""
    for offset in record_offsets(path):
        yield read_record(path, offset, verify=verify)


def write_tfrecord(path: str | Path, payloads: Iterable[bytes]) -> Path:
    """Write framed records to ``path`` atomically (temporary file, then ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            for payload in payloads:
                f.write(encode_record(payload))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# ----------------------------------------------------------------------------- protobuf


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise TFRecordError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise TFRecordError("varint longer than 10 bytes")


def _fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) of every field of a protobuf message."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise TFRecordError(f"unsupported protobuf wire type {wire} (field {field})")
        if pos > len(buf):
            raise TFRecordError(f"field {field} runs past the end of its message")
        yield field, wire, value


def _int64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _parse_feature(buf: memoryview) -> Feature:
    kinds = [(field, value) for field, wire, value in _fields(buf) if wire == 2 and field in (1, 2, 3)]
    if not kinds:
        return []  # an empty Feature (no list set)
    field, inner = kinds[-1]
    if field == 1:
        return [bytes(v) for f, w, v in _fields(inner) if f == 1 and w == 2]
    if field == 2:
        parts = []
        for f, w, v in _fields(inner):
            if f == 1:
                parts.append(bytes(v))  # packed (wire 2) or single fixed32 (wire 5): raw float32 bytes
        return np.frombuffer(b"".join(parts), dtype="<f4").astype(np.float32)
    values: list[int] = []
    for f, w, v in _fields(inner):
        if f != 1:
            continue
        if w == 0:
            values.append(_int64(v))
        else:  # packed varints
            pos = 0
            while pos < len(v):
                x, pos = _varint(v, pos)
                values.append(_int64(x))
    return np.asarray(values, dtype=np.int64)


def parse_example(payload: bytes | memoryview, source: str = "<bytes>") -> dict[str, Feature]:
    """The features of a serialized ``tf.train.Example`` (or a ``SequenceExample``'s context)."""
    buf = memoryview(payload)
    features: dict[str, Feature] = {}
    try:
        for field, wire, value in _fields(buf):
            if field != 1 or wire != 2:
                continue
            for f, w, entry in _fields(value):
                if f != 1 or w != 2:
                    continue
                key, feature = None, memoryview(b"")
                for ef, ew, ev in _fields(entry):
                    if ef == 1 and ew == 2:
                        key = bytes(ev).decode("utf-8")
                    elif ef == 2 and ew == 2:
                        feature = ev
                if key is None:
                    raise TFRecordError("a feature map entry has no key")
                features[key] = _parse_feature(feature)
    except (TFRecordError, UnicodeDecodeError) as e:
        raise TFRecordError(f"{source}: malformed tf.train.Example ({e})") from e
    return features


def _encode_varint(v: int) -> bytes:
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _length_delimited(field: int, data: bytes) -> bytes:
    return _encode_varint(field << 3 | 2) + _encode_varint(len(data)) + data


def _serialize_feature(name: str, value: FeatureInput) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        value = [bytes(value)]
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (bytes, bytearray)) for v in value):
        inner = b"".join(_length_delimited(1, bytes(v)) for v in value)
        return _length_delimited(1, inner)
    array = np.asarray(value)
    if array.dtype.kind == "f":
        packed = array.astype("<f4").ravel().tobytes()
        return _length_delimited(2, _length_delimited(1, packed))
    if array.dtype.kind in "iub":
        packed = b"".join(_encode_varint(int(v)) for v in array.ravel())
        return _length_delimited(3, _length_delimited(1, packed))
    raise TypeError(f"feature {name!r}: cannot encode {type(value).__name__} of dtype {array.dtype} "
                    "(bytes, floats or integers)")


def serialize_example(features: Mapping[str, FeatureInput]) -> bytes:
    """A serialized ``tf.train.Example``: bytes (or a list of bytes) become a bytes_list, float arrays
    a float_list (float32), integer arrays an int64_list."""
    entries = [_length_delimited(1, key.encode("utf-8")) + _length_delimited(2, _serialize_feature(key, value))
               for key, value in features.items()]
    return _length_delimited(1, b"".join(_length_delimited(1, entry) for entry in entries))
