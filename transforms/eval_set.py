"""Evaluation set: understanding and generation items from the held-out split, checked for leaks into train.

Input element type: ``Sample`` with ``split`` set (after ``AssignSplits``). Nothing is dropped and no ledger row is
written: the eval images stay in their split's shards too. Config section: ``eval_set``. Metrics:
``eval_set/images``, ``eval_set/leaks``. Files under ``output/eval/``:

- ``understanding.jsonl``: an image with a question whose answer is a trusted metadata value (``questions``: the
  defect class, the product category, the colour), with the field the answer came from and, as ``choices``, every
  answer that question has anywhere in the output (an incremental run's shipped samples too; none when there are
  more than ``MAX_CHOICES``: an open question; ``transforms/eval_items.py`` builds the items);
- ``generation.jsonl``: the sample's text as a prompt with its reference image and the field the text came from;
- ``images/<key>.<ext>``: the referenced images, byte-identical to the shards';
- ``eval_set.json``: counts and what the leak check compared; ``leaks.json`` when it found leaks.

At most ``max_images`` images of the ``split`` split are used, chosen by a hash of the key (deterministic, and stable
as data grows). Every sample of the ``check_against`` splits is compared with every eval image using deduplication's
own evidence and thresholds (``transforms/_leaks.py``: bytes, pixels, pHash with colour signature, embeddings). A
leak writes ``leaks.json`` and, with ``fail_on_leak``, fails the run with ``EvalLeakError`` naming each pair.
Group-aware splitting links dedup's clusters, so this is a safety net: it fires when deduplication and splitting
disagree (dedup scoped per domain or disabled, a group key missing).

The contamination audit of ``decontaminate.exclude`` items is ``transforms/contamination.py``.
"""

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.io.filesystems import FileSystems

from schemas.config.eval_set import EvalQuestion, EvalSetConfig
from schemas.config.near_dedup import NearDedupConfig
from schemas.config.semantic_dedup import SemanticDedupConfig
from schemas.records.samples import Sample
from schemas.splits import EVAL_SCHEMA_VERSION, GenerationItem, Leak, Model, UnderstandingItem
from transforms._io import join, pattern, write_atomic
from transforms._leaks import EvalLeakError, FindLeaksFn, Probe, ProbeIndex, describe, probe_of
from transforms.eval_items import (
    MAX_CHOICES,
    answers_in,
    answers_of,
    items_of,
    single_answer_questions,
    with_choices,
)
from transforms.image_store import read_image
from transforms.incremental import EarlierRun

STAGE = "eval_set"
FOLDER = "eval"


