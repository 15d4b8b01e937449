"""Each image keeps its best candidates: the pairs grow with the images, whatever the order."""

import itertools
import random

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms._best_per_image import KeepBestPerImage


def _best_per_image_reference(pairs: dict, count: int) -> set:
    chosen = set()
    for image in {source for pair in pairs for source in pair}:
        mine = sorted(
            (rank, other) for pair, rank in pairs.items() for other in pair if image in pair and other != image
        )
        chosen |= {tuple(sorted((image, other))) for _, other in mine[:count]}
    return chosen


@pytest.mark.parametrize("order", [1, -1])
def test_each_image_keeps_its_best_candidates_and_the_pairs_stay_linear_in_the_images(order):
    images = [f"img/{index:02d}" for index in range(30)]
    # Every image a candidate of every other: the shape that grew with the square of the image count.
    pairs = {(a, b): random.Random(a + b).randrange(5) for a, b in itertools.combinations(images, 2)}
    expected = _best_per_image_reference(pairs, 3)
    assert len(expected) <= 3 * len(images)
    with BeamTestPipeline() as pipeline:
        kept = (
            pipeline
            | beam.Create(sorted(pairs.items())[::order])
            | KeepBestPerImage(3, lambda rank: (rank,))
            | beam.Keys()
        )
        assert_that(kept, equal_to(sorted(expected)), label="best pairs of each image")


def test_a_pair_both_images_choose_comes_out_once_and_ties_go_to_the_other_name():
    pairs = [(("a", "b"), 0), (("a", "c"), 0), (("b", "c"), 1)]
    with BeamTestPipeline() as pipeline:
        kept = pipeline | beam.Create(pairs) | KeepBestPerImage(1, lambda rank: (rank,))
        # a picks b (tie with c, b sorts first), b picks a, c picks a (rank 0 before 1): (a, b) once, (a, c).
        assert_that(kept, equal_to([(("a", "b"), 0), (("a", "c"), 0)]), label="chosen pairs")
