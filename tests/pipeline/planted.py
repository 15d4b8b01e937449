"""A small run with planted problems, shared by the report, validate, inspect and browser tests.

The run is made once per test session (``planted_run``): two domains, a hostile caption, an undecodable file, a
too-small image, an image with no text, an exact copy and a lossless re-encode (duplicates), and a manifest row that
points at a missing file.
"""

import html
import shutil
from pathlib import Path

from pipeline import progress
from pipeline.progress import LogDisplay, Snapshot
from tests.helpers import Output, make_photo, run_job, write_sidecar


def _escape(text: str, times: int) -> str:
    for _ in range(times):
        text = html.escape(text, quote=False)
    return text


# Text cleaning strips tags and then unescapes entities, once per pass (the text stage, the caption stage...). Each
# payload is escaped once more than the one before it, so whichever number of passes the pipeline makes, one of them
# reaches the shard text as a live-looking ``<script>`` element.
HOSTILE = (
    " ".join(
        _escape(f'<script>window.__pwned = {level}</script><img src=x onerror="window.__pwned = {level}">', level)
        for level in range(1, 5)
    )
    + " A mug &amp; a saucer"
)
HOSTILE_NAME = "<svg onload=window.__pwned=3>.jpg"
_CACHE: dict[str, Output] = {}


def make_inputs(root: Path) -> list[dict]:
    marketing, factory = root / "marketing", root / "factory"
    marketing.mkdir(parents=True)
    factory.mkdir(parents=True)
    for seed in range(6):
        path = marketing / f"product{seed}.jpg"
        make_photo(320 + 40 * seed, 240, seed=seed).save(path, quality=90)
        write_sidecar(path, title=f"Product {seed}: a {['red', 'green', 'blue'][seed % 3]} mug on a table")
    write_sidecar(marketing / "product5.jpg", title=HOSTILE)
    make_photo(280, 280, seed=30).save(marketing / HOSTILE_NAME, quality=90)
    write_sidecar(marketing / HOSTILE_NAME, title="a file with a hostile name")
    shutil.copy(marketing / "product1.jpg", marketing / "product1-copy.jpg")
    write_sidecar(marketing / "product1-copy.jpg", title="the same mug again")
    make_photo(300, 300, seed=40).save(marketing / "banner.png")
    write_sidecar(marketing / "banner.png", title="a banner")
    make_photo(300, 300, seed=40).save(marketing / "banner-again.png", optimize=True)
    write_sidecar(marketing / "banner-again.png", title="the banner, re-encoded")
    for seed in range(10, 14):
        path = factory / f"board{seed}.jpg"
        make_photo(256, 512, seed=seed).save(path, quality=85)
        write_sidecar(path, label=f"circuit board, defect class {seed % 2}")
    make_photo(16, 16, seed=50).save(factory / "tiny.jpg")
    write_sidecar(factory / "tiny.jpg", label="too small")
    make_photo(200, 200, seed=51).save(factory / "silent.jpg")
    (factory / "broken.jpg").write_bytes(b"this is not an image")
    write_sidecar(factory / "broken.jpg", label="broken")
    manifest = root / "extra.csv"
    manifest.write_text("path,title\nmarketing/product0.jpg,manifest copy of product 0\nmissing.jpg,gone\n")
    return [
        {"path": str(marketing), "domain": "marketing"},
        {"path": str(factory), "domain": "factory"},
        {"path": str(manifest), "domain": "marketing"},
    ]


class RecordingDisplay(LogDisplay):
    """The launcher's progress display, keeping every snapshot it is shown."""

    def __init__(self):
        super().__init__()
        self.snapshots: list[Snapshot] = []

    def update(self, snapshot: Snapshot) -> None:
        self.snapshots.append(snapshot)
        super().update(snapshot)

    def finish(self, snapshot: Snapshot) -> None:
        self.snapshots.append(snapshot)
        super().finish(snapshot)


def planted_run(tmp_path_factory) -> Output:
    """Run the pipeline once on the planted inputs (cached for the session); shards hold 3 samples each.

    The progress snapshots the launcher showed are kept in ``planted_progress()``.
    """
    if "run" not in _CACHE:
        root = tmp_path_factory.mktemp("planted")
        inputs = make_inputs(root / "inputs")
        display = RecordingDisplay()
        original = progress.default_display
        progress.default_display = lambda: display
        try:
            _CACHE["run"] = run_job(inputs, root / "out", shards={"samples_per_shard": 3})
        finally:
            progress.default_display = original
        _CACHE["progress"] = display
    return _CACHE["run"]


def planted_progress() -> RecordingDisplay:
    return _CACHE["progress"]
