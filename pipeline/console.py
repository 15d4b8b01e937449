"""What the command line shows: logging set up before Beam is imported, Beam's worker log level, the closing summary.

A normal ``unishard run`` prints one header line (inputs, runner, models), a live progress line
(``pipeline/progress.py``) and a closing summary (kept, rejected, failed, the top rejection reasons, shards and their
validation, the report). ``configure`` installs one stderr handler on the root logger that lets through, by default,
unishard's own messages (the ``unishard`` logger at INFO, our modules' warnings) and errors of every library, nothing
else: no Beam, open_clip or hub INFO lines and no third-party warnings. ``-v`` shows INFO lines of every library and
unishard's debug lines, ``-vv`` everything, ``--log-level LEVEL`` one level for all. Beam's warning that apitools is
missing (logged when Beam's GCP I/O is imported) is never shown; its per-transform type-hint warnings only at DEBUG.
Pillow's errors about a file it cannot decode show with ``-v``: that file's ledger row already says why it left.
``beam_log_args`` passes a chosen level on to the SDK workers (``--default_sdk_harness_log_level``), unless the
command line sets theirs; local worker processes start with this console's logging (``pipeline/sdk_worker.py``).
"""

import logging
import sys
from collections import Counter
from collections.abc import Mapping

OWN_LOGGERS = ("unishard", "pipeline", "transforms", "schemas", "runners")
NEVER_SHOWN = ("apitools not found",)
# Libraries whose errors are about one input file, which the ledger already records as that file's rejection with
# its reason (Pillow's decoders log "More samples per pixel than can be decoded" and the like): shown with -v.
PER_FILE_LOGGERS = ("PIL",)
DEBUG_ONLY = ("This output type hint will be ignored", "This input type hint will be ignored")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
WORKER_LOG_OPTION = "--default_sdk_harness_log_level"
TOP_REASONS = 5
# What to do when one config-fixable reason rejects at least half of a run's items (a folder of photos with no text).
HINTS = {
    "no_text": "have no text in the fields text.fields names (from a same-stem .txt or .json sidecar, manifest "
    "column, folder metadata.csv row, tar caption, interleaved document's alt_text or matched sentence, or title or "
    "caption embedded in the file); the ledger's detail names other keys that hold words. Give them text (name "
    "such a key: --set 'text.fields=[\"KEY\"]'; class folders such as scratches/ give their name with --set "
    "ingest.folder_field=label), let the captioner write it (--set caption.captioner.enabled=true), or keep "
    "images without it: --set text.required=false --set caption.required=false",
    "outside_root": "lie outside their input's folder and were never read (the ledger's detail names each path). "
    "Move them under it, or list their folder in the input's roots in a config file: [[ingest.inputs]] "
    'path = "LIST.csv" roots = ["FOLDER"]',
    "no_caption": "were left without a usable caption (no text, and no caption template or captioner gave one). "
    "Turn the captioner on (--set caption.captioner.enabled=true; extra `captioner`, model weights), or keep them "
    "without a caption: --set caption.required=false",
}


class _Stderr(logging.StreamHandler):
    """A handler writing to the ``sys.stderr`` of the moment, so a swapped stream (pytest's capture) works."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


class _Thresholds(logging.Filter):
    """Let a record through when it reaches the level set for its kind of logger: ours, unishard's console, others."""

    def __init__(self, console: int, own: int, others: int):
        super().__init__()
        self.console, self.own, self.others = console, own, others

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name.split(".", 1)[0]
        if name == "unishard":
            threshold = self.console
        else:
            threshold = self.own if name in OWN_LOGGERS else self.others
        if record.levelno < threshold:
            return False
        if name in PER_FILE_LOGGERS and self.others > logging.INFO:
            return False
        if name not in OWN_LOGGERS:
            message = str(record.msg)
            if message.startswith(NEVER_SHOWN) or (self.others > logging.DEBUG and message.startswith(DEBUG_ONLY)):
                return False
            if self.others > logging.DEBUG and _expected_stop(record):
                return False
        return True


def _expected_stop(record: logging.LogRecord) -> bool:
    """A runner's error log that the launcher explains in lines of its own (the traceback shows with ``-vv``)."""
    try:
        message = record.getMessage()
    except (TypeError, ValueError):
        return False
    return explained(message)


def explained(message: str) -> bool:
    """Whether a failure's text is one the launcher explains in lines of its own: the incremental job stopping on
    changed content, which becomes a rebuild, a write finding its disk full, or a stage's own stop (evaluation
    leaks)."""
    from pipeline.job import own_stop, storage_full
    from transforms.changed_content import CHANGED

    return CHANGED in message or storage_full(message) or bool(own_stop(message))


class _Format(logging.Formatter):
    """unishard's console lines as they are (they start with ``unishard:``), its warnings and errors as ``unishard:
    warning: ...``; anything else with level and logger."""

    def __init__(self):
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if record.name == "unishard" and not record.exc_info:
            message = record.getMessage()
            if record.levelno <= logging.INFO:
                return message
            return f"unishard: {record.levelname.lower()}: {message.removeprefix('unishard: ')}"
        return super().format(record)


