"""A real cluster-style submission: Beam's job service and a worker pool run as separate processes on loopback, and
``unishard run --profile portable`` with an EXTERNAL environment writes the same bytes as the in-process runner.

The services get port 0 and report the port they bound, so two runs of this test never collide. The project's
virtual environment comes first on PATH because the pool starts workers with the first ``python`` there.
"""

import contextlib
import dataclasses
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import apache_beam as beam
import grpc
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineState

from pipeline import cli
from pipeline.job import MESSAGE_READER, RunError, run_job
from pipeline.profiles import resolve_options
from tests.helpers import Output, jpeg_bytes, make_photo, write_sidecar

pytestmark = pytest.mark.slow

VENV_BIN = Path(sys.executable).parent
START_TIMEOUT_S = 120
JOB_TIMEOUT_S = 300
POOL_ADDRESS = re.compile(r"Started worker pool servicer at port: (\S+:\d+)")


@dataclasses.dataclass
class Services:
    job_endpoint: str
    pool_address: str
    env: dict[str, str]
    logs: dict[str, Path]

    def log(self, name: str) -> str:
        return self.logs[name].read_text(encoding="utf-8", errors="replace")


def _start(command: list[str], log: Path, env: dict[str, str], cwd: Path) -> subprocess.Popen:
    with log.open("wb") as handle:
        # Own process group: stopping the group also stops the workers the pool started.
        return subprocess.Popen(
            command, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
        )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_for(what: str, found, processes: dict[str, subprocess.Popen], logs: dict[str, Path]):
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        for name, process in processes.items():
            if process.poll() is not None:
                pytest.fail(f"{name} exited with {process.returncode} before {what}:\n{logs[name].read_text()}")
        time.sleep(0.2)
    pytest.fail(f"no {what} after {START_TIMEOUT_S}s")


@contextlib.contextmanager
def _running(work: Path, path_first: Path, job_service_flags: tuple[str, ...] = ()) -> Iterator[Services]:
    """Beam's Python job service and an external worker pool, each in its own process, stopped by pid at the end.

    ``path_first`` leads PATH: the pool starts workers with the first ``python`` there.
    """
    temp = work / "tmp"
    temp.mkdir()
    env = dict(os.environ, PATH=f"{path_first}{os.pathsep}{os.environ.get('PATH', '')}", TMPDIR=str(temp))
    env.setdefault("HF_HUB_OFFLINE", "1")
    port_file = work / "job.port"
    logs = {"job service": work / "job_service.log", "worker pool": work / "worker_pool.log"}
    python = str(VENV_BIN / "python")
    processes = {
        "job service": _start(
            [python, "-m", "pipeline.job_service", "--port=0", f"--port_file={port_file}", *job_service_flags],
            logs["job service"],
            env,
            work,
        ),
        "worker pool": _start(
            [python, "-m", "apache_beam.runners.worker.worker_pool_main", "--service_port=0"],
            logs["worker pool"],
            env,
            work,
        ),
    }
    try:
        port = _wait_for(
            "job service port", lambda: port_file.exists() and port_file.read_text().strip(), processes, logs
        )
        pool = _wait_for(
            "worker pool address",
            lambda: (match := POOL_ADDRESS.search(logs["worker pool"].read_text())) and match.group(1),
            processes,
            logs,
        )
        yield Services(job_endpoint=f"localhost:{port}", pool_address=pool, env=env, logs=logs)
    finally:
        for process in processes.values():
            _stop(process)
        for leftover in temp.glob("beam-*"):
            shutil.rmtree(leftover, ignore_errors=True)


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    """The job service and worker pool from the project's environment."""
    with _running(tmp_path_factory.mktemp("portable"), VENV_BIN) as running:
        yield running


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """Inputs with rejections and duplicates, and a config that makes several shards and ledger parts."""
    root = tmp_path_factory.mktemp("job")
    images = root / "images"
    images.mkdir()
    for seed in range(9):
        path = images / f"photo{seed}.jpg"
        path.write_bytes(jpeg_bytes(make_photo(seed=seed), quality=90))
        write_sidecar(path, title=f"product photo {seed}", domain="marketing" if seed % 2 else "factory")
    (images / "copy.jpg").write_bytes((images / "photo3.jpg").read_bytes())
    write_sidecar(images / "copy.jpg", title="the same photo again")
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (images / "empty.jpg").write_bytes(b"")
    config = root / "job.toml"
    config.write_text(
        f'[run]\noutput = "out"\n[[ingest.inputs]]\npath = "{images}"\n'
        "[shards]\nsamples_per_shard = 3\nledger_rows_per_part = 4\n"
        # The seeded random small CLIP: offline, and identical in every worker process.
        "[clip]\nsmoke = true\n",
        encoding="utf-8",
    )
    return config


