"""The console: what a run prints, what the logging lets through, the closing summary, errors on stderr.

The end-to-end test runs the real CLI in a subprocess with its stderr on a pseudo-terminal, as a user sees it, and
compares the lines left on the screen (the live progress line redraws itself in place) with the exact expected
lines, timings and paths masked.
"""

import importlib.util
import json
import logging
import os
import pty
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pipeline import cli, console
from tests.helpers import make_photo, write_sidecar
from transforms.changed_content import CHANGED

UNISHARD = Path(sys.executable).with_name("unishard")
TIMEOUT_S = 600


def _screen(raw: bytes) -> list[str]:
    """The lines a terminal shows after ``raw``: each line as its last redraw left it."""
    text = raw.decode("utf-8", "replace").replace("\r\n", "\n")
    lines = [line.rsplit("\r", 1)[-1].replace("\x1b[K", "") for line in text.split("\n")]
    return [line for line in lines if line]


def _on_terminal(command: list[str], cwd: Path) -> tuple[int, list[str], list[str]]:
    """Run ``command`` with stderr on a pseudo-terminal; return its exit code, stdout lines and stderr screen."""
    master, slave = pty.openpty()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL
    )
    os.close(slave)
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the last writer closed the terminal
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    stdout = process.communicate(timeout=TIMEOUT_S)[0].decode()
    reader.join(timeout=30)
    os.close(master)
    return process.returncode, stdout.splitlines(), _screen(b"".join(chunks))


def _mask(lines: list[str], paths: dict[str, str]) -> list[str]:
    masked = []
    for line in lines:
        for path, name in paths.items():
            line = line.replace(path, name)
        line = re.sub(r"^\[\d+:\d\d\]", "[T]", line)
        line = re.sub(r"\d+\.\d items/s", "R items/s", line)
        masked.append(re.sub(r" in \d+\.\ds ", " in Ts ", line))
    return masked


def test_a_run_shows_a_header_its_progress_and_a_summary_and_nothing_else(tmp_path):
    inputs = tmp_path / "photos"
    inputs.mkdir()
    for seed in range(4):
        make_photo(120, 96, seed=seed).save(inputs / f"photo-{seed}.jpg")
        write_sidecar(inputs / f"photo-{seed}.jpg", title=f"a test photo number {seed}")
    (inputs / "copy.jpg").write_bytes((inputs / "photo-0.jpg").read_bytes())
    write_sidecar(inputs / "copy.jpg", title="the same photo again")
    (inputs / "notes.jpg").write_bytes(b"not an image")
    output = tmp_path / "run 😀"  # a character outside the BMP: JSON would escape it as a surrogate pair
    command = [str(UNISHARD), "run", "--input", str(inputs), "--output", str(output), "--smoke-models"]

    code, stdout, screen = _on_terminal(command, tmp_path)

    assert code == 0, screen[-40:]
    paths = {str(output): "OUT"}
    assert _mask(screen, paths) == [
        "unishard: full run of 1 input on FnApiRunner into OUT; models: clip_smoke_tiny_vit (fp32, random weights: "
        "outputs not meaningful)",
        "[T] done: 6 items accounted in the ledger · R items/s",
    ]
    assert _mask(stdout, paths) == [
        "unishard: 6 items: 4 kept, 2 rejected, 0 failed in Ts -> OUT",
        "  rejected: exact_duplicate 1, not_an_image 1",
        "  shards: 1 (pairs 1), all valid",
        "  report: OUT/report/index.html",
    ]


