"""Crop and overlay candidates: window pairs bounded per entry, the evidence of a pair, and the colour tests that
leave a pair open for keypoints."""

import random
from collections import defaultdict

import numpy as np

from schemas.config.near_dedup import NearDedupConfig
from schemas.records.dedup import Fingerprint
from tests.transforms import scenes
from transforms._dedup_members import Member
from transforms._hash_match import HASH_BITS, HashFeatures, Limits
from transforms._near_windows import (
    LOOSE_WINDOWS,
    Evidence,
    SharedWindows,
    colour_contained,
    merge_evidence,
    window_entries,
    window_pairs,
    worth_verifying,
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
