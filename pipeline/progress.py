"""Live progress of a run: items done of the total, rate and current stage, on any runner.

``tracked(pipeline, folder)`` adds a ``CountProgress`` side branch on the main input of every top-level step of the
built pipeline that items pass through (one per PCollection; ``SIDE_STEPS`` are left out), plus one on the listing
inside ``Ingest`` that gives the total. Workers write their counts as tiny files under ``folder``; a launcher thread
polls them while the job runs (``pipeline.run()`` blocks for local runners, ``wait_until_finish`` for the others)
and shows a one-line display that redraws itself on a terminal, or a plain log line every ``log_every`` seconds
otherwise. Nothing here touches the output: the folder sits beside the staging folder and is removed when the job
ends.
"""

import contextlib
import fnmatch
import logging
import shutil
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from transforms._io import literal
from transforms.progress import CountProgress, point_name, read_counts

_LOG = logging.getLogger("unishard")
# Items listed, plus manifest rows rejected while listing (they never reach the listing's Flatten).
TOTAL_LABELS = ("Ingest/FlattenListed", "Ingest/Input*ManifestDropped")
DONE_LABEL = "WriteLedger"
# Top-level steps whose input holds records other than items (duplicate clusters, contamination findings, audit
# measures, document ledger rows): no item passes through them, so their counts are not items of the total.
SIDE_STEPS = ("DuplicateLinks", "ContaminationAudit", "WriteAudit", "WriteDocumentLedger")
TOTAL_POINT = "ingest.listed"
REMOTE_POLL = 10.0


@dataclass(frozen=True)
class Point:
    label: str
    point: str


@dataclass(frozen=True)
class Snapshot:
    """One poll: counts per step in dataflow order, the total listed, and what the display needs."""

    elapsed: float
    total: int | None
    steps: tuple[tuple[str, int], ...]
    stage: str
    stage_index: int
    stage_count: int
    done: int
    rate: float | None
    finished: bool = False

    @property
    def count(self) -> int:
        """Items that reached the current stage."""
        return self.steps[self.stage_index - 1][1] if self.steps else 0

    @property
    def share(self) -> float:
        return min(1.0, self.count / self.total) if self.total else 0.0


def attach(pipeline: beam.Pipeline, folder: str) -> list[Point]:
    """Add progress counters to a built pipeline; return the steps they watch, in application order."""
    points: list[Point] = []
    counted: dict[int, str] = {}
    top = list(pipeline.transforms_stack[0].parts)
    for applied in top:
        inputs = [p for p in applied.main_inputs.values() if isinstance(p, beam.pvalue.PCollection)]
        if len(inputs) != 1 or not applied.full_label or applied.full_label in SIDE_STEPS:
            continue
        pcoll = inputs[0]
        if id(pcoll) not in counted:
            counted[id(pcoll)] = point_name(applied.full_label)
            _ = pcoll | f"Progress{point_name(applied.full_label)}" >> CountProgress(folder, applied.full_label)
        points.append(Point(applied.full_label, counted[id(pcoll)]))
    for index, listed in enumerate(_find(top, TOTAL_LABELS)):
        _ = listed | f"ProgressListed{index}" >> CountProgress(folder, TOTAL_POINT)
    return points


def _find(applied_list: list, patterns: tuple[str, ...]) -> list[beam.PCollection]:
    """The single outputs of every nested step whose full label matches one of ``patterns``, in label order."""
    found = []
    stack = list(applied_list)
    while stack:
        applied = stack.pop()
        if any(fnmatch.fnmatchcase(applied.full_label, p) for p in patterns) and len(applied.outputs) == 1:
            found.append((applied.full_label, next(iter(applied.outputs.values()))))
        stack.extend(applied.parts)
    return [pcoll for _, pcoll in sorted(found, key=lambda item: item[0])]


class Tracker:
    """Turn polled counts into snapshots: current stage (the furthest step with items) and its recent rate."""

    def __init__(self, folder: str, points: list[Point], window: float = 10.0):
        self._folder = folder
        self._points = points
        self._window = window
        self._started = time.monotonic()
        self._history: deque[tuple[float, int]] = deque()
        self._stage = ""

    def poll(self, finished: bool = False) -> Snapshot:
        counts = read_counts(self._folder)
        now = time.monotonic()
        steps = tuple((p.label, counts.get(p.point, 0)) for p in self._points)
        active = [i for i, (_, count) in enumerate(steps) if count > 0]
        index = active[-1] if active else 0
        stage, count = steps[index] if steps else ("starting", 0)
        if stage != self._stage:
            self._stage, self._history = stage, deque()
        self._history.append((now, count))
        while len(self._history) > 2 and now - self._history[0][0] > self._window:
            self._history.popleft()
        first_time, first_count = self._history[0]
        # No item reached the stage within the window: its workers are inside a bundle, whose items are counted as
        # it ends, so "0.0 items/s" would be false; no rate is shown until the count moves.
        moved = count > first_count
        rate = (count - first_count) / (now - first_time) if now - first_time >= 0.5 and moved else None
        done = dict(steps).get(DONE_LABEL, 0)
        return Snapshot(
            elapsed=now - self._started,
            total=counts.get(TOTAL_POINT),
            steps=steps,
            stage=stage,
            stage_index=index + 1,
            stage_count=len(steps),
            done=done,
            rate=rate,
            finished=finished,
        )


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def describe(snapshot: Snapshot) -> str:
    """One line: ``[0:04] step 3/8 Normalise: 340/1,000 items (34.0%) · 85.2 items/s · step ETA 0:07 · 12/1,000
    accounted``; the ETA is the current step's, at its recent rate (a later step may be slower)."""
    clock = _clock(snapshot.elapsed)
    total = snapshot.total
    of_total = f"/{total:,}" if total else ""
    share = f" ({100 * snapshot.share:.1f}%)" if total else ""
    rate_value = snapshot.done / snapshot.elapsed if snapshot.finished and snapshot.elapsed > 0 else snapshot.rate
    rate = f" · {rate_value:,.1f} items/s" if rate_value is not None else ""
    if total and snapshot.rate and snapshot.rate > 0 and snapshot.count < total and not snapshot.finished:
        rate += f" · step ETA {_clock((total - snapshot.count) / snapshot.rate)}"
    accounted = f" · {snapshot.done:,}{of_total} accounted" if snapshot.done or total else ""
    if snapshot.finished:
        return f"[{clock}] done: {snapshot.done:,} items accounted in the ledger{rate}"
    verb = f"step {snapshot.stage_index}/{snapshot.stage_count} {snapshot.stage}"
    if not snapshot.count:
        return f"[{clock}] listing inputs: {total or 0:,} items found"
    return f"[{clock}] {verb}: {snapshot.count:,}{of_total} items{share}{rate}{accounted}"


