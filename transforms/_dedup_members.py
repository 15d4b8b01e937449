"""The members and edges of a dedup stage: what buckets hold, how survivors rank, the forest that leaves a bucket.

A dedup stage turns each sample into a light ``Member`` (no image bytes; of its metadata only its scope and labels,
JSON text from ``field_values``), ranked by ``survivor_rank``; it puts members into candidate buckets (band values,
LSH signatures), verifies pairs inside each bucket, and emits ``Edge`` records. Only a spanning forest of each
bucket's verified pairs leaves the bucket (``forest_edges``), so a bucket of ``s`` near-identical images yields at
most ``2(s - 1)`` edges, never ``s^2 / 2``; ``transforms._duplicates`` then clusters the edges.

Pure functions (no Beam).
"""

import dataclasses
import functools
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from schemas.compact import hex_bytes, hex_text, packed, unpacked


@dataclasses.dataclass(frozen=True)
class Member:
    """The light view of one sample that a dedup stage buckets, compares and ranks.

    Attributes:
        source: Node id (unique per input item).
        key: Sample key.
        domain: Data domain, for ledger rows.
        scope: JSON list of scope values (``""`` when global); buckets never mix scopes.
        labels: JSON list of ``keep_distinct`` values; members with different labels are never removed for each other.
        rank: Sort key, best survivor first.
        shipped: Written by an earlier run: always preferred, never rejected again.
        features: What the stage compares (hashes, an embedding).
    """

    source: str
    key: str
    domain: str
    scope: str
    labels: str
    rank: tuple
    shipped: bool = False
    features: Any = None

    def __reduce__(self) -> tuple:
        # Compact pickling (schemas.compact); the rank ends with the key and source, as survivor_rank builds it. A
        # member is immutable, so its bytes are kept once made (or read): a member crosses several shuffles and
        # joins on its way to an edge, and is packed and compressed only once.
        blob = self.__dict__.get(_PACKED)
        if blob is None:
            tail = self.rank[-2:] == (self.key, self.source)
            rank = self.rank[:-2] if tail else self.rank
            values = (self.source, hex_bytes(self.key), self.domain, self.scope, self.labels, rank, tail, self.shipped)
            blob = packed((*values, self.features))
            object.__setattr__(self, _PACKED, blob)
        return _member, (blob,)


_PACKED = "_packed"


@functools.lru_cache(maxsize=4096)
def _member(blob: bytes) -> Member:
    # One member is read back from many elements (each bucket, candidate and edge it is in); equal bytes give one
    # immutable member, unpacked once while it is in use.
    source, key, domain, scope, labels, rank, tail, shipped, features = unpacked(blob)
    key = hex_text(key)
    member = Member(source, key, domain, scope, labels, (*rank, key, source) if tail else rank, shipped, features)
    object.__setattr__(member, _PACKED, blob)
    return member


class Edge(NamedTuple):
    """A verified pair; ``method`` names the test that matched it and ``evidence`` its ``(name, value)`` figures."""

    a: Member
    b: Member
    same_label: bool
    method: str = ""
    evidence: tuple[tuple[str, Any], ...] = ()


def field_values(fields: Sequence[str], domain: str, metadata: Mapping[str, Any]) -> str:
    """JSON text of the named fields (``domain`` is the sample's domain, others are metadata); ``""`` for none."""
    if not fields:
        return ""
    values = [domain if name == "domain" else metadata.get(name) for name in fields]
    return json.dumps(values, sort_keys=True, ensure_ascii=False, default=str)


def survivor_rank(
    policy: Sequence[str],
    *,
    key: str,
    source: str,
    pixels: int,
    file_size: int,
    richness: int,
    scores: Mapping[str, float],
    shipped: bool = False,
) -> tuple:
    """Sort key putting the preferred survivor first: shipped, then each policy criterion (larger wins), then key.

    ``clip_score`` is the largest score whose name starts with ``clip`` (score fields name their model); a sample
    without one ranks below any sample with one.
    """
    clip = max((float(value) for name, value in scores.items() if name.startswith("clip")), default=-math.inf)
    values = {"resolution": pixels, "file_size": file_size, "richness": richness, "clip_score": clip}
    return (not shipped, *(-values[name] for name in policy), key, source)


class UnionFind:
    """Union-find over ``0 .. size - 1``; the smaller root wins, so roots do not depend on the order of unions."""

    def __init__(self, size: int):
        self._parent = list(range(size))

    def find(self, node: int) -> int:
        while self._parent[node] != node:
            self._parent[node] = self._parent[self._parent[node]]
            node = self._parent[node]
        return node

    def union(self, a: int, b: int) -> bool:
        root_a, root_b = self.find(a), self.find(b)
        if root_a == root_b:
            return False
        self._parent[max(root_a, root_b)] = min(root_a, root_b)
        return True


def forest_edges(members: Sequence[Member], pairs: Iterable[tuple[int, int]], method: str = "") -> Iterator[Edge]:
    """Reduce verified pairs (indices into ``members``) to the edges that keep both kinds of component intact."""
    every, same = UnionFind(len(members)), UnionFind(len(members))
    for i, j in pairs:
        a, b = members[i], members[j]
        same_label = a.labels == b.labels
        joins_every = every.union(i, j)
        joins_same = same_label and same.union(i, j)
        if joins_every or joins_same:
            yield Edge(a, b, same_label, method)
