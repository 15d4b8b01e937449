"""Live progress: worker records, their sum, the display, and the launcher's monitor on three runners."""

import io
import logging
import threading

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.progress import DONE_LABEL, LogDisplay, Snapshot, TerminalDisplay, Tracker, describe, tracked
from tests.pipeline.planted import RecordingDisplay, planted_progress, planted_run
from transforms.progress import _CountFn, point_name, read_counts


def _count(folder: str, point: str, elements: int) -> None:
    fn = _CountFn(f"{folder}/{point}", interval=3600)
    fn.setup()
    for element in range(elements):
        fn.process(element)
    fn.finish_bundle()


def test_records_of_many_workers_are_summed_per_point(tmp_path):
    _count(str(tmp_path), "Normalise", 3)
    _count(str(tmp_path), "Normalise", 4)
    _count(str(tmp_path), "WriteLedger", 2)
    (tmp_path / "Normalise" / "half.json.tmp-123").write_text('{"count": 99')
    (tmp_path / "Normalise" / "broken.json").write_text('{"count": ')
    assert read_counts(str(tmp_path)) == {"Normalise": 7, "WriteLedger": 2}
    assert read_counts(str(tmp_path / "nothing-yet")) == {}
    assert point_name("Ingest/Flatten Listed") == "Ingest_Flatten_Listed"


def test_snapshot_names_the_furthest_stage_and_its_share_of_the_total():
    snapshot = Snapshot(
        elapsed=64.0,
        total=1000,
        steps=(("Normalise", 340), ("Text", 300), ("WriteShards", 0), (DONE_LABEL, 12)),
        stage="Text",
        stage_index=2,
        stage_count=4,
        done=12,
        rate=85.25,
    )
    assert describe(snapshot) == (
        "[1:04] step 2/4 Text: 300/1,000 items (30.0%) · 85.2 items/s · step ETA 0:08 · 12/1,000 accounted"
    )
    listing = Snapshot(0.0, 250, (("Normalise", 0),), "Normalise", 1, 1, 0, None)
    assert describe(listing) == "[0:00] listing inputs: 250 items found"


def test_tracker_reads_the_folder_and_picks_the_current_stage(tmp_path):
    from pipeline.progress import TOTAL_POINT, Point

    _count(str(tmp_path), TOTAL_POINT, 10)
    _count(str(tmp_path), "Normalise", 10)
    _count(str(tmp_path), "Text", 6)
    points = [Point("Normalise", "Normalise"), Point("Text", "Text"), Point(DONE_LABEL, DONE_LABEL)]
    snapshot = Tracker(str(tmp_path), points).poll()
    assert (snapshot.total, snapshot.stage, snapshot.stage_index, snapshot.count, snapshot.done) == (
        10,
        "Text",
        2,
        6,
        0,
    )


def test_a_stage_whose_count_has_not_moved_shows_no_rate_rather_than_zero(tmp_path, monkeypatch):
    """Items are counted as their bundle ends: during a long bundle (embedding, near dedup) the line said
    "0.0 items/s" and its ETA was gone, as if the run had stalled."""
    from pipeline import progress
    from pipeline.progress import Point

    now = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    _count(str(tmp_path), "Embed", 50)
    tracker = Tracker(str(tmp_path), [Point("Embed", "Embed"), Point(DONE_LABEL, DONE_LABEL)])
    tracker.poll()
    now[0] = 105.0
    stalled = tracker.poll()  # 5 s later, the same 50
    assert stalled.rate is None and "items/s" not in describe(stalled)
    _count(str(tmp_path), "Embed", 30)
    now[0] = 106.0
    moving = tracker.poll()  # 6 s after the first poll, 80
    assert moving.rate == pytest.approx(30 / 6) and "5.0 items/s" in describe(moving)


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_terminal_display_redraws_one_line_and_logs_are_plain_and_spaced():
    stream = io.StringIO()
    display = TerminalDisplay(stream)
    first = Snapshot(1.0, 10, (("Normalise", 3),), "Normalise", 1, 1, 0, None)
    display.update(first)
    display.finish(Snapshot(2.0, 10, (("Normalise", 10),), "Normalise", 1, 1, 10, None, finished=True))
    assert stream.getvalue().startswith("\r\x1b[K[0:01] step 1/1 Normalise: 3/10")
    assert stream.getvalue().endswith("[0:02] done: 10 items accounted in the ledger · 5.0 items/s\n")

    logger = logging.getLogger("unishard.test_progress")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler = _Lines()
    logger.addHandler(handler)
    logs = LogDisplay(every=10.0, logger=logger)
    for second in (0.5, 1.0, 5.0, 11.0):
        logs.update(Snapshot(second, 10, (("Normalise", int(second)),), "Normalise", 1, 1, 0, None))
    logger.removeHandler(handler)
    lines = handler.lines
    assert len(lines) == 2 and not any("\x1b" in line or "\r" in line for line in lines)
    assert "Normalise: 0/10" not in lines[0] and "Normalise: 11/10 items" in lines[1]