class BuildEvalSet(beam.PTransform):
    """Write the evaluation set of the ``eval_set.split`` split under ``output/eval/``; fail on a leak."""

    def __init__(
        self,
        config: EvalSetConfig,
        output: str,
        splits: Iterable[str],
        near: NearDedupConfig,
        semantic: SemanticDedupConfig,
        earlier: EarlierRun | None = None,
        salt: str = "unishard-eval-v1",
    ):
        """Args:
        config: The ``eval_set`` section.
        output: The run's staging folder.
        splits: The splits samples can carry; without ``config.split`` among them there is no set to build.
        near: Near dedup's section: its hashes and thresholds define a near-duplicate leak.
        semantic: Semantic dedup's section: its threshold defines a semantic leak when embeddings exist.
        earlier: The earlier run of an incremental run: its eval items are carried over (the set is chosen again
            from old and new test images by the same hash), and its shipped samples join the leak check.
        salt: Hash salt of the image choice.
        """
        super().__init__()
        self._config = config
        self._near = near
        self._semantic = semantic
        self._min_cosine = semantic.threshold
        self._output = output
        self._active = config.enabled and config.split in set(splits)
        self._earlier = earlier.output if earlier is not None and earlier.has_shards else None
        self._salt = salt

    def expand(self, samples: beam.PCollection) -> beam.PCollection:
        config, salt, near, semantic, min_cosine = (
            self._config,
            self._salt,
            self._near,
            self._semantic,
            self._min_cosine,
        )
        pipeline = samples.pipeline
        if not self._active:
            return pipeline | "NoEvalSet" >> beam.Create([])
        carried = pipeline | "NoEarlierItems" >> beam.Create([])
        shipped = pipeline | "NoShippedProbes" >> beam.Create([])
        answers = [samples | "Answers" >> beam.FlatMap(answers_of, config.questions)]
        if self._earlier is not None:
            carried = (
                pipeline | "EarlierRun" >> beam.Create([self._earlier]) | "EarlierItems" >> beam.FlatMap(earlier_items)
            )
            sidecars = pipeline | "ReadSidecars" >> beam.io.ReadFromParquet(
                pattern(self._earlier, "shards", "pairs", "*", "shard-*.parquet")
            )
            shipped = sidecars | "ShippedProbes" >> beam.Map(shipped_probe)
            # choices are every answer in the output: the shipped samples' too, as a full run sees them
            answers.append(sidecars | "ShippedAnswers" >> beam.FlatMap(shipped_answers, config.questions))
        chosen = (
            (
                samples
                | "InEvalSplit" >> beam.Filter(lambda s: s.split == config.split)
                | "Rank" >> beam.Map(lambda s: (_rank(s.key, salt), s.key)),
                carried
                | "RankCarried" >> beam.Map(lambda item: (_rank(item.key, salt), item.key))
                | "DistinctCarried" >> beam.Distinct(),
            )
            | "AllRanked" >> beam.Flatten()
            | "FirstImages" >> beam.combiners.Top.Smallest(config.max_images)
            | "ChosenKeys" >> beam.Map(lambda ranked: frozenset(key for _, key in ranked))
        )
        keys = pvalue.AsSingleton(chosen)
        selected = samples | "Select" >> beam.Filter(lambda s, keys: s.split == config.split and s.key in keys, keys)
        index = (
            (
                selected | "Probe" >> beam.Map(probe_of, semantic),
                shipped
                | "ShippedEval" >> beam.Filter(lambda p, keys: p.split == config.split and p.key in keys, keys),
            )
            | "EvalProbes" >> beam.Flatten()
            | "AllProbes" >> beam.combiners.ToList()
            | "Index" >> beam.Map(lambda probes: ProbeIndex(probes, near, min_cosine))
        )
        checked = (
            samples
            | "Checked" >> beam.Filter(lambda s: s.split in config.check_against)
            | "CheckedProbes" >> beam.Map(probe_of, semantic),
            shipped | "ShippedChecked" >> beam.Filter(lambda p: p.split in config.check_against),
        ) | "AllChecked" >> beam.Flatten()
        leaks = (
            checked
            | "Batch" >> beam.BatchElements(min_batch_size=64, max_batch_size=1024)
            | "FindLeaks" >> beam.ParDo(FindLeaksFn(), index=pvalue.AsSingleton(index))
        )
        compared = checked | "CountChecked" >> beam.combiners.Count.Globally()
        items = selected | "Items" >> beam.ParDo(_WriteItemsFn(config, self._output))
        if self._earlier is not None:
            kept = (
                carried
                | "StillChosen" >> beam.Filter(lambda item, keys: item.key in keys, keys)
                | "CarriedByKey" >> beam.GroupBy(lambda item: item.key)
                | "CopyImages" >> beam.FlatMap(_copy_image, earlier=self._earlier, output=self._output)
            )
            items = (items, kept) | "WithCarried" >> beam.Flatten()
        vocabulary = (
            answers
            | "AllAnswers" >> beam.Flatten(pipeline=pipeline)
            | "DistinctAnswers" >> beam.Distinct()
            | "Sample" >> beam.combiners.Sample.FixedSizePerKey(MAX_CHOICES + 1)
            | "Vocabulary" >> beam.combiners.ToDict()
        )
        return (
            items
            | "AllItems" >> beam.combiners.ToList()
            | "Write"
            >> beam.Map(
                _write_set,
                leaks=pvalue.AsList(leaks),
                compared=pvalue.AsSingleton(compared),
                vocabulary=pvalue.AsSingleton(vocabulary),
                config=config,
                near=near,
                min_cosine=min_cosine,
                output=self._output,
            )
        )


