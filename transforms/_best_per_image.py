"""``KeepBestPerImage``: bound the pairs of a many-to-many candidate set by what each image ranks best.

Input and output: ``((source, source), value)`` pairs; a ``rank(value)`` sort key chooses. Used by
``transforms._verify_candidates.VerifyCandidates``, so that the candidates of near dedup's crop path grow with the
number of images, not with the pairs that share structure.
"""

from collections.abc import Iterable, Iterator

import apache_beam as beam


class KeepBestPerImage(beam.PTransform):
    """Keep the pairs that one of their two images ranks among its best ``count``.

    Input and output: ``((source, source), value)``; ``rank(value)`` is a sort key, smallest best; ties go to the
    other source's name, so the choice does not depend on order or workers. At most ``count`` pairs per image come
    out (the image's own choice) plus those its partners chose: ``count`` times the images at most in all, kept
    in a per-image combiner (Beam's ``Top``), never a whole group.
    """

    def __init__(self, count: int, rank):
        super().__init__()
        self._count, self._rank = count, rank

    def expand(self, pairs: beam.PCollection) -> beam.PCollection:
        rank = self._rank
        return (
            pairs
            | "BothImages" >> beam.FlatMapTuple(lambda pair, value: _both_ends(pair, value, rank))
            | "BestPerImage" >> beam.combiners.Top.SmallestPerKey(self._count)
            | "Chosen" >> beam.FlatMapTuple(lambda _, chosen: [((a, b), value) for _, (a, b), value in chosen])
            | "OncePerPair" >> beam.CombinePerKey(_either)
        )


def _both_ends(pair: tuple[str, str], value, rank) -> Iterator[tuple[str, tuple]]:
    a, b = pair
    yield a, ((rank(value), b), pair, value)
    yield b, ((rank(value), a), pair, value)


def _either(values: Iterable):
    """One of the (equal) values of a pair chosen by both its images."""
    return next(iter(values))
