"""Beam's local Python job service, with the FnApiRunner's data-channel race closed and a bounded wait for workers.

``python -m pipeline.job_service --port=8099`` takes the same flags as
``python -m apache_beam.runners.portability.local_job_service_main`` and runs it after ``close_flush_race``
(and ``pipeline.dofn_specs``): the job service runs each job on an FnApiRunner that sends bundles to SDK workers over
gRPC, where Beam 2.77 can drop elements (see ``pipeline.profiles.close_flush_race``). Use it instead of Beam's module
for the ``portable`` profile.

One flag of its own, ``--worker_start_timeout=SECONDS`` (default ``WORKER_START_TIMEOUT_S``): with an EXTERNAL
environment (a worker pool), Beam asks the pool to start a worker and then waits for that worker to connect, with no
limit. A pool whose workers cannot start (the first ``python`` on its PATH lacks Beam, a broken environment) left the
job, and the ``unishard run`` that submitted it, waiting forever. ``bound_worker_start`` fails the job instead, with a
message that names the pool and what to check; the driver reports it and exits 1. Beam's Docker environment does the
same for a container that exits.
"""

import argparse
import functools
import sys
import threading
import time

import grpc
from apache_beam.portability.api import beam_fn_api_pb2
from apache_beam.runners.portability import local_job_service_main
from apache_beam.runners.portability.fn_api_runner import worker_handlers

from pipeline.dofn_specs import cache_dofn_specs
from pipeline.profiles import close_flush_race

# Long enough for a worker that installs staged packages when it starts; a worker pool started from the project's
# environment connects within seconds.
WORKER_START_TIMEOUT_S = 300.0
_POLL_S = 0.2


def bound_worker_start(timeout: float) -> None:
    """Fail a job whose pool worker has not connected ``timeout`` seconds after the pool was asked to start it."""
    handler = worker_handlers.ExternalWorkerHandler
    start = getattr(handler.start_worker, "__wrapped__", handler.start_worker)

    @functools.wraps(start)
    def start_worker(self) -> None:
        try:
            start(self)
        except grpc.RpcError as error:  # nothing answers at the pool's address: a bare gRPC traceback said only that
            raise RuntimeError(no_pool(self._external_payload.endpoint.url, error)) from None
        threading.Thread(target=_watch, args=(self, timeout), name="unishard-worker-start", daemon=True).start()

    handler.start_worker = start_worker


def _watch(handler, timeout: float) -> None:
    """Fail the worker's pending instructions while it has not connected after ``timeout`` (until it is closed).

    Each pending instruction gets the response a worker sends for an instruction it failed, so the runner raises
    the message as the job's error wherever it waits (for a bundle's data or for the instruction itself).
    """
    unstarted = worker_handlers.BeamFnControlServicer.UNSTARTED_STATE
    deadline = time.monotonic() + timeout
    connection = handler.control_conn
    while connection._state == unstarted:
        if time.monotonic() >= deadline:
            # Instructions pushed later would wait again, so keep answering until the runner closes the handler.
            message = not_connected(handler._external_payload.endpoint.url, timeout)
            for instruction, future in list(connection._futures_by_id.items()):
                if not future.is_done():
                    future.set(beam_fn_api_pb2.InstructionResponse(instruction_id=instruction, error=message))
        time.sleep(_POLL_S)


def no_pool(pool: str, error: grpc.RpcError) -> str:
    code = error.code().name if hasattr(error, "code") else type(error).__name__
    return (
        f"no worker pool answers at {pool} ({code}), the address --environment_config gives: start one there from the "
        "project's environment (`python -m apache_beam.runners.worker.worker_pool_main --service_port=PORT`; "
        "runners/README.md, 'portable') or correct --environment_config"
    )


def not_connected(pool: str, timeout: float) -> str:
    return (
        f"no SDK worker connected within {timeout:.0f} s after the worker pool at {pool} was asked to start one. "
        "The pool starts workers with the first `python` on its PATH: start the pool from the project's environment "
        "(source .venv/bin/activate first; runners/README.md, 'portable'), and read the pool's log for the worker's "
        "own error. A worker that needs longer to start: raise `--worker_start_timeout` of `python -m "
        "pipeline.job_service`."
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--worker_start_timeout", type=float, default=WORKER_START_TIMEOUT_S)
    ours, beams = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    close_flush_race()
    cache_dofn_specs()
    bound_worker_start(ours.worker_start_timeout)
    local_job_service_main.run(beams)


if __name__ == "__main__":
    main()
