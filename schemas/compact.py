"""Compact, deterministic pickling for the records that cross shuffles.

Beam encodes an element of a PCollection without a type hint (most of ours) with its ``FastPrimitivesCoder``, which
pickles anything that is not a primitive. A dataclass pickles with its field names and class path, and a sample's
hex hashes as text: most of a record's bytes. A record class that defines ``__reduce__`` with ``packed`` pickles as
a reference to its restore function and one bytes value instead, on every runner (nothing to register: the worker
imports the restore function by name, as it imports the class today):

* fields by position, in declaration order (both ends run the same code);
* lowercase hex text (content keys, SHA-256s, perceptual hashes) as the bytes it spells, half the size;
* no pickle memo, so equal values give equal bytes whatever objects they share (deterministic, as a Beam key coder
  must be);
* zlib at level 1 over the whole when it is shorter (about 40% off a sample record).

Decoding gives back an equal record: the same field values with the same types and the same dict order.
"""

import io
import pickle
import zlib
from collections.abc import Mapping
from typing import Any

PROTOCOL = 5
# Records longer than this are compressed when that is shorter. Tests that look for bytes in what crossed a
# shuffle set it to infinity, so a record's fields stand in its bytes as they are.
COMPRESS_ABOVE: float = 128


def packed(values: tuple) -> bytes:
    """``values`` pickled without the memo (fast mode), so the bytes depend on the values only; zlib-compressed
    (level 1) when that is shorter: captions repeated across a sample's annotations, flat colour signatures."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=PROTOCOL)
    # Fast mode drops the memo: two equal strings pickle the same whether or not they are one object. Records are
    # trees of primitives, so the recursion fast mode cannot handle never occurs.
    pickler.fast = True
    pickler.dump(values)
    data = buffer.getvalue()
    if len(data) > COMPRESS_ABOVE:
        compressed = zlib.compress(data, 1)
        if len(compressed) < len(data):
            return compressed
    return data


def unpacked(blob: bytes) -> tuple:
    """The values of ``packed``: a pickle begins with its protocol opcode, a zlib stream never does."""
    return pickle.loads(blob if blob[:1] == pickle.PROTO else zlib.decompress(blob))


def hex_bytes(value: Any) -> Any:
    """Lowercase hex text as the bytes it spells; anything else (other text, ``None``) unchanged."""
    if isinstance(value, str) and len(value) % 2 == 0:
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            return value
        if raw.hex() == value:
            return raw
    return value


def hex_text(value: Any) -> Any:
    """The inverse of ``hex_bytes``: bytes back to lowercase hex text."""
    return value.hex() if isinstance(value, bytes) else value


def hex_map_bytes(mapping: Mapping[str, str]) -> dict:
    """A mapping of hex texts (``Sample.hashes``) with its values as bytes, in the same order."""
    return {name: hex_bytes(value) for name, value in mapping.items()}


def hex_map_text(mapping: Mapping[str, Any]) -> dict:
    return {name: hex_text(value) for name, value in mapping.items()}
