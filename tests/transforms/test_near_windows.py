"""Crop and overlay candidates: window pairs bounded per entry, the evidence of a pair, and the colour tests that
leave a pair open for keypoints."""

import random
from collections import defaultdict

import numpy as np

from schemas.config.near_dedup import NearDedupConfig
from schemas.records.dedup import Fingerprint
from tests.transforms import scenes
from transforms._dedup_members import Member
from transforms._hash_match import HASH_BITS, HashArrays, HashFeatures, Limits
from transforms._keypoints import overlay_patch
from transforms._near_windows import (
    LOOSE_WINDOWS,
    Evidence,
    SharedWindows,
    _near_edge,
    colour_contained,
    merge_evidence,
    open_pairs,
    window_entries,
    window_pairs,
    worth_verifying,
    worth_verifying_with,
)


def test_a_crop_finds_its_colours_in_the_original_but_a_recoloured_crop_does_not():
    original = scenes.lab_grid((50.0, 60.0, 40.0)).reshape(12, 12, 3)
    # A crop zooms into the product's corner: its cells are product or background colours of the original.
    crop = np.concatenate([original[3:9, 4:8], original[3:9, 8:12]], axis=1)
    crop = np.repeat(np.repeat(crop, 2, axis=0), 3, axis=1)[:12, :12]
    assert colour_contained(crop.reshape(-1, 3), original.reshape(-1, 3), 10.0)
    recoloured = crop.copy()
    recoloured[recoloured[..., 1] > 30] = (50.0, 10.0, -50.0)
    assert not colour_contained(recoloured.reshape(-1, 3), original.reshape(-1, 3), 10.0)


def test_a_window_many_images_share_pairs_each_entry_with_its_nearest_few_whatever_the_order():
    rng = random.Random(3)
    window = 0x9E3779B97F4A7C15
    entries = [
        (
            f"many/{index:03d}",
            f"{window ^ (1 << rng.randrange(64)) if index % 3 else window:016x}",
            f"{rng.getrandbits(64):016x}",
        )
        for index in range(60)
    ]
    pairs = list(window_pairs(entries, 8, 8, neighbours=4))
    assert pairs == list(window_pairs(list(reversed(entries)), 8, 8, neighbours=4))
    assert len(pairs) <= 60 * 4 < len(list(window_pairs(entries, 8, 8)))
    assert all(a < b for (a, b), _ in pairs)
    degree = defaultdict(int)
    for a, b in (pair for pair, _ in pairs):
        degree[a] += 1
        degree[b] += 1
    assert set(degree) == {source for source, _, _ in entries}


def test_window_entries_cut_each_distinct_window_into_four_bands():
    hashes = {"phash": "00000000000000ff", "subwindow": "0123456789abcdef" * 2 + "fedcba9876543210"}
    fp = Fingerprint("k1", "/in/a.jpg", "", "", 100, 10, 1, "d", {}, hashes)
    entries = list(window_entries(fp, NearDedupConfig()))
    assert len(entries) == 8
    assert entries[0] == (("", 0, 0xCDEF), ("/in/a.jpg", "0123456789abcdef", "00000000000000ff"))
    assert list(window_entries(fp.__class__(**{**vars(fp), "hashes": {"phash": "00"}}), NearDedupConfig())) == []


def test_evidence_of_both_sources_merges_and_a_loose_phash_counts_as_windows():
    merged = merge_evidence([Evidence(windows=3, distance=20), Evidence(loose=True, distance=11)])
    assert merged == Evidence(3, True, 11) and merged.score() == 3 + LOOSE_WINDOWS
    assert merge_evidence([]) == Evidence(0, False, HASH_BITS)


def test_shared_windows_counts_distinct_windows_across_accumulators():
    combine = SharedWindows()
    first = combine.add_input(combine.add_input(combine.create_accumulator(), ("w1", 30)), ("w1", 25))
    second = combine.add_input(combine.create_accumulator(), ("w2", 40))
    assert combine.extract_output(combine.merge_accumulators([first, second])) == Evidence(windows=2, distance=25)


def _member(phash: int, colour: bytes | None) -> Member:
    return Member(f"s{phash}", f"k{phash}", "d", "", "", (0,), features=HashFeatures(phash, None, colour))


