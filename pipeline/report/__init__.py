"""The shard-quality report: ``OUT/report/report.json`` and a self-contained ``OUT/report/index.html``.

Both are built from a committed output alone; ``report.json`` is ``schemas.report.Report``.

``unishard run`` writes it at the end (``write_run_report``, never fatal); ``unishard report OUT`` writes it again
(``add_parser``, ``main``). Two reports of the same output differ only in wall time.

Modules, in the order data flows through them:

- ``build``: reads an output into a ``Report``, writes the two files, and the ``unishard report`` command.
- ``run_info``, ``data``, ``charts``, ``galleries``, ``thumbnails``: the parts of the ``Report`` (run facts and
  models; ledger, sidecars, funnel and shard table; distributions; galleries; their thumbnails).
- ``page``: the HTML page, from the package data ``page.html`` (skeleton) and ``report.css`` (stylesheet), with the
  sections of ``sections``, ``cards`` and ``audit``, the charts of ``histogram`` and the building blocks of
  ``format``. Every value from the input is escaped there.
"""

from pipeline.report.build import (
    REPORT_FILES,
    add_parser,
    build_report,
    main,
    summary_line,
    write_report,
    write_run_report,
)
from pipeline.report.run_info import run_info

__all__ = [
    "REPORT_FILES",
    "add_parser",
    "build_report",
    "main",
    "run_info",
    "summary_line",
    "write_report",
    "write_run_report",
]
