"""Near dedup's band buckets, pure: a fingerprint's light ``Member``, its bucket entries, a bucket's open members and
the verified edges of an open group.

A bucket entry (``band_entries``) is 16 bytes of member id (``member_id``), the pHash as 8 bytes and the colour
signature's length: what ``open_group`` needs to find a bucket's *open* members, those with a pHash within reach of
another's (``open_members``), identical ones in a capped bucket. The open members alone make the bucket's verified
pairs, in the same order as among all its members, so ``group_edges`` on the open group gives the forest edges (and,
with ``loose``, the keypoint candidates of ``loose_pairs``) of the whole bucket. ``near_distance`` is the ledger
detail of a member and its survivor; ``colour_variant`` tells a removal group's clustering which two members must
both stay.
"""

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

import numpy as np

from schemas.config.near_dedup import NearDedupConfig
from schemas.records.dedup import Fingerprint
from transforms._dedup_members import Edge, Member, field_values, forest_edges, survivor_rank
from transforms._hash_match import (
    BLOCK,
    HashArrays,
    HashFeatures,
    Limits,
    band_values,
    close_pairs,
    colour_bytes,
    identical_pairs,
)
from transforms._near_windows import open_pairs, overlay_explained
from transforms.hashing import PHASH, colour_distance, colour_residuals, decode_colour, hash_int, popcount

PHASH_METHOD = "phash"


def near_member(fp: Fingerprint, config: NearDedupConfig) -> Iterator[Member]:
    """The light member of a fingerprint that has a pHash (none otherwise)."""
    if PHASH not in fp.hashes:
        return
    second = fp.hashes.get(config.second_hash) if config.second_hash else None
    yield Member(
        source=fp.source,
        key=fp.key,
        domain=fp.domain,
        scope=field_values(config.scope, fp.domain, fp.metadata),
        labels=field_values(config.keep_distinct, fp.domain, fp.metadata),
        rank=survivor_rank(
            config.survivor_policy,
            key=fp.key,
            source=fp.source,
            pixels=fp.pixels,
            file_size=fp.file_size,
            richness=fp.richness,
            scores=fp.scores,
            shipped=fp.shipped,
        ),
        shipped=fp.shipped,
        features=HashFeatures(
            hash_int(fp.hashes[PHASH]),
            hash_int(second) if second else None,
            colour_bytes(fp.hashes, config.max_colour_distance is not None),
        ),
    )


def band_entries(
    member: Member, layout: Sequence[tuple[int, int]]
) -> Iterator[tuple[tuple[str, int, int], tuple[bytes, bytes, int]]]:
    """``((scope, band, band value), (member id, pHash, colour signature length))`` for every band: what a bucket
    needs to find its open pairs (the pHash as 8 bytes: a 64-bit value does not fit Beam's signed integer coder)."""
    entry = (member_id(member.source), member.features.phash.to_bytes(8, "big"), colour_length(member.features.colour))
    for band, value in enumerate(band_values(member.features.phash, layout)):
        yield (member.scope, band, value), entry