def test_the_real_run_showed_progress_and_left_no_records(tmp_path_factory):
    out = planted_run(tmp_path_factory)
    final = planted_progress().snapshots[-1]
    assert final.finished and final.total == 19 and final.done == 19
    steps = dict(final.steps)
    assert steps["Normalise"] == 18 and steps["WriteShards"] == 12 and steps[DONE_LABEL] == 19
    # Every step shown is one that items pass through, so none counts more than were listed (the audit's measure
    # records, several per sample, are not items).
    assert max(steps.values()) <= final.total and "WriteAudit" not in steps
    assert not list(out.path.rglob("*.progress")) and not list((out.path / "_staging").rglob("*.json"))


class _Listing(beam.PTransform):
    def __init__(self, count: int):
        super().__init__()
        self._count = count

    def expand(self, pbegin):
        created = pbegin | "Create" >> beam.Create(range(self._count))
        return (created,) | "FlattenListed" >> beam.Flatten()


_GATES: dict[str, threading.Event] = {}


class _WaitFn(beam.DoFn):
    """Holds elements until the display has seen the listing count (in-process runners only).

    The DoFn is pickled, so it names its gate instead of holding it.
    """

    def __init__(self, gate: str | None):
        self._gate = gate

    def process(self, element):
        if self._gate is not None:
            _GATES[self._gate].wait(30)
        yield element


def _tiny_run(tmp_path, beam_args, count=40, display=None, gate=None) -> RecordingDisplay:
    display = display or RecordingDisplay()
    pipeline = beam.Pipeline(options=PipelineOptions(beam_args))
    listed = pipeline | "Ingest" >> _Listing(count)
    spread = listed | "Spread" >> beam.Reshuffle()
    work = spread | "Work" >> beam.Map(lambda x: x * 2)
    waited = work | "Wait" >> beam.ParDo(_WaitFn(gate))
    _ = waited | DONE_LABEL >> beam.Map(lambda x: x)
    with tracked(pipeline, str(tmp_path / "run.progress"), display):
        pipeline.run().wait_until_finish()
    assert not (tmp_path / "run.progress").exists()
    return display


def test_progress_is_visible_while_the_job_runs(tmp_path):
    seen = _GATES["visible"] = threading.Event()

    class Watching(RecordingDisplay):
        interval = 0.05

        def update(self, snapshot):
            super().update(snapshot)
            if snapshot.total == 5:
                seen.set()

    display = _tiny_run(tmp_path, ["--runner=DirectRunner"], count=5, display=Watching(), gate="visible")
    assert seen.is_set(), "the listing count reached the display while a later step was still running"
    live = [s for s in display.snapshots if not s.finished and s.total == 5]
    assert live and not live[0].done
    assert display.snapshots[-1].finished and display.snapshots[-1].done == 5


@pytest.mark.parametrize(
    "beam_args",
    [
        pytest.param(
            ["--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2"],
            marks=pytest.mark.slow,
        ),
        ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK"],
    ],
    ids=["worker-processes", "portable"],
)
def test_counts_come_back_from_other_runners(tmp_path, beam_args):
    final = _tiny_run(tmp_path, beam_args).snapshots[-1]
    assert final.finished and final.total == 40 and final.done == 40
    assert dict(final.steps) == {"Spread": 40, "Work": 40, "Wait": 40, DONE_LABEL: 40}