def _snapshot(output: Path) -> dict[str, bytes]:
    files = Output(path=output, summary=None).file_bytes()
    files["_run/config.json"] = (output / "_run" / "config.json").read_bytes()
    return files


@pytest.fixture(scope="module")
def direct_output(job):
    output = job.parent / "out"
    assert cli.main(["run", str(job), "--profile", "direct"]) == 0
    files = _snapshot(output)
    shutil.rmtree(output)
    return files


@pytest.fixture(scope="module")
def portable_run(job, services, direct_output):
    output = job.parent / "out"
    command = [str(VENV_BIN / "unishard"), "run", str(job), "--profile", "portable"]
    command += [f"--job_endpoint={services.job_endpoint}", f"--environment_config={services.pool_address}"]
    # Short enough to fail fast without a service, and shorter than the job: Beam then drops the job's state
    # stream and the driver follows the job by polling.
    command += ["--job_server_timeout=10"]
    done = subprocess.run(
        command, env=services.env, cwd=job.parent, capture_output=True, text=True, timeout=JOB_TIMEOUT_S
    )
    assert done.returncode == 0, f"{done.stderr[-4000:]}\n--- worker pool ---\n{services.log('worker pool')[-4000:]}"
    return done, _snapshot(output)


def test_portable_output_is_byte_identical_to_the_in_process_runner(direct_output, portable_run):
    _, portable_output = portable_run
    assert sorted(portable_output) == sorted(direct_output)
    assert [name for name in sorted(direct_output) if direct_output[name] != portable_output[name]] == []
    kinds = {Path(name).suffix for name in direct_output}
    assert {".tar", ".parquet", ".json"} <= kinds
    assert sum(name.startswith("ledger/") for name in direct_output) > 1
    assert sum(name.endswith(".tar") for name in direct_output) > 1


def test_portable_job_ran_in_pool_workers_and_reported_its_state(services, portable_run):
    done, _ = portable_run
    assert "Starting worker with command" in services.log("worker pool")
    assert "job submitted to PortableRunner" in done.stderr
    assert "job finished on PortableRunner; state DONE" in done.stderr
    assert re.search(r"12 items: \d+ kept, \d+ rejected, 0 failed", done.stdout)


def _failing_pipeline(args: list[str]) -> beam.Pipeline:
    options = PipelineOptions(args)
    pipeline = beam.Pipeline(runner=resolve_options(options), options=options)
    _ = pipeline | beam.Create([1, 2]) | "Explode" >> beam.Map(_explode)
    return pipeline


def _explode(value: int) -> int:
    raise ValueError(f"cannot handle {value}")


def test_a_missing_job_service_fails_fast_with_a_clear_message():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    args = ["--runner=PortableRunner", f"--job_endpoint=localhost:{free_port}", "--job_server_timeout=2"]
    args += ["--environment_type=EXTERNAL", "--environment_config=localhost:1"]
    with pytest.raises(RunError, match=f"could not submit the job to PortableRunner at localhost:{free_port}"):
        run_job(_failing_pipeline(args), "PortableRunner", "STAGING")


def _portable_run(job: Path, work: Path, services: Services, pool: str) -> subprocess.CompletedProcess:
    """``unishard run`` of ``job`` into ``work/out`` on the portable profile, its workers from ``pool``."""
    command = [str(VENV_BIN / "unishard"), "run", str(job), "--profile", "portable"]
    command += ["--output", str(work / "out"), f"--job_endpoint={services.job_endpoint}"]
    command += [f"--environment_config={pool}"]
    return subprocess.run(command, env=services.env, cwd=work, capture_output=True, text=True, timeout=JOB_TIMEOUT_S)