def earlier_items(earlier: str) -> Iterator[Model]:
    """The items of an earlier run's evaluation set (none when it wrote none)."""
    for name, model in (("understanding.jsonl", UnderstandingItem), ("generation.jsonl", GenerationItem)):
        path = join(earlier, FOLDER, name)
        if FileSystems.exists(path):
            with FileSystems.open(path) as handle:
                for line in handle.read().decode("utf-8").splitlines():
                    if line.strip():
                        yield model.model_validate_json(line)


def shipped_probe(row: Mapping[str, Any]) -> Probe:
    """The probe of a sample an earlier run wrote, from its ``pairs`` sidecar row (no embedding is stored there)."""
    hashes = json.loads(row["hashes"] or "{}")
    return Probe(row["key"], row["source"], row["sha256"], row["pixel_sha256"], hashes, None, "", row["split"])


def shipped_answers(row: Mapping[str, Any], questions: Iterable[EvalQuestion]) -> list[tuple[tuple[str, str], str]]:
    """``answers_in`` of a sample an earlier run wrote, from its ``pairs`` sidecar row."""
    return answers_in(row["domain"], json.loads(row["metadata"] or "{}"), questions)


def _copy_image(element: tuple[str, Iterable[Model]], earlier: str, output: str) -> Iterator[Model]:
    items = list(element[1])
    image = items[0].image if isinstance(items[0], UnderstandingItem) else items[0].reference_image
    with FileSystems.open(join(earlier, FOLDER, image)) as handle:
        write_atomic(join(output, FOLDER, image), handle.read())
    yield from items


def _rank(key: str, salt: str) -> str:
    return hashlib.sha256(f"{salt}\0{key}".encode()).hexdigest()


class _WriteItemsFn(beam.DoFn):
    """Write each chosen sample's image under ``eval/images/`` and emit its items."""

    def __init__(self, config: EvalSetConfig, output: str):
        self._config = config
        self._output = output
        self._images = beam.metrics.Metrics.counter(STAGE, "images")

    def process(self, sample: Sample) -> Iterator[Model]:
        items = items_of(sample, self._config.questions, self._config.generation)
        if items:
            write_atomic(join(self._output, FOLDER, "images", f"{sample.key}.{sample.image_ext}"), read_image(sample))
            self._images.inc()
            yield from items


def _jsonl(items: Iterable[Model]) -> bytes:
    return b"".join(
        json.dumps(i.model_dump(mode="json"), sort_keys=True, ensure_ascii=False).encode() + b"\n" for i in items
    )


def _write_set(
    items: list[Model],
    leaks: list[Leak],
    compared: int,
    vocabulary: dict,
    config: EvalSetConfig,
    near: NearDedupConfig,
    min_cosine: float,
    output: str,
) -> dict:
    leaks = sorted(leaks, key=lambda x: (x.eval_key, x.train_key))
    folder = join(output, FOLDER)
    if leaks:
        write_atomic(join(folder, "leaks.json"), _jsonl(leaks))
        if config.fail_on_leak:
            raise EvalLeakError(describe(leaks, near_linked=near.enabled))
    asked = [i for i in items if isinstance(i, UnderstandingItem)]
    understanding = with_choices(asked, vocabulary)
    generation = sorted((i for i in items if isinstance(i, GenerationItem)), key=lambda item: item.id)
    write_atomic(join(folder, "understanding.jsonl"), _jsonl(understanding))
    write_atomic(join(folder, "generation.jsonl"), _jsonl(generation))
    summary = {
        "schema_version": EVAL_SCHEMA_VERSION,
        "split": config.split,
        "images": len({i.key for i in items}),
        "understanding_items": len(understanding),
        "single_answer_questions": dict(sorted(single_answer_questions(asked, vocabulary).items())),
        "generation_items": len(generation),
        "answers_by_field": dict(sorted(Counter(i.answer_field for i in understanding).items())),
        "by_domain": dict(sorted(Counter(i.domain for i in [*understanding, *generation]).items())),
        "leak_check": {
            "against": list(config.check_against),
            "compared_samples": compared,
            "near": {
                "max_distance": near.max_distance,
                "second_hash": near.second_hash,
                "max_colour_distance": near.max_colour_distance,
            },  # fmt: skip
            "min_cosine": min_cosine,
            "leaks": len(leaks),
        },
    }
    write_atomic(join(folder, "eval_set.json"), json.dumps(summary, indent=2, sort_keys=True).encode() + b"\n")
    return summary
