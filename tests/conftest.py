"""Shared fixtures: generated images, a one-call pipeline run, and readers for the ledger and shards."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from tests.helpers import make_photo, run_job  # noqa: E402


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
