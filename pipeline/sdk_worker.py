"""Worker processes of the local multi-process runner, started with unishard's console logging.

Beam's FnApiRunner (``--direct_running_mode=multi_processing``) starts each SDK worker as ``python -m
apache_beam.runners.worker.sdk_worker_main`` and hands it no pipeline options: ``--default_sdk_harness_log_level``
never reaches it, and every worker prints Beam's import-time apitools warning and its INFO lines on the console.
``local_runner`` returns an FnApiRunner whose workers start as ``python -m pipeline.sdk_worker`` and receive the
worker log options (``WORKER_OPTIONS``). Run as a program, this module sets up logging with ``pipeline.console`` at
the level those options name, before Beam is imported, then runs Beam's worker unchanged, and ends the process as
soon as the worker returns (the runner stops its workers one after another, each waiting out the interpreter's
teardown: some 3 s a worker).
"""

import json
import logging
import os
import signal
import sys
from typing import Any

from pipeline import console
from pipeline.dofn_specs import cache_dofn_specs

WORKER_OPTIONS = ("default_sdk_harness_log_level", "sdk_harness_log_level_overrides")
COMMAND = "-m pipeline.sdk_worker"


def local_runner(runner: str, options: Any) -> Any:
    """The runner for ``beam.Pipeline(runner=...)``: the FnApiRunner above for worker processes, else ``None``.

    ``None`` lets Beam create ``runner`` from the options as usual.
    """
    from apache_beam.options.pipeline_options import DirectOptions
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from apache_beam.runners.portability.fn_api_runner.fn_runner import ExtendedProvisionInfo
    from apache_beam.transforms import environments
    from google.protobuf import struct_pb2

    if runner != "FnApiRunner" or options.view_as(DirectOptions).direct_running_mode != "multi_processing":
        return None

    class _FnApiRunner(FnApiRunner):
        """Starts ``COMMAND`` wherever the FnApiRunner would start Beam's worker module."""

        @property
        def _default_environment(self) -> Any:
            return self._environment

        @_default_environment.setter
        def _default_environment(self, environment: Any) -> None:
            if isinstance(environment, environments.SubprocessSDKEnvironment):
                command = f"{sys.executable} {COMMAND}"
                environment = environments.SubprocessSDKEnvironment.from_command_string(command_string=command)
            self._environment = environment

    given = options.get_all_options(drop_default=True)
    worker_options = struct_pb2.Struct()
    worker_options.update({name: given[name] for name in WORKER_OPTIONS if name in given})
    info = beam_provision_api_pb2.ProvisionInfo(retrieval_token="unused", pipeline_options=worker_options)
    return _FnApiRunner(provision_info=ExtendedProvisionInfo(info))


def _worker_level() -> int | None:
    options = json.loads(os.environ.get("PIPELINE_OPTIONS") or "{}")
    level = options.get("options", options).get("default_sdk_harness_log_level")
    return getattr(logging, str(level).upper(), None) if level else None


class QuietExplained:
    """A worker's ``sys.stderr`` without the traceback Beam's harness prints (``print(traceback, file=sys.stderr)``,
    no logger to filter) of a bundle that failed on a stop the launcher explains in a line of its own
    (``console.explained``: changed content, a full disk, evaluation leaks); everything else goes through."""

    def __init__(self, stream: Any):
        self._stream = stream
        self._dropped = False

    def write(self, text: str) -> int:
        drop = text.startswith("Traceback (most recent call last)") and console.explained(text)
        newline_after = self._dropped and text == "\n"  # print's own end of the dropped traceback
        self._dropped = drop
        return len(text) if drop or newline_after else self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def main() -> None:
    # Ctrl-C reaches the whole process group: the launcher cancels the job and the runner stops its workers, so a
    # worker's own KeyboardInterrupt would only print a traceback per thread.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    level = _worker_level()
    console.configure(level)
    if level is None or level > logging.DEBUG:  # with -vv every traceback shows
        sys.stderr = QuietExplained(sys.stderr)
    from apache_beam.runners.worker import sdk_worker_main

    cache_dofn_specs()
    sdk_worker_main.main(sys.argv)
    # The harness has torn down every DoFn and closed its channels. The interpreter's own teardown (torch's and
    # gRPC's modules and threads) would take seconds more, and the runner waits for each worker in turn.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