class TerminalDisplay(logging.Filter):
    """Redraw one status line in place on a terminal.

    While it shows, it also filters the root logger's handlers: each log record first clears the status line, so
    log output never runs into it; the next poll draws the line again below the record.
    """

    interval = 0.5

    def __init__(self, stream=None):
        super().__init__()
        self._stream = stream or sys.stderr
        self._handlers: list[logging.Handler] = []

    def filter(self, record: logging.LogRecord) -> bool:
        with contextlib.suppress(Exception):
            self._stream.write("\r\x1b[K")
        return True

    def update(self, snapshot: Snapshot) -> None:
        if not self._handlers:
            self._handlers = list(logging.getLogger().handlers)
            for handler in self._handlers:
                handler.addFilter(self)
        width = shutil.get_terminal_size((100, 20)).columns - 1
        self._stream.write("\r\x1b[K" + describe(snapshot)[:width])
        self._stream.flush()

    def finish(self, snapshot: Snapshot) -> None:
        self.close()
        self._stream.write("\r\x1b[K" + describe(snapshot) + "\n")
        self._stream.flush()

    def close(self) -> None:
        """Stop filtering log records and leave the cursor on a fresh line."""
        for handler in self._handlers:
            handler.removeFilter(self)
        self._handlers = []
        self._stream.write("\r\x1b[K")
        self._stream.flush()


class LogDisplay:
    """A plain log line every ``every`` seconds (and a last one at the end), for logs and CI."""

    interval = 2.0

    def __init__(self, every: float = 15.0, logger: logging.Logger = _LOG):
        self._every = every
        self._logger = logger
        self._last = -every
        self._line = ""

    def update(self, snapshot: Snapshot) -> None:
        line = describe(snapshot)
        if snapshot.elapsed - self._last >= self._every and line != self._line:
            self._logger.info("unishard: progress %s", line)
            self._last, self._line = snapshot.elapsed, line

    def finish(self, snapshot: Snapshot) -> None:
        self._logger.info("unishard: progress %s", describe(snapshot))


def default_display():
    return TerminalDisplay() if sys.stderr.isatty() else LogDisplay()


class Monitor:
    """A daemon thread that polls the progress folder and feeds a display until stopped."""

    def __init__(self, tracker: Tracker, display, interval: float | None = None):
        self._tracker = tracker
        self._display = display
        self._interval = interval or getattr(display, "interval", 1.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="unishard-progress", daemon=True)
        self.last: Snapshot | None = None

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.last = self._tracker.poll()
                self._display.update(self.last)
            except Exception as error:  # noqa: BLE001 - a display problem must never stop the job
                _LOG.debug("progress poll failed: %s", error)

    def stop(self, finished: bool) -> Snapshot | None:
        self._stop.set()
        self._thread.join()
        try:
            self.last = self._tracker.poll(finished=finished)
            if finished:
                self._display.finish(self.last)
            elif hasattr(self._display, "close"):
                self._display.close()
        except Exception as error:  # noqa: BLE001
            _LOG.debug("progress poll failed: %s", error)
        return self.last


@contextlib.contextmanager
def tracked(pipeline: beam.Pipeline, folder: str, display=None, enabled: bool = True) -> Iterator[Monitor | None]:
    """Watch ``pipeline`` while the block runs it; remove the progress folder afterwards."""
    if not enabled:
        yield None
        return
    points = attach(pipeline, folder)
    interval = REMOTE_POLL if "://" in folder else None
    monitor = Monitor(Tracker(folder, points), display or default_display(), interval)
    monitor.start()
    finished = False
    try:
        yield monitor
        finished = True
    finally:
        monitor.stop(finished)
        _remove(folder)


def _remove(folder: str) -> None:
    if "://" not in folder:
        shutil.rmtree(folder, ignore_errors=True)
    else:
        with contextlib.suppress(Exception):
            if FileSystems.exists(folder):
                FileSystems.delete([literal(folder)])
