"""Crash safety: a run killed with SIGKILL at any point leaves no partial file under a final name, and rerunning
the same command gives output byte-identical to an uninterrupted run.

The kill is a real SIGKILL of the real ``unishard run`` process, delivered by the process itself at a named point
(``UNISHARD_KILL_AT``), so each phase is hit exactly: while ingest reads, while a shard or the ledger is written,
before and in the middle of the final commit, in the middle of the next run's recovery of that commit, and in a
worker process rather than the driver.
"""

import os
import signal
import subprocess
import sys

import pytest

from tests.helpers import RUN_SPECIFIC, write_sidecar

POINTS = ["read:photo3.jpg", "write:shard-000000.tar", "write:part-00000.parquet", "commit:0", "commit:4"]


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    from tests.helpers import make_photo

    root = tmp_path_factory.mktemp("crash")
    inputs = root / "in"
    inputs.mkdir()
    for seed in range(6):
        path = inputs / f"photo{seed}.jpg"
        make_photo(200, 150, seed=seed).save(path, quality=90)
        write_sidecar(path, title=f"photo {seed}", domain="marketing")

    def command(output):
        return [
            sys.executable, "-m", "pipeline", "run", "--input", str(inputs), "--output", str(output),
            "--set", "clip.smoke=true", "--set", "shards.samples_per_shard=2", "--no-report", "--no-progress",
            "--runner=DirectRunner",
        ]  # fmt: skip

    reference = root / "reference"
    subprocess.run(command(reference), check=True, capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return root, command, _files(reference)


def _files(output):
    return {
        str(path.relative_to(output)): path.read_bytes()
        for path in sorted(output.rglob("*"))
        if path.is_file() and not str(path.relative_to(output)).startswith((*RUN_SPECIFIC, "_staging", "_lock"))
    }


@pytest.mark.parametrize("point", POINTS)
def test_a_killed_run_reruns_to_identical_output(job, point):
    root, command, reference = job
    output = root / point.replace(":", "-")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    killed = subprocess.run(command(output), capture_output=True, text=True, env={**env, "UNISHARD_KILL_AT": point})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]

    visible = _files(output)
    assert all(".tmp-" not in name for name in visible)
    for name, data in visible.items():  # whatever is visible is complete and final
        assert reference.get(name) == data, name
    if not point.startswith("commit:") or point == "commit:0":
        assert not any(name.startswith(("shards/", "ledger/")) for name in visible)

    rerun = subprocess.run(command(output), capture_output=True, text=True, env=env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert _files(output) == reference
    assert not (output / "_staging").exists()


def test_a_run_killed_while_recovering_a_killed_commit_still_reruns_to_identical_output(job):
    root, command, reference = job
    output = root / "killed-twice"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    first = subprocess.run(
        command(output), capture_output=True, text=True, env={**env, "UNISHARD_KILL_AT": "commit:4"}
    )
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    # The next run finishes the interrupted commit first (the same numbered steps): kill it half-way through that.
    second = subprocess.run(
        command(output), capture_output=True, text=True, env={**env, "UNISHARD_KILL_AT": "commit:2"}
    )
    assert second.returncode == -signal.SIGKILL, second.stderr[-2000:]
    assert all(".tmp-" not in name for name in _files(output))

    rerun = subprocess.run(command(output), capture_output=True, text=True, env=env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert _files(output) == reference
    assert not (output / "_staging").exists()


@pytest.mark.slow
def test_a_killed_worker_process_fails_the_run_and_the_rerun_is_identical(job):
    root, command, reference = job
    output = root / "killed-worker"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    workers = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    # Shards are written by the SDK worker processes: the kill takes one of them, not the driver.
    killed = subprocess.run(
        command(output) + workers,
        capture_output=True,
        text=True,
        env={**env, "UNISHARD_KILL_AT": "write:shard-000000.tar"},
    )
    assert killed.returncode == 1, killed.stderr[-3000:]
    assert "Nothing was committed" in killed.stderr
    assert not any(name.startswith(("shards/", "ledger/")) for name in _files(output))

    rerun = subprocess.run(command(output) + workers, capture_output=True, text=True, env=env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert _files(output) == reference


def test_a_report_written_during_an_interrupted_commit_is_written_again_by_the_run_that_finishes_it(job):
    """The report of a half-committed output (missing shards) stayed, naming problems that no longer existed, since a
    rerun that finds nothing new writes a report only where there is none."""
    import json

    root, command, reference = job
    output = root / "report-during-commit"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    killed = subprocess.run(command(output), capture_output=True, env={**env, "UNISHARD_KILL_AT": "commit:4"})
    assert killed.returncode == -signal.SIGKILL
    unishard = [sys.executable, "-m", "pipeline"]
    validate = subprocess.run([*unishard, "validate", str(output)], capture_output=True, text=True)
    assert validate.returncode == 1 and "an interrupted commit is pending" in validate.stdout
    subprocess.run([*unishard, "report", str(output)], capture_output=True, env=env)
    assert json.loads((output / "report" / "report.json").read_text())["validation"]["problems"]

    rerun = subprocess.run([arg for arg in command(output) if arg != "--no-report"], capture_output=True, env=env)

    assert rerun.returncode == 0 and _files(output) == reference
    validation = json.loads((output / "report" / "report.json").read_text())["validation"]
    assert validation["problems"] == [] and all(not shard["problems"] for shard in validation["shards"])
