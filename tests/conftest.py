"""Shared fixtures: generated images, a one-call pipeline run, and readers for the ledger and shards."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
from apache_beam.io.filesystems import FileSystems  # noqa: E402
from apache_beam.runners.direct import direct_runner  # noqa: E402
from apache_beam.runners.portability.fn_api_runner import FnApiRunner  # noqa: E402

from tests.helpers import make_photo, run_job  # noqa: E402

# Pipelines built in tests without a runner run on the FnApiRunner, the engine the CLI maps DirectRunner to
# (pipeline.profiles). Beam's own DirectRunner first tries Prism, which downloads a binary at submit time: offline
# that fails after about 0.35 s and leaves an empty beam-temp folder in /tmp, once per pipeline.
direct_runner.DirectRunner = FnApiRunner


@pytest.fixture
def photo():
    """A function returning a deterministic natural-looking RGB test picture of a given size and seed."""
    return make_photo


@pytest.fixture
def run(tmp_path):
    """Run the real pipeline on the DirectRunner: ``run(inputs, **config_sections) -> Output``."""

    def _run(inputs, *, beam_args=(), output=None, rebuild=False, **sections):
        return run_job(inputs, output or tmp_path / "out", beam_args=list(beam_args), rebuild=rebuild, **sections)

    return _run


@pytest.fixture
def flaky(monkeypatch):
    """``FileSystems.open`` failing the first ``failures[name]`` opens of a file name; no sleeping between tries."""
    failures: dict[str, int] = {}
    real_open = FileSystems.open

    def unreliable_open(path, *args, **kwargs):
        name = path.rsplit("/", 1)[-1]
        if failures.get(name, 0) > 0:
            failures[name] -= 1
            raise OSError(5, "Input/output error (simulated)", path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(FileSystems, "open", staticmethod(unreliable_open))
    monkeypatch.setattr("transforms._reading.time.sleep", lambda seconds: None)
    return failures