def test_a_pool_whose_workers_cannot_start_fails_the_run_instead_of_waiting(job, tmp_path):
    """The pool's first ``python`` on PATH cannot run a worker: the run exits 1 after the job service's bound."""
    broken = tmp_path / "broken-bin"
    broken.mkdir()
    (broken / "python").write_text("#!/bin/sh\necho 'this environment has no Beam' >&2\nexit 1\n")
    (broken / "python").chmod(0o755)
    with _running(tmp_path, broken, ("--worker_start_timeout=3",)) as running:
        # Without the bound the driver would follow a job that never ends: the timeout fails the test instead.
        done = _portable_run(job, tmp_path, running, running.pool_address)
    assert done.returncode == 1, done.stderr[-4000:]
    assert f"no SDK worker connected within 3 s after the worker pool at {running.pool_address}" in done.stderr
    assert "first `python` on its PATH" in done.stderr and "Nothing was committed" in done.stderr
    assert "this environment has no Beam" in running.log("worker pool")
    assert not (tmp_path / "out" / "ledger").exists()


def test_no_pool_at_the_given_address_fails_the_run_with_a_message_naming_it(job, services, tmp_path):
    """Nothing listened at --environment_config: the run failed with gRPC tracebacks that never said so."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    done = _portable_run(job, tmp_path, services, f"localhost:{free_port}")
    assert done.returncode == 1, done.stderr[-4000:]
    assert f"no worker pool answers at localhost:{free_port}" in done.stderr and "Nothing was committed" in done.stderr
    assert not (tmp_path / "out" / "ledger").exists()


def test_a_failing_job_raises_a_run_error_naming_the_error_and_the_staging_folder(tmp_path):
    with pytest.raises(RunError) as error:
        run_job(_failing_pipeline([]), "FnApiRunner", str(tmp_path))
    message = str(error.value)
    assert message.startswith("the Beam job failed on FnApiRunner: ")
    assert "cannot handle" in message
    assert "Explode" in message
    assert f"Nothing was committed; the partial output is in {tmp_path}" in message
    # a job that failed before writing anything: no folder to point at (it named one that did not exist)
    with pytest.raises(RunError, match="Nothing was committed; the job wrote no output"):
        run_job(_failing_pipeline([]), "FnApiRunner", str(tmp_path / "_staging" / "abc"))


class _StreamDeadline(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.DEADLINE_EXCEEDED


class _LongJob:
    """A portable job result whose state stream hit its deadline while the job ran on, then finished."""

    def __init__(self, states: list[str]):
        self._states = iter(states)

    @property
    def state(self) -> str:
        return next(self._states)

    def wait_until_finish(self) -> str:
        # Beam's reader thread dies on the same deadline; its traceback reached the console
        reader = threading.Thread(target=_raise_deadline, name=MESSAGE_READER)
        reader.start()
        reader.join()
        raise _StreamDeadline()


def _raise_deadline() -> None:
    raise _StreamDeadline()


class _Submitted:
    def __init__(self, result: _LongJob):
        self.result = result
        self.options = PipelineOptions([])

    def run(self) -> _LongJob:
        return self.result


def test_a_job_outliving_the_job_server_timeout_is_followed_by_polling(caplog, monkeypatch):
    monkeypatch.setattr("pipeline.job.POLL_SECONDS", 0)
    shown = []  # what Python's thread-exception hook (which prints "Exception in thread ...") received
    monkeypatch.setattr(threading, "excepthook", lambda args: shown.append(args.thread.name))
    job = _LongJob([PipelineState.RUNNING, PipelineState.RUNNING, PipelineState.RUNNING, PipelineState.DONE])
    with caplog.at_level(logging.INFO, logger="unishard"):
        run_job(_Submitted(job), "PortableRunner", "STAGING")
    assert "polling the job state instead" in caplog.text
    assert "state DONE" in caplog.text
    assert shown == [], "the reader's deadline traceback reached the console"
    broken = threading.Thread(target=_raise_deadline, name="another_thread")
    broken.start()
    broken.join()
    assert shown == ["another_thread"], "other threads' errors still show"


def test_a_job_failing_after_the_stream_deadline_raises_a_run_error(monkeypatch):
    monkeypatch.setattr("pipeline.job.POLL_SECONDS", 0)
    job = _LongJob([PipelineState.RUNNING, PipelineState.RUNNING, PipelineState.FAILED])
    with pytest.raises(RunError, match="ended in state FAILED"):
        run_job(_Submitted(job), "FlinkRunner", "STAGING")
