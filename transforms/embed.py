"""Embed: one CLIP image embedding per surviving image, reused by every later model stage.

Input element type: ``Sample`` (after exact and near deduplication). Outputs: ``samples`` (the same samples with
``embedding`` = float16 bytes of the L2-normalised image vector and ``annotations["embedding_model"]`` = the model
id) and ``rejected`` (``failed`` ledger rows with reason ``exception`` for the samples of a batch whose inference
raised). Images are encoded through Beam's ``RunInference`` with ``OpenClipEmbedHandler``; the model loads on the
worker and is shared by its threads and by the other model stages of the process (``load_clip``).

The caption reranker, the CLIP-score filter, semantic deduplication and the zero-shot audits read the stored vector;
nothing encodes an image twice. ``WriteShards`` writes the vectors of each shard beside it as
``shard-NNNNNN.npy`` (float16, one row per sample in key order, the order of the tar and the Parquet sidecar).

Config sections: ``embed`` (batch size), ``clip`` (the model). Metrics: ``embed/image_encodes`` (images that entered
the model, equal to the samples entering the stage), plus RunInference's own metrics under the ``embed`` namespace.
"""

import dataclasses
import io
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference

from schemas.config.clip_model import ClipModelConfig
from schemas.config.embed import EmbedConfig
from schemas.records.ledger import failed
from schemas.records.samples import Sample
from transforms.image_store import read_image

STAGE = "embed"
EMBEDDING_MODEL = "embedding_model"


class EmbedOutputs(NamedTuple):
    samples: beam.PCollection
    rejected: beam.PCollection


class EmbedImages(beam.PTransform):
    """Attach the CLIP image embedding to every sample, one model pass per image.

    Args:
        config: The ``embed`` section.
        clip: The ``clip`` section.
        model_handler: A handler used instead of ``OpenClipEmbedHandler`` (tests inject one holding a fake model).
    """

    def __init__(self, config: EmbedConfig, clip: ClipModelConfig, model_handler: ModelHandler | None = None):
        super().__init__()
        self._handler = model_handler or OpenClipEmbedHandler(clip, config.batch_size)

    def expand(self, samples: beam.PCollection) -> EmbedOutputs:
        predictions, errors = samples | "Encode" >> RunInference(self._handler).with_exception_handling()
        embedded = predictions | "Attach" >> beam.Map(attach_embedding)
        failures = errors.failed_inferences | "FailedBatches" >> beam.FlatMap(failed_rows)
        return EmbedOutputs(samples=embedded, rejected=failures)


def encode_embedding(vector: np.ndarray) -> bytes:
    """Float16 bytes of the L2-normalised ``vector``."""
    vector = np.asarray(vector, np.float32)
    norm = float(np.linalg.norm(vector))
    return (vector / norm if norm > 0 else vector).astype(np.float16).tobytes()


def decode_embedding(data: bytes) -> np.ndarray:
    """The float32 unit vector stored as float16 bytes (renormalised after the float16 rounding)."""
    vector = np.frombuffer(data, dtype=np.float16).astype(np.float32)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def attach_embedding(result: PredictionResult) -> Sample:
    """The sample of ``result`` carrying its embedding and the id of the model that computed it."""
    sample: Sample = result.example
    annotations = {**sample.annotations, EMBEDDING_MODEL: result.model_id}
    return dataclasses.replace(sample, embedding=encode_embedding(result.inference), annotations=annotations)


def failed_rows(element: tuple[Sequence[Sample], tuple]) -> Iterator:
    """One ``failed`` ledger row per sample of a batch whose inference raised."""
    batch, (error_type, error_repr, _) = element
    error = RuntimeError(f"{getattr(error_type, '__name__', error_type)}: {error_repr}")
    for sample in batch:
        yield failed(STAGE, sample.source, error, sample.key, sample.domain)


def embedding_matrix(samples: Sequence[Sample]) -> np.ndarray | None:
    """The samples' embeddings as float16 rows in their order (NaN rows for samples without one), or ``None``."""
    present = [s.embedding for s in samples if s.embedding is not None]
    if not present:
        return None
    dim = len(present[0]) // 2
    rows = [
        np.frombuffer(s.embedding, np.float16) if s.embedding is not None else np.full(dim, np.nan, np.float16)
        for s in samples
    ]
    return np.stack(rows)


def npy_bytes(matrix: np.ndarray) -> bytes:
    """``matrix`` in NumPy's ``.npy`` format (no pickled objects; the header is a pure function of shape and dtype)."""
    buffer = io.BytesIO()
    np.save(buffer, matrix, allow_pickle=False)
    return buffer.getvalue()


class OpenClipEmbedHandler(ModelHandler[Sample, PredictionResult, Any]):
    """Encodes the images of a batch of samples with an open_clip model.

    The model loads in ``load_model`` on the worker (``load_clip``, cached per process). Beam batches at most
    ``batch_size`` samples; the model runs fixed passes of ``batch_size`` images, so a partial batch costs a full one
    but gives the same vectors.

    Args:
        clip: The ``clip`` section.
        batch_size: Images per forward pass.
        model: An object with ``model_id`` and ``encode_images`` used instead of loading ``clip`` (tests).
    """

    def __init__(self, clip: ClipModelConfig, batch_size: int = 16, model: Any = None):
        super().__init__(min_batch_size=batch_size, max_batch_size=batch_size)
        self._clip = clip
        self._batch_size = batch_size
        self._model = model
        self._encodes = beam.metrics.Metrics.counter(STAGE, "image_encodes")

    def load_model(self) -> Any:
        if self._model is not None:
            return self._model
        from transforms.clip_model import load_clip

        return load_clip(self._clip)

    def run_inference(
        self, batch: Sequence[Sample], model: Any, inference_args: dict[str, Any] | None = None
    ) -> Iterable[PredictionResult]:
        from PIL import Image

        images = [Image.open(io.BytesIO(read_image(sample))) for sample in batch]
        vectors = model.encode_images(images, self._batch_size)
        self._encodes.inc(len(batch))
        return [
            PredictionResult(sample, vector, model.model_id) for sample, vector in zip(batch, vectors, strict=True)
        ]

    def get_num_bytes(self, batch: Sequence[Sample]) -> int:
        return sum(sample.normalised.bytes for sample in batch)

    def get_metrics_namespace(self) -> str:
        return STAGE
