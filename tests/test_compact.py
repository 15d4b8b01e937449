"""Compact pickling of the records that cross shuffles (``schemas.compact``): Beam's coder gives back equal records
with fields of the same types, equal records encode to equal bytes whatever objects they share, and a sample costs
about a third of its field-named pickle."""

import dataclasses
import pickle
import random
import zlib

import pytest
from apache_beam.coders import coders

from schemas import compact
from schemas.audit import AuditItem
from schemas.records.dedup import fingerprint
from schemas.records.inputs import InputItem
from schemas.records.ledger import LedgerRow
from schemas.records.samples import ImageInfo, Sample
from transforms._dedup_members import Member
from transforms._hash_match import HashFeatures

CODER = coders.FastPrimitivesCoder()
HEX = "0123456789abcdef" * 4


def _sample(**changes) -> Sample:
    source = "/data/in/img000001.jpg"
    sample = Sample(
        key=HEX[:32],
        source=source,
        path=source,
        domain="factory",
        metadata={"title": "gear", "line": 3, "tags": ["a", "b"], "extra": None},
        image=b"",
        image_ext="jpg",
        sha256=HEX,
        pixel_sha256=HEX[::-1],
        original=ImageInfo(1280, 200, "JPEG", "RGB", 94681),
        normalised=ImageInfo(1024, 160, "JPEG", "RGB", 80540),
        text="gear on a bench",
        text_source="metadata.title",
        notes=("first frame of 12",),
        hashes={"phash": "ae2cd9d293396c8c", "colour": "f58080" * 144, "dhash": "not hex"},
        scores={"clip_smoke_tiny_vit": 0.14625, "quality_contrast_rms": 0.141846},
        annotations={"caption": {"chosen": {"score": 0.1, "text": "gear on a bench"}}, "faces": {"boxes": [[1, 2]]}},
        embedding=bytes(range(64)),
        split="train",
        image_ref=f"/out/_staging/images/{HEX}.jpg",
        document_id="SKU-A",
    )
    return dataclasses.replace(sample, **changes)


def _field_types(record) -> dict:
    return {
        field.name: (type(value), {name: type(v) for name, v in value.items()} if isinstance(value, dict) else None)
        for field in dataclasses.fields(record)
        for value in [getattr(record, field.name)]
    }


RECORDS = [
    InputItem("/data/in/a.jpg", "/data/in/a.jpg", "d", sidecar="/data/in/a", roots=("/data/in", "/elsewhere")),
    InputItem("m.csv#3", "", "d", {"title": "x"}, b"\x00inline", None, (), (512, 100)),
    InputItem("s", "/data/p.jpg", "d", sidecar="/data/p", roots=("",)),
    _sample(),
    _sample(path="/elsewhere/img.jpg", image=b"\x00\x01inline", embedding=None, image_ref="", document_id=""),
    _sample(key="ABC", sha256="abc", pixel_sha256="", hashes={}, image_ref="/out/images/not-a-digest.jpg"),
    fingerprint(_sample()),
    dataclasses.replace(fingerprint(_sample()), shipped=True, scores={}),
    LedgerRow("/data/in/a.jpg", HEX[:32], "rejected", "near_dedup", "near_duplicate", '{"distance": 3}', "factory"),
    LedgerRow("/data/in/b.jpg", None, "failed", "ingest", "exception", split=""),
    Member("/data/in/a.jpg", HEX[:32], "d", "", "", (True, -100, HEX[:32], "/data/in/a.jpg"), False, HashFeatures(5)),
    Member("b", "k", "d", '["x"]', '["y"]', (False, -1.5), True, HashFeatures(2**64 - 1, 7, b"\x01\x02\x03")),
    AuditItem("/data/in/a.jpg", "kept", {"domain": ("factory",)}, {"gendered:feminine": ("she",)}, 2, "clip"),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda record: type(record).__name__)
def test_beam_coder_gives_back_an_equal_record_with_the_same_field_types(record):
    encoded = CODER.encode(record)
    decoded = CODER.decode(encoded)

    assert decoded == record
    assert _field_types(decoded) == _field_types(record)
    assert list(getattr(decoded, "hashes", {})) == list(getattr(record, "hashes", {}))
    assert CODER.encode(decoded) == encoded
    assert pickle.loads(pickle.dumps(record)) == record


def test_equal_records_encode_to_equal_bytes_whatever_objects_they_share():
    shared = "/data/in/img000001.jpg"
    one = _sample(source=shared, path=shared)
    other = _sample(source="".join(shared), path=shared[:5] + shared[5:], text="gear on " + "a bench")
    assert one == other and one.source is one.path and other.source is not other.path

    assert CODER.encode(one) == CODER.encode(other)
    assert compact.packed((shared, shared)) == compact.packed((shared, shared[:3] + shared[3:]))


def test_uncompressed_records_decode_alike(monkeypatch):
    record = _sample()
    compressed = CODER.encode(record)
    monkeypatch.setattr(compact, "COMPRESS_ABOVE", float("inf"))
    plain = CODER.encode(record)

    assert len(plain) > len(compressed)
    assert CODER.decode(plain) == CODER.decode(compressed) == record


def test_a_sample_costs_a_third_of_its_field_named_pickle():
    sample = _sample()
    # What Beam's coder wrote for a dataclass before: the class and its field-named state, hex text included.
    default = pickle.dumps((Sample, vars(sample)), pickle.HIGHEST_PROTOCOL)

    assert len(CODER.encode(sample)) < len(default) / 3


def test_hex_text_only_becomes_bytes_when_it_comes_back_the_same():
    assert compact.hex_bytes("0a1b") == b"\x0a\x1b"
    for text in ("0A1B", "abc", "0a 1b", "zz", None):
        assert compact.hex_bytes(text) == text
    assert compact.hex_text(compact.hex_bytes("")) == ""


def test_an_input_items_image_bytes_never_pass_through_zlib(monkeypatch):
    # They are JPEG, PNG or WebP, compressed already; zlib spent 144 ms taking 1% off a 5.7 MB camera JPEG, and Beam
    # encodes sampled elements to estimate their size.
    image = bytes(random.Random(3).getrandbits(8) for _ in range(50_000))
    item = InputItem("photos.tar.gz#a.jpg", "", "d", {"title": "a long title " * 20}, image)
    compressed, compress = [], zlib.compress
    monkeypatch.setattr(zlib, "compress", lambda data, level: compressed.append(data) or compress(data, level))

    encoded = CODER.encode(item)

    assert compressed and all(image not in data for data in compressed)  # the metadata still is compressed
    assert image in encoded and CODER.decode(encoded) == item
