"""Progress records: count the elements passing a point of the pipeline into tiny files the launcher polls.

Input element type: anything; output: nothing (the transform is a side branch, so the data flow is unchanged).
Beam metrics from worker processes are not visible mid-run on every runner, so each DoFn instance keeps its own
running count and rewrites one small JSON file, ``<folder>/<point>/<instance>.json`` = ``{"count": N}``, at most
every ``interval`` seconds (15 s on object stores) and at the end of every bundle. Files are replaced through a
temporary name, so a reader never sees half a record. The launcher sums the files of a point (``read_counts``)
while the job runs; the records live beside the staging folder and never reach the output. Metrics: none (this is
the metric).
"""

import json
import re
import time
import uuid
from collections.abc import Iterable
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from transforms._io import join, pattern, write_atomic

STAGE = "progress"
REMOTE_INTERVAL = 15.0
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class CountProgress(beam.PTransform):
    """Count the elements of a PCollection into progress records under ``folder/<point>/``."""

    def __init__(self, folder: str, point: str, interval: float = 1.0):
        super().__init__()
        self._folder = folder
        self._point = point_name(point)
        self._interval = interval

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        return pcoll | "Count" >> beam.ParDo(_CountFn(join(self._folder, self._point), self._interval))


def point_name(label: str) -> str:
    """A file-system-safe folder name for a step label."""
    return _SAFE.sub("_", label).strip("_") or "step"


def read_counts(folder: str) -> dict[str, int]:
    """Sum the progress records under ``folder`` per point; unreadable or half-written files are skipped."""
    counts: dict[str, int] = {}
    for path in _records(folder):
        point = path.rstrip("/").rsplit("/", 2)[-2]
        try:
            with FileSystems.open(path, compression_type="uncompressed") as handle:
                count = int(json.loads(handle.read())["count"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        counts[point] = counts.get(point, 0) + count
    return counts


def _records(folder: str) -> Iterable[str]:
    if "://" not in folder:
        import os

        if not os.path.isdir(folder):
            return []
        return [
            os.path.join(root, name)
            for root, _, names in os.walk(folder)
            for name in names
            if name.endswith(".json") and ".tmp-" not in name
        ]
    try:
        matched = FileSystems.match([pattern(folder, "*", "*.json")])[0].metadata_list
    except Exception:  # noqa: BLE001 - nothing written yet is not an error
        return []
    return [m.path for m in matched if ".tmp-" not in m.path]


class _CountFn(beam.DoFn):
    def __init__(self, folder: str, interval: float):
        self._folder = folder
        self._interval = interval

    def setup(self):
        if "://" in self._folder:
            # An object store bills and throttles every rewrite: one per worker and step every 15 s is plenty.
            self._interval = max(self._interval, REMOTE_INTERVAL)
        self._path = join(self._folder, f"{uuid.uuid4().hex}.json")
        self._count = 0
        self._written = 0
        self._last = 0.0

    def process(self, element: Any) -> Iterable[Any]:
        self._count += 1
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._write(now)
        return ()

    def finish_bundle(self):
        if self._count != self._written:
            self._write(time.monotonic())

    def _write(self, now: float) -> None:
        try:
            write_atomic(self._path, json.dumps({"count": self._count}).encode())
        except OSError:
            return  # progress is best effort: a full disk or a vanished folder must not fail the job
        self._written, self._last = self._count, now