def test_an_error_goes_to_stderr_alone_with_a_non_zero_exit(tmp_path):
    missing = tmp_path / "no-such-folder"
    done = subprocess.run(
        [str(UNISHARD), "run", "--input", str(missing), "--output", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [f"unishard: input {str(missing)!r} matches no file; check the path or pattern"]


@pytest.mark.parametrize("flag", ["--input", "--output"])
def test_a_folder_name_that_is_not_utf8_is_refused_before_the_run_naming_it(tmp_path, capsys, flag):
    odd = tmp_path / os.fsdecode(b"fotos-\xe9t\xe9")  # Latin-1 bytes: not UTF-8
    odd.mkdir()
    make_photo(120, 96, seed=0).save(odd / "photo.jpg")
    paths = {"--input": str(odd), "--output": str(tmp_path / "out")} | {flag: str(odd)}
    args = ["run", "--input", paths["--input"], "--output", paths["--output"], "--smoke-models"]

    assert cli.main(args) == 2

    error = capsys.readouterr().err
    assert "fotos-\\xe9t\\xe9' is not UTF-8 text" in error and "rename it" in error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "role, url, extra",
    [
        ("--output", "s3://my-bucket/curated", "aws"),
        ("--output", "gs://my-bucket/curated", "gcp"),
        ("--input", "gs://my-bucket/photos", "gcp"),
    ],
)
def test_an_object_store_without_its_beam_extra_is_refused_naming_the_extra(
    tmp_path, capsys, monkeypatch, role, url, extra
):
    """``--output s3://...`` ran into a local folder named ``s3:`` and said the run succeeded."""
    module = {"aws": "boto3", "gcp": "google.cloud.storage"}[extra]
    try:
        if importlib.util.find_spec(module) is not None:
            pytest.skip(f"Beam's {extra} extra is installed here")
    except ImportError:
        pass
    monkeypatch.chdir(tmp_path)
    make_photo(120, 96, seed=0).save(tmp_path / "photo.jpg")
    paths = {"--input": str(tmp_path / "photo.jpg"), "--output": str(tmp_path / "out")} | {role: url}
    args = ["run", "--input", paths["--input"], "--output", paths["--output"], "--smoke-models"]

    assert cli.main(args) == 1

    error = capsys.readouterr().err
    assert f"{role.removeprefix('--')} {url!r} is on {url[:5]}" in error
    assert f"pip install 'apache-beam[{extra}]'" in error
    assert sorted(path.name for path in tmp_path.iterdir()) == ["photo.jpg"]  # no local s3: folder, no output


def test_evaluation_leaks_stop_the_run_with_one_message_naming_why_the_copies_were_not_linked(tmp_path, capsys):
    """The leak check's stop printed Beam's ERROR line, a traceback and the pairs twice, and never said that near
    dedup, which would have linked the copies into one split, was off."""
    for i in range(16):
        photo = make_photo(160, 120, seed=40 + i)
        photo.save(tmp_path / f"a{i:02d}.png")
        photo.save(tmp_path / f"b{i:02d}.jpg", quality=90)
        for name in (f"a{i:02d}", f"b{i:02d}"):
            write_sidecar(tmp_path / f"{name}.png", title=f"panel {i}")
    args = ["run", "--input", str(tmp_path), "--output", str(tmp_path / "out"), "--smoke-models"]
    args += [
        "--set",
        "near_dedup.enabled=false",
        "--set",
        "exact_dedup.enabled=false",
        "--set",
        "quality.enabled=false",
    ]
    args += ["--set", "split.fractions={train = 0.5, test = 0.5}"]

    assert cli.main(args) == 1

    error = capsys.readouterr().err
    assert re.search(r"^unishard: \d+ evaluation leak\(s\): eval images duplicated in \['train'\]$", error, re.M), (
        error
    )
    assert "near_dedup is off in this run" in error and "nothing was committed" in error
    assert "Traceback" not in error and "ERROR apache_beam" not in error and "[while running" not in error
    assert error.count("evaluation leak(s)") == 1
    assert not (tmp_path / "out" / "shards").exists()


def test_config_schema_prints_only_the_schema():
    done = subprocess.run([str(UNISHARD), "config", "--schema"], capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0 and done.stderr == ""
    assert "clip" in json.loads(done.stdout)["properties"]


def _record(name: str, level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


STOP = "stop: photo.jpg changed content since it was written to /out"
FULL = "OSError: [Errno 28] No space left on device [while running 'WriteShards/Write/ParDo(_WriteShardFn)']"


@pytest.mark.parametrize(
    "level, shown",
    [
        (None, {"unishard info", "own warning", "beam error"}),
        (
            logging.INFO,
            {"unishard debug", "unishard info", "own info", "own warning", "beam info", "beam error", "pillow error"},
        ),
        (
            logging.DEBUG,
            {
                "unishard debug",
                "unishard info",
                "own info",
                "own warning",
                "beam info",
                "beam error",
                "pillow error",
                "This output type hint will be ignored and not used",
                STOP,
                FULL,
            },
        ),
        (logging.ERROR, {"beam error"}),
    ],
)
def test_the_console_lets_through_by_level_and_kind_of_logger(level, shown):
    root, ours = logging.getLogger(), logging.getLogger("unishard")
    saved = (list(root.handlers), root.level, ours.level)
    console.configure(level)
    try:
        handler = next(h for h in logging.getLogger().handlers if isinstance(h, console._Stderr))
        records = [
            _record("unishard", logging.DEBUG, "unishard debug"),
            _record("unishard", logging.INFO, "unishard info"),
            _record("transforms.clip_model", logging.INFO, "own info"),
            _record("transforms.documents", logging.WARNING, "own warning"),
            _record("apache_beam.runners.worker.statecache", logging.INFO, "beam info"),
            _record("apache_beam.runners", logging.ERROR, "beam error"),
            # a decoder's complaint about one input file, which the ledger records as that file's rejection
            _record("PIL.TiffImagePlugin", logging.ERROR, "pillow error"),
            _record("root", logging.WARNING, "apitools not found, and bigquery client libraries are not available"),
            _record("root", logging.WARNING, "This output type hint will be ignored and not used"),
            # the incremental job's expected stop, which the launcher explains in one line and turns into a rebuild
            _record("apache_beam.runners.common", logging.ERROR, STOP),
            # a worker's write finding its disk full, which the launcher explains with what to do
            _record("apache_beam.runners.common", logging.ERROR, FULL),
        ]
        assert {record.msg for record in records if handler.filter(record)} == shown
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        ours.setLevel(saved[2])
        logging.captureWarnings(False)


def test_a_worker_drops_the_harness_traceback_of_a_stop_the_launcher_explains_and_keeps_the_rest():
    """With worker processes (500 inputs and more), the rebuild after a changed file printed Beam's harness traceback
    (56 lines) above unishard's one-line warning; so did a full disk and an evaluation leak."""
    import io

    from pipeline.sdk_worker import QuietExplained

    explained = f"Traceback (most recent call last):\n  File ...\nRuntimeError: ChangedContent: a.jpg {CHANGED} /out\n"
    full = "Traceback (most recent call last):\n  File ...\nOSError: [Errno 28] No space left on device\n"
    other = "Traceback (most recent call last):\n  File ...\nZeroDivisionError: division by zero\n"
    stream = io.StringIO()
    quiet = QuietExplained(stream)
    for text in (explained, full, other):
        print(text, file=quiet)  # as Beam's sdk_worker prints it: the text, then its own newline
    print("a worker's log line", file=quiet)
    assert stream.getvalue() == other + "\n" + "a worker's log line\n"


def test_unishard_s_warnings_read_as_its_own_lines_with_the_level_and_others_keep_their_logger():
    """A warning printed "WARNING unishard: unishard: 1 kept samples' files...", the name twice."""
    formatted = console._Format().format
    assert formatted(_record("unishard", logging.INFO, "unishard: 3 items")) == "unishard: 3 items"
    assert formatted(_record("unishard", logging.WARNING, "unishard: left x")) == "unishard: warning: left x"
    assert formatted(_record("unishard", logging.WARNING, "a.jpg changed")) == "unishard: warning: a.jpg changed"
    assert formatted(_record("transforms.documents", logging.WARNING, "own")) == "WARNING transforms.documents: own"


def test_verbosity_flags_come_out_of_the_arguments_wherever_they_are():
    assert console.split_verbosity(["run", "x.toml", "-v", "--runner=FnApiRunner"]) == (
        ["run", "x.toml", "--runner=FnApiRunner"],
        logging.INFO,
    )
    assert console.split_verbosity(["-vv", "run"]) == (["run"], logging.DEBUG)
    assert console.split_verbosity(["run", "--log-level", "warning"]) == (["run"], logging.WARNING)
    assert console.split_verbosity(["run", "--log-level=ERROR", "-v"]) == (["run"], logging.ERROR)
    assert console.split_verbosity(["run"]) == (["run"], None)
    with pytest.raises(ValueError, match="--log-level takes one of DEBUG, INFO, WARNING, ERROR, not 'loud'"):
        console.split_verbosity(["--log-level", "loud"])


def test_workers_get_a_chosen_log_level_unless_the_command_line_sets_theirs():
    assert console.beam_log_args(["--runner=FnApiRunner"], None) == ["--runner=FnApiRunner"]
    assert console.beam_log_args([], logging.INFO) == ["--default_sdk_harness_log_level=INFO"]
    given = ["--default_sdk_harness_log_level=DEBUG"]
    assert console.beam_log_args(given, logging.ERROR) == given


def test_summary_names_top_reasons_shards_validation_and_report(tmp_path):
    counts = {
        "items": 20,
        "by_status": {"kept": 12, "rejected": 7, "failed": 1},
        "by_reason": {
            "kept/write_shards": 12,
            "rejected/exact_dedup/exact_duplicate": 3,
            "rejected/normalise/truncated": 1,
            "rejected/ingest/missing_file": 1,
            "rejected/clip_filter/low_clip_score": 1,
            "rejected/near_dedup/near_duplicate": 1,
            "rejected/safety/unsafe_text": 1,
            "failed/normalise/error": 1,
        },
    }
    assert console.summary_lines("/o", counts, 3.14, None) == [
        "unishard: 20 items: 12 kept, 7 rejected, 1 failed in 3.1s -> /o",
        "  rejected: exact_duplicate 3, low_clip_score 1, missing_file 1, near_duplicate 1, truncated 1 "
        "(+1 more reasons)",
        "  failed: error 1",
        "  report: not written by this run; `unishard report OUT` writes it and validates the shards",
    ]


def test_a_run_whose_photos_have_no_text_says_how_to_keep_them(tmp_path):
    inputs = tmp_path / "photos"
    inputs.mkdir()
    for seed in range(3):
        make_photo(120, 96, seed=seed).save(inputs / f"photo-{seed}.jpg")
    write_sidecar(inputs / "photo-0.jpg", title="the one photo with a title")
    command = [str(UNISHARD), "run", "--input", str(inputs), "--output", str(tmp_path / "out"), "--smoke-models"]

    done = subprocess.run(
        command, capture_output=True, text=True, timeout=TIMEOUT_S, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )

    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[1] == "  rejected: no_text 2"
    assert lines[2] == (
        "  hint: 2 of 3 items have no text in the fields text.fields names (from a same-stem .txt or .json sidecar, "
        "manifest column, folder metadata.csv row, tar caption, interleaved document's alt_text or matched sentence, "
        "or title or caption embedded in the file); the ledger's detail names other keys that hold words. Give them "
        "text (name such a key: --set 'text.fields=[\"KEY\"]'; class folders such as scratches/ give their name "
        "with --set ingest.folder_field=label), let the captioner write it (--set caption.captioner.enabled=true), "
        "or keep images without it: --set text.required=false --set caption.required=false"
    )
    fewer = {"items": 3, "by_status": {"rejected": 1}, "by_reason": {"rejected/text/no_text": 1}}
    assert not any("hint" in line for line in console.summary_lines("/o", fewer, 1.0, None))
    outside = {"items": 4, "by_status": {"rejected": 4}, "by_reason": {"rejected/ingest/outside_root": 4}}
    (hint,) = [line for line in console.summary_lines("/o", outside, 1.0, None) if "hint" in line]
    assert hint.startswith("  hint: 4 of 4 items lie outside their input's folder") and "roots" in hint


def test_ctrl_c_ends_the_command_with_one_line_and_exit_130_not_a_traceback(monkeypatch, capsys):
    from pipeline import cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "main", interrupted)
    monkeypatch.setattr(sys, "argv", ["unishard", "run", "--input", "in", "--output", "out"])
    with pytest.raises(SystemExit) as raised:
        cli.entry()
    assert raised.value.code == 130
    error = capsys.readouterr().err
    assert error.startswith("unishard: interrupted; nothing new was committed") and "Traceback" not in error
