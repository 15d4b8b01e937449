"""Whole-image hash comparison: banding finds every pair within k, and close pairs apply every limit."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms._hash_match import (
    HashArrays,
    HashFeatures,
    Limits,
    band_layout,
    band_values,
    close_pairs,
    colour_bytes,
    identical_pairs,
)
from transforms.hashing import colour_residuals


def _flip(value: int, bits: list[int]) -> int:
    for bit in bits:
        value ^= 1 << bit
    return value


@settings(max_examples=300, deadline=None)
@given(
    value=st.integers(0, 2**64 - 1),
    k=st.integers(0, 16),
    data=st.data(),
)
def test_two_hashes_within_k_bits_always_share_a_band(value, k, data):
    bits = data.draw(st.lists(st.integers(0, 63), max_size=k, unique=True))
    layout = band_layout(k)
    assert sum(width for _, width in layout) == 64
    shared = [a == b for a, b in zip(band_values(value, layout), band_values(_flip(value, bits), layout), strict=True)]
    assert any(shared)


def test_bands_cover_the_64_bits_evenly_and_cut_a_value_into_its_bits():
    assert band_layout(3) == [(0, 16), (16, 16), (32, 16), (48, 16)]
    assert [width for _, width in band_layout(4)] == [13, 13, 13, 13, 12]
    assert band_values(0x0123_4567_89AB_CDEF, band_layout(3)) == [0xCDEF, 0x89AB, 0x4567, 0x0123]


def test_close_pairs_keep_only_pairs_within_every_limit():
    grey, red = bytes([128] * 27), bytes([200, 30, 30] * 9)
    features = [
        HashFeatures(0b0000, None, grey),
        HashFeatures(0b0011, None, grey),  # 2 bits from the first, same colour
        HashFeatures(0b0001, None, red),  # 1 bit from the first, another colour
        HashFeatures(0b1111_0000, None, grey),  # 4 bits from the first
    ]
    arrays = HashArrays.of(features)
    i, j, d, colour = close_pairs(arrays, arrays, Limits(2), upper=True)
    assert sorted(zip(i.tolist(), j.tolist(), d.tolist(), strict=True)) == [(0, 1, 2), (0, 2, 1), (1, 2, 1)]
    assert np.isnan(colour).all()
    i, j, _, colour = close_pairs(arrays, arrays, Limits(2, colour=8.0), upper=True)
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == [(0, 1)] and colour[0] <= 8.0


def test_the_second_hash_rejects_only_pairs_that_both_have_one():
    features = [HashFeatures(0, 0), HashFeatures(1, 0xFF), HashFeatures(1, None)]
    arrays = HashArrays.of(features)
    i, j, _, _ = close_pairs(arrays, arrays, Limits(1, second=4), upper=True)
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == [(0, 2), (1, 2)]


def test_signatures_of_another_size_are_not_compared_on_colour():
    features = [
        HashFeatures(5, None, bytes(27)),
        HashFeatures(5, None, bytes(27).hex()),
        HashFeatures(5, None, bytes(48)),
    ]
    arrays = HashArrays.of(features)
    assert arrays.has_colour.tolist() == [True, True, False]
    _, _, _, colour = close_pairs(arrays, arrays, Limits(0, colour=1.0), upper=True)
    assert np.isnan(colour).tolist() == [False, True, True]


def test_a_capped_bucket_pairs_each_member_with_the_first_of_its_hash():
    features = [HashFeatures(7), HashFeatures(9), HashFeatures(7), HashFeatures(7), HashFeatures(9)]
    assert list(identical_pairs(HashArrays.of(features), Limits(8))) == [(0, 2), (0, 3), (1, 4)]


def test_colour_bytes_only_when_present_and_wanted():
    assert colour_bytes({"colour": "0a0b"}) == b"\x0a\x0b"
    assert colour_bytes({"colour": "0a0b"}, wanted=False) is None
    assert colour_bytes({"phash": "00"}) is None


def _one_way(a: np.ndarray, b: np.ndarray, fit: np.ndarray) -> np.ndarray:
    """The documented model, one pair and one direction, in float64: b's lightness as a gain and offset of a's, b's
    chroma as a gain of a's (gains held within [0.8, 1.25]), least squares over the ``fit`` cells; the mean lightness
    shift beyond 15 counted in every cell."""
    la, lb, ca, cb = a[fit, 0], b[fit, 0], a[fit, 1:], b[fit, 1:]
    spread = ((la - la.mean()) ** 2).mean()
    gain = np.clip(((la - la.mean()) * (lb - lb.mean())).mean() / spread, 0.8, 1.25) if spread > 1e-6 else 1.0
    energy = (ca * ca).sum()
    chroma_gain = np.clip((ca * cb).sum() / energy, 0.8, 1.25) if energy > 1e-6 else 1.0
    lightness = b[:, 0] - (gain * (a[:, 0] - la.mean()) + lb.mean())
    chroma = b[:, 1:] - chroma_gain * a[:, 1:]
    shift = lb.mean() - la.mean()
    beyond = shift - np.clip(shift, -15.0, 15.0)
    return np.sqrt((0.5 * lightness) ** 2 + (chroma**2).sum(-1) + beyond**2)


def _reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    everything = np.ones(len(a), bool)
    first = np.maximum(_one_way(a, b, everything), _one_way(b, a, everything))
    fit = first <= np.quantile(first, 0.88)
    return np.maximum(_one_way(a, b, fit), _one_way(b, a, fit))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), pairs=st.integers(1, 40))
def test_colour_residuals_are_two_fits_of_brightness_and_contrast_refitted_without_the_worst_cells(seed, pairs):
    rng = np.random.default_rng(seed)
    a = np.concatenate([rng.uniform(0, 100, (pairs, 144, 1)), rng.uniform(-60, 60, (pairs, 144, 2))], -1)
    gain, offset = rng.uniform(0.7, 1.3, (pairs, 1, 1)), rng.uniform(-10, 10, (pairs, 1, 1))
    b = np.concatenate([a[..., :1] * gain + offset, a[..., 1:] * rng.uniform(0.7, 1.3, (pairs, 1, 1))], -1)
    b += rng.normal(0, 2, b.shape)
    b[:, : rng.integers(0, 30)] = rng.uniform(-60, 100, 3)  # an overlay patch
    a, b = a.astype(np.float32), b.astype(np.float32)

    found = colour_residuals(a, b)

    expected = np.stack([_reference(x.astype(np.float64), y.astype(np.float64)) for x, y in zip(a, b, strict=True)])
    assert found.shape == (pairs, 144)
    np.testing.assert_allclose(found, expected, rtol=1e-3, atol=1e-2)
    np.testing.assert_array_equal(colour_residuals(a[0], b[0]), found[0])
