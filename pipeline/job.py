"""Submit a Beam job and follow it to its end: ``run_job`` raises ``RunError`` for a job that could not be submitted,
failed or was cancelled, and cancels a cluster job on Ctrl-C.

Beam's portable runners give the job's state stream the ``--job_server_timeout`` deadline; past it, ``poll_state``
follows the job by polling every ``POLL_SECONDS``.
"""

import contextlib
import logging
import re
import tempfile
import threading
import time
from collections.abc import Iterator

import apache_beam as beam
import grpc
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PortableOptions, StandardOptions
from apache_beam.runners.runner import PipelineResult, PipelineState

_LOG = logging.getLogger("unishard")
POLL_SECONDS = 10
MESSAGE_READER = "wait_until_finish_read"  # the name of the thread in which Beam's portable runner reads job messages
# How an OSError of a full disk or quota reads in a runner's error text (Beam passes the worker's error on as text).
STORAGE_FULL = ("[Errno 28]", "[Errno 122]")


class RunError(RuntimeError):
    """A run that cannot start or did not finish; the message says what to do.

    Attributes:
        staging: The staging folder of a job that failed (``None`` before any job ran).
    """

    staging: str | None = None


def _short(error: BaseException, keep: int = 25) -> str:
    lines = f"{type(error).__name__}: {error}".strip().rstrip(":").splitlines()
    return "\n".join(lines if len(lines) <= keep else [*lines[:5], "  ...", *lines[5 - keep :]])


def _deadline_exceeded(error: BaseException) -> bool:
    return isinstance(error, grpc.RpcError) and error.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def own_stop(message: str) -> str:
    """The message of a stop a stage raised on purpose to speak to a person (evaluation leaks with
    ``eval_set.fail_on_leak``), without the runner's traceback and step name; ``""`` for any other failure."""
    from transforms._leaks import LEAKS_FOUND

    lines = message.splitlines()
    start = next((i for i in reversed(range(len(lines))) if LEAKS_FOUND in lines[i]), None)
    if start is None:
        return ""
    text = "\n".join(lines[start:])
    text = re.sub(r" \[while running '[^']*'\]$", "", text.rstrip())
    return re.sub(r"^(?:\w+: )*(?:[\w.]+Error: )", "", text)


def _output_of(staging: str) -> str:
    """The output folder of a staging folder ``OUT/_staging/<run id>``."""
    return staging.rstrip("/").rsplit("/", 2)[0]


def storage_full(message: str) -> bool:
    """Whether a runner's error text is a write that found its disk full or its quota spent."""
    return any(code in message for code in STORAGE_FULL)


def _exists(path: str) -> bool:
    try:
        return FileSystems.exists(path)
    except Exception:  # noqa: BLE001 - an unreachable store: say nothing about it rather than fail the message
        return False


@contextlib.contextmanager
def _quiet_message_reader() -> Iterator[None]:
    """Keep the traceback of Beam's message-reading thread off the console when its stream reaches
    ``--job_server_timeout``: the job runs on, ``poll_state`` follows it, and the console says so in one line."""
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.thread is not None and args.thread.name == MESSAGE_READER and _deadline_exceeded(args.exc_value):
            _LOG.debug("unishard: Beam's job message stream reached its deadline: %s", args.exc_value)
            return
        previous(args)

    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = previous


def poll_state(result: PipelineResult, runner: str) -> str:
    """Follow a job by polling its state until it ends; return the final state.

    Beam's portable runners (PortableRunner, FlinkRunner, SparkRunner) give the job's state and message streams the
    ``--job_server_timeout`` deadline, so the driver loses them after that long while the job runs on.
    """
    _LOG.info("unishard: the job's state stream reached --job_server_timeout; polling the job state instead")
    seen = None
    while True:
        state = result.state
        if state != seen:
            _LOG.info("unishard: job on %s: state %s", runner, state)
            seen = state
        if PipelineState.is_terminal(state):
            return state
        time.sleep(POLL_SECONDS)


def _chatter(runner: str) -> int:
    """The level of job state lines: INFO where the job runs elsewhere (a cluster), DEBUG (``-v``) for a local one."""
    return logging.DEBUG if runner in StandardOptions.LOCAL_RUNNERS else logging.INFO


def run_job(pipeline: beam.Pipeline, runner: str, staging: str, output: str = "") -> None:
    """Submit the job, report its state, and wait for it to finish; a failed or cancelled job raises ``RunError``,
    which says what to do where a disk of ``output`` (by default the folder holding ``OUT/_staging/``) or the
    temporary folder was full.

    Ctrl-C cancels a job still running on a cluster, so it does not run on unattended.
    """
    result = None
    try:
        try:
            result = pipeline.run()
        except Exception as error:
            if runner in StandardOptions.LOCAL_RUNNERS:
                raise  # a local runner runs the whole job inside run()
            endpoint = pipeline.options.view_as(PortableOptions).job_endpoint
            raise RunError(
                f"could not submit the job to {runner}{f' at {endpoint}' if endpoint else ''}: {_short(error)}\n"
                "Check that the runner's service is up and answers within --job_server_timeout, and its address "
                "options (--job_endpoint, --flink_master, --spark_master_url, --project, --region)"
            ) from error
        _LOG.log(_chatter(runner), "unishard: job submitted to %s; state %s", runner, result.state)
        with _quiet_message_reader():
            try:
                state = result.wait_until_finish()
            except Exception as error:
                if not _deadline_exceeded(error):
                    raise
                state = poll_state(result, runner)
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            if result is not None and not PipelineState.is_terminal(result.state):
                _LOG.warning("unishard: interrupted; cancelling the job on %s", runner)
                result.cancel()
        raise
    except RunError:
        raise
    except Exception as error:
        partial = f"the partial output is in {staging}" if _exists(staging) else "the job wrote no output"
        if stop := own_stop(str(error)):
            raise RunError(f"{stop}\nThe partial output is in {staging}") from error
        summary, advice = _short(error), "The runner's log above names the failing step"
        if storage_full(str(error)):
            summary = next(line for line in reversed(str(error).splitlines()) if storage_full(line))
            folder = output or _output_of(staging)
            advice = (
                f"A disk is full: free space on the disk of the output folder ({folder}) or of the temporary folder "
                f"({tempfile.gettempdir()}), or give --output on a larger disk, then run the same command again"
            )
        raise RunError(
            f"the Beam job failed on {runner}: {summary}\nNothing was committed; {partial}. {advice}"
        ) from error
    _LOG.log(_chatter(runner), "unishard: job finished on %s; state %s", runner, state)
    if state not in (PipelineState.DONE, None):
        raise RunError(f"the Beam job ended in state {state}; see the runner's log above for the failing step")