def member_id(source: str) -> bytes:
    """A member's id in buckets: 16 bytes of a hash of its source (unique per item), shorter than most sources."""
    return hashlib.blake2b(source.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def colour_length(colour: bytes | str | None) -> int:
    """Bytes of a colour signature (raw or hex), 0 for none."""
    if not colour:
        return 0
    return len(colour) // 2 if isinstance(colour, str) else len(colour)


def colour_size(lengths: Sequence[int]) -> int | None:
    """The signature size a bucket compares on colour (``HashArrays.of``): the most common of its non-empty
    signatures, 3 when none; ``None`` when two sizes tie, as the first in source order wins then."""
    counts = Counter(length for length in lengths if length).most_common(2)
    if not counts:
        return 3
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        return None
    return counts[0][0]


def open_members(phashes: np.ndarray, capped: bool, reach: int) -> np.ndarray:
    """Which members of a bucket can be in a pair its verification accepts (or leaves to keypoints): a pHash
    within ``reach`` bits of another member's, or equal to one in a capped bucket."""
    if capped:
        _, inverse, counts = np.unique(phashes, return_inverse=True, return_counts=True)
        return counts[inverse] > 1
    found = np.zeros(len(phashes), dtype=bool)
    for start in range(0, len(phashes), BLOCK):
        close = popcount(phashes[start : start + BLOCK, None] ^ phashes[None, :]) <= reach
        close[np.arange(len(close)), np.arange(start, start + len(close))] = False
        found[start : start + BLOCK] |= close.any(1)
    return found


def members_by_group(_: bytes, joined: dict) -> Iterator[tuple[tuple, Member]]:
    """Each member joined to the open groups that want it, once per group however many buckets hold that group (its
    edges and candidates are the same for each, and clustering does not count them)."""
    for member in joined["member"]:
        for group in dict.fromkeys(joined["group"]):
            yield group, member


def bucket_pairs(members: Sequence[Member], limits: Limits, max_bucket: int) -> Iterator[tuple[int, int]]:
    """Verified pairs of one bucket, as indices into ``members``."""
    return verified_pairs(members, limits, len(members) > max_bucket)


def verified_pairs(
    members: Sequence[Member], limits: Limits, capped: bool, size: int | None = None
) -> Iterator[tuple[int, int]]:
    """Verified pairs of the open members of a bucket (in source order), as indices into ``members``: pairwise, or
    only identical pHashes in a ``capped`` bucket. ``size``: the colour signature size of the whole bucket."""
    return _verified(HashArrays.of([member.features for member in members], size), limits, capped)


def _verified(arrays: HashArrays, limits: Limits, capped: bool) -> Iterator[tuple[int, int]]:
    if capped:
        yield from identical_pairs(arrays, limits)
        return
    i, j, _, _ = close_pairs(arrays, arrays, limits, upper=True)
    yield from zip(i.tolist(), j.tolist(), strict=True)


def loose_pairs(
    members: Sequence[Member], limits: Limits, distance: int, size: int | None = None
) -> Iterator[tuple[tuple[str, str], int]]:
    """Source pairs within ``distance`` pHash bits that ``limits`` rejects and leaves open (``open_pairs``: not a
    colour variant of one geometry), the candidates for keypoint verification, with their distance.

    Colour variants are left out here, where their members are at hand, rather than after the per-image bound on
    candidates: a product shot in six colours, each with a few copies, would otherwise fill that bound with pairs the
    colour test closes anyway, and push out the logo copy of one of them."""
    arrays = HashArrays.of([member.features for member in members], size)
    return _loose(members, arrays, set(_verified(arrays, limits, False)), limits, distance)


def _loose(
    members: Sequence[Member], arrays: HashArrays, accepted: set[tuple[int, int]], limits: Limits, distance: int
) -> Iterator[tuple[tuple[str, str], int]]:
    i, j, d, _ = close_pairs(arrays, arrays, Limits(distance), upper=True)
    fresh = np.array([pair not in accepted for pair in zip(i.tolist(), j.tolist(), strict=True)], bool)
    i, j, d = i[fresh], j[fresh], d[fresh]
    worth = open_pairs(arrays, i, j, limits)
    for first, second, bits in zip(i[worth].tolist(), j[worth].tolist(), d[worth].tolist(), strict=True):
        yield tuple(sorted((members[first].source, members[second].source))), bits


def open_group(
    entries: Sequence[tuple[bytes, bytes, int]], capped: bool, reach: int
) -> tuple[tuple[bytes, bool, int | None], list[bytes]] | None:
    """The open members of a band bucket (entries of ``band_entries``), or ``None`` when no pair can be open.

    Returns:
        The group ``(digest of the member ids, capped, colour size)`` and the sorted member ids. The colour size is
        the whole bucket's (``colour_size``); when two sizes tie, every member is open, so that the group knows the
        source order that decides the tie.
    """
    phashes = np.frombuffer(b"".join(entry[1] for entry in entries), dtype=">u8").astype(np.uint64)
    wanted = open_members(phashes, capped, reach)
    if not wanted.any():
        return None
    size = colour_size([entry[2] for entry in entries])
    if size is None:
        wanted[:] = True
    ids = sorted(entry[0] for entry, open_ in zip(entries, wanted.tolist(), strict=True) if open_)
    return (hashlib.blake2b(b"".join(ids), digest_size=16).digest(), capped, size), ids


class GroupEdges(NamedTuple):
    """What verifying an open group gives: forest ``edges``, keypoint ``candidates`` (source pair, pHash distance)
    and ``related`` key pairs (``related_pairs``)."""

    edges: list[Edge]
    candidates: list[tuple[tuple[str, str], int]]
    related: list[tuple[str, str]]


def group_edges(
    members: Iterable[Member],
    limits: Limits,
    capped: bool,
    size: int | None,
    loose: int | None = None,
    related: int | None = None,
) -> GroupEdges:
    """The forest edges of an open group, its keypoint candidates (``loose`` set, not ``capped``; each with its
    pHash distance) and its related pairs (within ``related`` bits): the same as those of the whole bucket it came
    from, as members outside it are in no pair."""
    members = sorted(members, key=lambda member: member.source)
    arrays = HashArrays.of([member.features for member in members], size)
    pairs = list(_verified(arrays, limits, capped))
    edges = list(forest_edges(members, pairs, PHASH_METHOD))
    candidates = list(_loose(members, arrays, set(pairs), limits, loose)) if loose is not None and not capped else []
    found = [] if related is None else related_pairs(members, arrays, set(pairs), limits, capped, related)
    return GroupEdges(edges, candidates, found)


def related_pairs(
    members: Sequence[Member],
    arrays: HashArrays,
    accepted: set[tuple[int, int]],
    limits: Limits,
    capped: bool,
    distance: int,
) -> list[tuple[str, str]]:
    """Key pairs of one picture that the colour test keeps apart: pHashes within ``distance`` bits (and the second
    hash within its limit), colour signatures apart (a product in another colour; a saturated colour brightened past
    the sRGB ceiling, whose hue moves). Both stay, and the split puts them in one group: a model tested on the purple
    jacket it trained on in blue has seen that picture. None in a capped bucket (there only identical pHashes are
    compared, and a flat frame shares its pHash with every flat frame) and none without a colour test."""
    if capped or limits.colour is None:
        return []
    i, j, _, _ = close_pairs(arrays, arrays, limits._replace(distance=distance, colour=None), upper=True)
    return [
        tuple(sorted((members[first].key, members[second].key)))
        for first, second in zip(i.tolist(), j.tolist(), strict=True)
        if (first, second) not in accepted and members[first].key != members[second].key
    ]


def near_distance(member: Member, survivor: Member) -> tuple[float, dict]:
    """pHash bits between a member and its survivor, with the colour distance for the ledger detail."""
    a, b = member.features, survivor.features
    bits = int(a.phash ^ b.phash).bit_count()
    colour = None
    if a.colour and b.colour:
        colour = round(float(colour_distance(decode_colour(a.colour), decode_colour(b.colour))), 2)
    return float(bits), {"distance": bits, "colour_distance": colour}


def colour_variant(
    member: Member, survivor: Member, methods: frozenset[str], max_distance: int, max_colour_distance: float
) -> bool:
    """Whether ``member`` is a colour variant of ``survivor``: their pHashes match, their colour signatures differ
    beyond overlay patches (a logo or price tag at the frame's edge: ``transforms._near_windows.overlay_explained``,
    which ``open_pairs`` applies to a candidate pair), and ``member`` matched something on its
    whole-image hashes (``methods``: those of its edges). A member matched on keypoints alone (a crop, a logo copy)
    had its overlap's colour verified; its whole-image signature differs from its original's by construction.

    Edges join a removal group one verified pair at a time, so a chain of copies can join two colourways of one
    product (a blue jacket, a contrast-reduced copy of it, a copy of the purple jacket, the purple jacket): each
    step passes the colour test, the ends do not. The ends then both stay (``transforms._duplicates``).
    """
    a, b = member.features, survivor.features
    if PHASH_METHOD not in methods or not (a.colour and b.colour):
        return False
    if int(a.phash ^ b.phash).bit_count() > max_distance:
        return False
    residuals = colour_residuals(decode_colour(a.colour), decode_colour(b.colour))[None]
    return bool(residuals.max() > max_colour_distance and not overlay_explained(residuals, max_colour_distance)[0])
