"""TensorFlow's checkpoint (tensor bundle, format V2) read without TensorFlow.

A checkpoint is `PREFIX.index`, an SSTable (LevelDB's table format: blocks of
prefix-compressed key/value entries, an index block, a 48-byte footer) mapping each tensor's
name to a `BundleEntryProto` (dtype, shape, byte offset and size), over the raw
little-endian bytes of `PREFIX.data-00000-of-00001`. Hand-written (struct + numpy) because
the only readers that exist are TensorFlow's own, which cannot live beside our numpy and
torch; it reads what TensorFlow's `BundleWriter` writes for one shard: uncompressed blocks,
whole tensors (no slices), numeric dtypes.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np

# TensorFlow's DataType enum -> numpy dtype (little-endian), for the numeric types.
DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    19: np.dtype("<f2"),  # DT_HALF
}
FOOTER_BYTES = 48
TABLE_MAGIC = 0xDB4775248B80FB57
BLOCK_TRAILER_BYTES = 5  # compression type (1 byte) + masked crc32c (4 bytes)


class CheckpointFormatError(ValueError):
    """The bytes are not a checkpoint this reader understands (truncated, hostile, other
    format); the message says what and where."""


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lies in the data file: `dtype` is TensorFlow's enum value."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int


def _varint(buffer: bytes, position: int, what: str) -> tuple[int, int]:
    """Decode a base-128 varint at `position` -> (value, next position)."""
    value = shift = 0
    while True:
        if position >= len(buffer) or shift > 63:
            raise CheckpointFormatError(f"{what}: truncated or overlong varint")
        byte = buffer[position]
        value |= (byte & 0x7F) << shift
        position += 1
        shift += 7
        if not byte & 0x80:
            return value, position


def _proto_fields(message: bytes, what: str) -> list[tuple[int, int | bytes]]:
    """Protocol-buffer wire format -> [(field number, varint value or bytes)]."""
    fields: list[tuple[int, int | bytes]] = []
    position = 0
    while position < len(message):
        tag, position = _varint(message, position, what)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, position = _varint(message, position, what)
            fields.append((number, value))
        elif wire == 2:
            length, position = _varint(message, position, what)
            if position + length > len(message):
                raise CheckpointFormatError(f"{what}: field {number} runs past the message")
            fields.append((number, message[position : position + length]))
            position += length
        elif wire in (1, 5):  # fixed64 / fixed32 (the entry's crc32c): skipped
            position += 8 if wire == 1 else 4
        else:
            raise CheckpointFormatError(f"{what}: unsupported protobuf wire type {wire}")
    if position != len(message):
        raise CheckpointFormatError(f"{what}: a fixed-width field runs past the message")
    return fields


def _block(index: bytes, handle: bytes, what: str) -> bytes:
    """The contents of the block a BlockHandle (varint offset, varint size) points at."""
    offset, position = _varint(handle, 0, what)
    size, _ = _varint(handle, position, what)
    end = offset + size
    if end + BLOCK_TRAILER_BYTES > len(index):
        raise CheckpointFormatError(f"{what}: block at {offset} (+{size}) runs past the file")
    if index[end] != 0:
        raise CheckpointFormatError(f"{what}: compressed block (type {index[end]}), not read")
    return index[offset:end]


def _block_entries(block: bytes, what: str) -> list[tuple[bytes, bytes]]:
    """A block's (key, value) entries, undoing the prefix compression of the keys."""
    if len(block) < 4:
        raise CheckpointFormatError(f"{what}: block of {len(block)} bytes")
    (n_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 * (n_restarts + 1)
    if end < 0:
        raise CheckpointFormatError(f"{what}: {n_restarts} restart points overflow the block")
    entries: list[tuple[bytes, bytes]] = []
    key, position = b"", 0
    while position < end:
        shared, position = _varint(block, position, what)
        unshared, position = _varint(block, position, what)
        value_size, position = _varint(block, position, what)
        if shared > len(key) or position + unshared + value_size > end:
            raise CheckpointFormatError(f"{what}: entry at {position} overflows its block")
        key = key[:shared] + block[position : position + unshared]
        position += unshared
        entries.append((key, block[position : position + value_size]))
        position += value_size
    return entries


def _tensor_entry(name: str, message: bytes) -> TensorEntry:
    """Decode a BundleEntryProto: 1 dtype, 2 shape, 3 shard_id, 4 offset, 5 size, 7 slices."""
    values: dict[int, int | bytes] = {}
    shape: list[int] = []
    for number, value in _proto_fields(message, name):
        if number == 2 and isinstance(value, bytes):  # TensorShapeProto: 2 dim {1 size}
            for dim_number, dim in _proto_fields(value, name):
                if dim_number == 2 and isinstance(dim, bytes):
                    sizes = [v for n, v in _proto_fields(dim, name) if n == 1]
                    shape.append(int(sizes[0]) if sizes else 0)
        elif number == 7:
            raise CheckpointFormatError(f"{name}: a sliced tensor, not read")
        else:
            values[number] = value
    fields = [values.get(number, 0) for number in (1, 3, 4, 5)]
    if not all(isinstance(field, int) for field in fields):
        raise CheckpointFormatError(f"{name}: malformed entry")
    dtype, shard, offset, size = (int(field) for field in fields)
    return TensorEntry(name, dtype, tuple(shape), shard, offset, size)


def read_index(index: bytes) -> dict[str, TensorEntry]:
    """The tensor entries of a `.index` file's bytes, by name (the header entry "" left out).

    Raises `CheckpointFormatError` for anything but an uncompressed V2 bundle's table.
    """
    if len(index) < FOOTER_BYTES:
        raise CheckpointFormatError(f"index of {len(index)} bytes: shorter than its footer")
    footer = index[-FOOTER_BYTES:]
    if struct.unpack("<Q", footer[-8:])[0] != TABLE_MAGIC:
        raise CheckpointFormatError("not a TensorFlow checkpoint index (bad table magic)")
    _, position = _varint(footer, 0, "footer")  # the metaindex handle: empty, unused
    _, position = _varint(footer, position, "footer")
    index_block = _block(index, footer[position:], "index block")
    entries: dict[str, TensorEntry] = {}
    for _, handle in _block_entries(index_block, "index block"):
        for key, value in _block_entries(_block(index, handle, "data block"), "data block"):
            if key:
                name = key.decode("utf-8", errors="replace")
                entries[name] = _tensor_entry(name, value)
    if not entries:
        raise CheckpointFormatError("the index names no tensor")
    return entries


def read_tensor(entry: TensorEntry, data: bytes) -> np.ndarray:
    """One tensor of `entry`'s shape and dtype from its shard's `data` bytes (a copy).

    Raises `CheckpointFormatError` when the entry's dtype, size or range is not what its
    shape declares.
    """
    dtype = DTYPES.get(entry.dtype)
    if dtype is None:
        raise CheckpointFormatError(f"{entry.name}: TensorFlow dtype {entry.dtype} not read")
    count = math.prod(entry.shape)
    if entry.size != count * dtype.itemsize:
        raise CheckpointFormatError(
            f"{entry.name}: {entry.size} bytes for shape {entry.shape} of {dtype} "
            f"({count * dtype.itemsize} expected)"
        )
    if entry.offset < 0 or entry.offset + entry.size > len(data):
        raise CheckpointFormatError(
            f"{entry.name}: bytes {entry.offset}..{entry.offset + entry.size} lie past the "
            f"data file's {len(data)}"
        )
    flat = np.frombuffer(data, dtype, count, entry.offset)
    return flat.reshape(entry.shape).astype(dtype.newbyteorder("="))


def read_checkpoint(index: bytes, data: bytes) -> dict[str, np.ndarray]:
    """Every tensor of a one-shard checkpoint, by name: `index` and `data` are the bytes of
    `PREFIX.index` and `PREFIX.data-00000-of-00001`."""
    entries = read_index(index)
    others = sorted(name for name, entry in entries.items() if entry.shard != 0)
    if others:
        raise CheckpointFormatError(f"tensors in other shards, not read: {others[:3]}")
    return {name: read_tensor(entry, data) for name, entry in entries.items()}
