"""Beam's local Python job service, with the FnApiRunner's data-channel race closed.

``python -m pipeline.job_service --port=8099`` takes the same flags as
``python -m apache_beam.runners.portability.local_job_service_main`` and runs it after ``close_flush_race``
(and ``pipeline.dofn_specs``): the job service runs each job on an FnApiRunner that sends bundles to SDK workers over
gRPC, where Beam 2.77 can drop elements (see ``pipeline.profiles.close_flush_race``). Use it instead of Beam's module
for the ``portable`` profile.
"""

import sys

from apache_beam.runners.portability import local_job_service_main

from pipeline.dofn_specs import cache_dofn_specs
from pipeline.profiles import close_flush_race


def main(argv: list[str] | None = None) -> None:
    close_flush_race()
    cache_dofn_specs()
    local_job_service_main.run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