def _signature(lab: np.ndarray) -> bytes:
    """A colour signature's bytes for a CIELAB grid, quantised as ``transforms.hashing.colour_signature`` does."""
    quantised = np.stack([lab[..., 0] * 2.55, lab[..., 1] + 128, lab[..., 2] + 128], axis=-1)
    return np.clip(np.rint(quantised), 0, 255).astype(np.uint8).tobytes()


def test_only_pairs_the_hashes_leave_open_are_worth_verifying():
    limits, far = Limits(8, colour=8.0), (1 << 20) - 1
    red = scenes.lab_grid((50.0, 60.0, 40.0))
    blue = scenes.lab_grid((50.0, 10.0, -50.0))
    logo = red.reshape(12, 12, 3).copy()
    logo[0:3, 0:3] = (55.0, -70.0, 60.0)
    red, blue, logo = _signature(red), _signature(blue), _signature(logo.reshape(-1, 3))
    # Different geometry, no colour to test: keypoints decide.
    assert worth_verifying(_member(0, None), _member(far, None), limits)
    # Same geometry and colour: the whole-image test accepts it already.
    assert not worth_verifying(_member(0, red), _member(1, red), limits)
    # Same geometry, the product in another colour: a colour variant, closed.
    assert not worth_verifying(_member(0, red), _member(1, blue), limits)
    # Same geometry, a logo in a corner: an overlay, which keypoints decide.
    assert worth_verifying(_member(0, red), _member(1, logo), limits)
    # Different geometry: open only when one signature's colours are found in the other.
    assert worth_verifying(_member(0, red), _member(far, logo), limits)
    assert not worth_verifying(_member(0, red), _member(far, blue), limits)


def test_pairs_tested_together_get_the_answers_each_gets_alone():
    """The colour tests run vectorised over the pairs of a bucket (a product in many colours holds thousands): the
    answers must not depend on which pairs share a call, and cover every branch (accepted, colour variant, logo in a
    corner, a band along an edge, other geometry with and without its colours, no colour at all)."""
    rng = np.random.default_rng(7)
    grids = [scenes.lab_grid((50.0, 60.0, 40.0)), scenes.lab_grid((50.0, 10.0, -50.0))]
    logo = grids[0].reshape(12, 12, 3).copy()
    logo[0:3, 9:12] = (55.0, -70.0, 60.0)
    grids.append(logo.reshape(-1, 3))
    # A band along the top edge: near the edge, but too long for an overlay patch.
    band = grids[0].reshape(12, 12, 3).copy()
    band[0:2] = (40.0, 20.0, -60.0)
    grids.append(band.reshape(-1, 3))
    members = []
    for index in range(48):
        phash = 0 if index % 3 else (1 << 20) - 1
        phash ^= 1 << int(rng.integers(0, 64)) if index % 5 == 0 else 0
        lab = grids[index % 4] + rng.normal(0.0, 0.8, grids[0].shape).astype(np.float32)
        members.append(_member(phash, None if index % 11 == 0 else _signature(lab)))
    limits = Limits(8, colour=8.0)
    arrays = HashArrays.of([member.features for member in members])
    i, j = np.triu_indices(len(members), 1)
    together = open_pairs(arrays, i, j, limits)
    alone = [bool(open_pairs(arrays, np.array([a]), np.array([b]), limits)[0]) for a, b in zip(i, j, strict=True)]
    assert together.tolist() == alone
    assert 0 < together.sum() < len(together)
    assert worth_verifying_with(members[1:], members[0], limits).tolist() == [
        worth_verifying(member, members[0], limits) for member in members[1:]
    ]


def test_only_residuals_near_the_frame_edge_are_offered_to_the_overlay_test():
    """``_near_edge`` is a necessary condition of ``overlay_patch``, checked on many pairs at once: a grid it turns
    away is never an overlay patch, on random grids of every kind (one blob, several, inner, on the edge)."""
    rng = np.random.default_rng(11)
    limit, offered, overlays = 8.0, 0, 0
    for _ in range(3000):
        grid = rng.uniform(0.0, 5.0, (12, 12))
        for _ in range(int(rng.integers(1, 4))):
            row, col = (int(value) for value in rng.integers(0, 12, 2))
            height, width = (int(value) for value in rng.integers(1, 6, 2))
            grid[row : row + height, col : col + width] = rng.uniform(9.0, 30.0)
        near = bool(_near_edge(grid.reshape(1, -1), limit)[0])
        patch = overlay_patch(grid, limit)
        assert near or not patch
        offered += near
        overlays += patch
    assert 0 < overlays < offered < 3000