def split_verbosity(argv: list[str]) -> tuple[list[str], int | None]:
    """Take ``-v``, ``-vv`` and ``--log-level LEVEL`` out of ``argv``, wherever they are.

    Returns:
        The other arguments, and the level asked for (``None``: the default console).

    Raises:
        ValueError: ``--log-level`` without a known level.
    """
    rest, verbose, level, args = [], 0, None, iter(argv)
    for arg in args:
        if arg in ("-v", "--verbose", "-vv"):
            verbose += 2 if arg == "-vv" else 1
        elif arg == "--log-level" or arg.startswith("--log-level="):
            value = arg.partition("=")[2] if "=" in arg else next(args, "")
            if value.upper() not in LOG_LEVELS:
                raise ValueError(f"--log-level takes one of {', '.join(LOG_LEVELS)}, not {value!r}")
            level = getattr(logging, value.upper())
        else:
            rest.append(arg)
    if level is None and verbose:
        level = logging.INFO if verbose == 1 else logging.DEBUG
    return rest, level


def configure(level: int | None = None) -> None:
    """Set up the console's logging; call it before importing Beam. ``level``: ``None`` for the default console."""
    if level is None:
        console, own, others = logging.INFO, logging.WARNING, logging.ERROR
    elif level == logging.INFO:
        console, own, others = logging.DEBUG, logging.INFO, logging.INFO
    else:
        console = own = others = level
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _Stderr)]:
        root.removeHandler(handler)
    handler = _Stderr()
    handler.addFilter(_Thresholds(console, own, others))
    handler.setFormatter(_Format())
    root.addHandler(handler)
    root.setLevel(min(own, others))
    logging.getLogger("unishard").setLevel(console)
    logging.captureWarnings(True)


def beam_log_args(beam_args: list[str], level: int | None) -> list[str]:
    """``beam_args`` with the SDK workers' log level set to ``level``, unless ``beam_args`` set it or ``level`` is
    ``None`` (then local worker processes show what this console shows, ``pipeline/sdk_worker.py``, and a
    cluster's workers keep their runner's default in their own logs)."""
    if level is None or any(arg.startswith(WORKER_LOG_OPTION) for arg in beam_args):
        return beam_args
    return [*beam_args, f"{WORKER_LOG_OPTION}={logging.getLevelName(level)}"]


def report_written_since(output: str, started: float) -> str | None:
    """The path of ``OUT/report/report.json`` if it was written after ``started`` (a time.time()), else ``None``."""
    from apache_beam.io.filesystems import FileSystems

    from transforms._io import literal

    path = FileSystems.join(output, "report", "report.json")
    try:
        found = FileSystems.match([literal(path)])[0].metadata_list
    except Exception:  # noqa: BLE001 - the summary says the report was not written; the run itself succeeded
        return None
    return path if found and found[0].last_updated_in_seconds >= started - 1 else None


def summary_lines(output: str, counts: Mapping, seconds: float, report: str | None) -> list[str]:
    """The closing summary of a run: counts, top reasons, shards and their validation, the report.

    ``report`` is the path of the ``report.json`` this run wrote, ``None`` when it wrote none.
    """
    kept, rejected, failed = (counts["by_status"].get(status, 0) for status in ("kept", "rejected", "failed"))
    lines = [
        f"unishard: {counts['items']} items: {kept} kept, {rejected} rejected, {failed} failed in {seconds:.1f}s "
        f"-> {output}"
    ]
    for status in ("rejected", "failed"):
        reasons = Counter()
        for key, count in counts.get("by_reason", {}).items():
            if key.startswith(status + "/"):
                reasons[key.rsplit("/", 1)[-1]] += count
        if reasons:
            top = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))
            shown = ", ".join(f"{reason} {count}" for reason, count in top[:TOP_REASONS])
            more = f" (+{len(top) - TOP_REASONS} more reasons)" if len(top) > TOP_REASONS else ""
            lines.append(f"  {status}: {shown}{more}")
            if status == "rejected":
                lines.extend(_hint_lines(reasons, counts["items"]))
    lines.extend(_audit_lines(output))
    lines.extend(_report_lines(report))
    return lines


def _audit_lines(output: str) -> list[str]:
    """One line when the output's audit crossed bounds, which the report shows and ``--fail-on-audit`` fails on."""
    from transforms.write_audit import crossed_bounds

    try:
        crossed = crossed_bounds(output)
    except (OSError, ValueError):
        return []
    if not crossed:
        return []
    codes = Counter(warning.split(":", 1)[0] for warning in crossed)
    shown = ", ".join(f"{code} {count}" for code, count in sorted(codes.items()))
    return [f"  audit: {len(crossed)} bound(s) crossed ({shown}): see {output}/audit/audit.json and the report"]


def _hint_lines(reasons: Mapping[str, int], items: int) -> list[str]:
    """What to do about a config-fixable reason that rejected at least half of the items."""
    return [
        f"  hint: {reasons[reason]} of {items} items {advice}"
        for reason, advice in HINTS.items()
        if reasons.get(reason, 0) * 2 >= items > 0
    ]


def _report_lines(path: str | None) -> list[str]:
    from schemas.report import Report

    if path is None:
        return ["  report: not written by this run; `unishard report OUT` writes it and validates the shards"]
    html = path.removesuffix("report.json") + "index.html"
    from apache_beam.io.filesystems import FileSystems

    try:
        with FileSystems.open(path) as handle:
            report = Report.model_validate_json(handle.read())
    except (OSError, ValueError):
        return [f"  report: {html} (its report.json could not be read back)"]
    validation = report.validation
    shards = validation.shards if validation else []
    views = Counter(shard.view for shard in shards)
    where = f" ({', '.join(f'{view} {count}' for view, count in views.items())})" if views else ""
    if not validation or not any(shard.checked for shard in shards):
        verdict = "not validated"
    elif validation.ok:
        verdict = "all valid"
    else:
        found = len(validation.all_problems())
        verdict = f"{found} problem{'s' if found != 1 else ''}: see `unishard validate OUT`"
    return [f"  shards: {len(shards)}{where}, {verdict}", f"  report: {html}"]
