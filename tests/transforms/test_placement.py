"""MMC4-style placement: linear assignment of images to sentences on fake embeddings with a known optimum."""

import numpy as np
import pytest

from schemas import reasons
from transforms.placement import assign, decode_embedding, place, similarity_matrix, split_sentences


class FakeTextEncoder:
    """A lookup table from sentence to vector, with the ``ClipModel.encode_texts`` interface."""

    def __init__(self, table: dict[str, list[float]], model_id: str = "clip_fake"):
        self.model_id = model_id
        self._table = table
        self.calls = 0

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        rows = np.asarray([self._table[text] for text in texts], dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _embedding(vector: list[float]) -> bytes:
    array = np.asarray(vector, dtype=np.float32)
    return (array / np.linalg.norm(array)).astype(np.float16).tobytes()


def test_assignment_finds_the_optimum_a_greedy_match_misses():
    # Greedy takes (0, 0) = 0.9 and is left with (1, 1) = 0.1: total 1.0. The optimum crosses: 0.8 + 0.85 = 1.65.
    similarity = np.array([[0.9, 0.8], [0.85, 0.1]])
    result = assign(similarity, min_similarity=0.0)
    assert [(a.image, a.sentence) for a in result] == [(0, 1), (1, 0)]
    assert [a.similarity for a in result] == [0.8, 0.85]
    assert all(a.reason == "" for a in result)


def test_assignment_matches_brute_force_on_random_matrices():
    from itertools import permutations

    rng = np.random.default_rng(7)
    for _ in range(20):
        similarity = rng.uniform(-1, 1, size=(3, 5))
        best = max(permutations(range(5), 3), key=lambda cols: sum(similarity[i, c] for i, c in enumerate(cols)))
        assert tuple(a.sentence for a in assign(similarity, -1.0)) == best


def test_more_images_than_sentences_leaves_the_worst_unplaced_with_reason():
    similarity = np.array([[0.5], [0.7], [0.3]])
    result = assign(similarity, min_similarity=0.0)
    assert [a.sentence for a in result] == [None, 0, None]
    assert [a.reason for a in result] == [reasons.IMAGE_UNPLACED, "", reasons.IMAGE_UNPLACED]


def test_assignment_below_min_similarity_leaves_with_its_similarity_recorded():
    result = assign(np.array([[0.30, 0.1], [0.1, 0.20]]), min_similarity=0.24)
    assert (result[0].sentence, result[0].similarity) == (0, 0.3)
    assert (result[1].sentence, result[1].similarity, result[1].reason) == (
        None,
        0.2,
        reasons.IMAGE_BELOW_MIN_SIMILARITY,
    )


def test_place_embeds_sentences_once_and_uses_sample_embedding_bytes():
    sentences = ["A red mug.", "A blue mug.", "A green mug."]
    encoder = FakeTextEncoder({"A red mug.": [1, 0, 0], "A blue mug.": [0, 0, 1], "A green mug.": [0, 1, 0]})
    images = [_embedding([0.1, 0.1, 1.0]), _embedding([1.0, 0.2, 0.0])]
    result = place(images, sentences, encoder, min_similarity=0.5)
    assert [a.sentence for a in result] == [1, 0]
    assert encoder.calls == 1
    assert result[0].similarity == pytest.approx(float(similarity_matrix([[0.1, 0.1, 1.0]], [[0, 0, 1]])[0, 0]), 1e-3)


def test_place_refuses_a_text_encoder_of_another_dimension():
    encoder = FakeTextEncoder({"One.": [1, 0]}, model_id="clip_other")
    with pytest.raises(ValueError, match="clip_other"):
        place([_embedding([1, 0, 0])], ["One."], encoder, 0.0)


def test_place_without_sentences_leaves_every_image_unplaced():
    result = place([_embedding([1, 0, 0])], [], FakeTextEncoder({}), 0.0)
    assert [(a.sentence, a.reason) for a in result] == [(None, reasons.IMAGE_UNPLACED)]


def test_embedding_round_trip_is_a_unit_vector():
    vector = decode_embedding(_embedding([3, 4, 0]))
    assert vector.dtype == np.float32
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-3)


def test_split_sentences_keeps_order_and_drops_empty_pieces():
    assert split_sentences("Press the switch. The doors lock!  Done?  ") == [
        "Press the switch.",
        "The doors lock!",
        "Done?",
    ]
    assert split_sentences("no end mark") == ["no end mark"]
    assert split_sentences("   ") == []
