"""The ``unishard`` command line.

``unishard run [CONFIG] [--config FILE] [--input SPEC ...] [--output DIR] [--set section.key=value ...] [Beam flags]``
runs a job; flags unishard does not know (``--runner``, ``--direct_num_workers``...) go to Beam's PipelineOptions.
``unishard report OUT`` writes ``OUT/report/``, ``unishard validate OUT`` checks every shard, ``unishard inspect
SHARD.tar [KEY] [--extract DIR]`` looks inside one shard. ``unishard config --schema`` prints the config's JSON schema.
``-v``, ``-vv`` or ``--log-level LEVEL``, anywhere on the line, show more of the logging (``pipeline/console.py``).
"""

import argparse
import difflib
import importlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from types import ModuleType

import pydantic

from pipeline import console
from schemas.config.ingest import InputSpec
from schemas.config.load import ConfigError, load_config
from schemas.config.unishard import config_schema
from schemas.records.values import printable

_LOG = logging.getLogger("unishard")
# Imported only after console.configure: they import Beam, which logs while it is imported.
_TOOLS = {"report": "report", "validate": "validate", "inspect": "inspect_shards", "models": "models"}


def _tools() -> dict[str, ModuleType]:
    return {name: importlib.import_module(f"pipeline.{module}") for name, module in _TOOLS.items()}


def _run_parser(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run a curation job", allow_abbrev=False)
    run.add_argument("config_path", nargs="?", help="config TOML file (same as --config)")
    run.add_argument("--config", dest="config_flag", help="config TOML file")
    run.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="SPEC",
        help="an input: a file pattern or folder, a manifest (.csv/.tsv/.jsonl/.json/.parquet) or WebDataset tars "
        "(.tar); prefix KIND: to force the kind (files:, manifest:, webdataset:, mmc4:, obelics:) and add @DOMAIN "
        "to set the domain",
    )
    run.add_argument("--output", help="output folder (overrides run.output)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    run.add_argument(
        "--fail-on-audit",
        action="store_true",
        help="exit non-zero when the bias audit crosses a bound of the `audit` config (sets audit.fail_on_bounds)",
    )
    run.add_argument(
        "--smoke-models",
        action="store_true",
        help="run every model stage on small random models (offline checks; outputs not meaningful)",
    )
    run.add_argument(
        "--rebuild",
        action="store_true",
        help="reprocess everything instead of only what an earlier run into the same output has not seen",
    )
    run.add_argument(
        "--force",
        action="store_true",
        help="write into an output folder that holds files unishard did not write (refused otherwise); unishard "
        "writes beside them and never deletes or replaces them, and stops before committing if it would",
    )
    run.add_argument("--no-report", action="store_true", help="do not write OUT/report/ at the end")
    run.add_argument("--no-progress", action="store_true", help="do not show live progress")
    run.add_argument(
        "--profile",
        metavar="NAME|PATH",
        help="a runner profile: a name from runners/ (direct, direct-multiprocess, portable, flink, spark, dataflow) "
        "or a TOML file; Beam flags on the command line override the profile's",
    )


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    actions = (action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    return next(actions).choices[command]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unishard", description=__doc__, allow_abbrev=False)
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        help="also show INFO lines of Beam and other libraries (-vv: everything); anywhere on the command line",
    )
    parser.add_argument(
        "--log-level", choices=console.LOG_LEVELS, help="one log level for every library; anywhere on the command line"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _run_parser(sub)
    for tool in _tools().values():
        tool.add_parser(sub)
    config = sub.add_parser("config", help="show the configuration schema")
    config.add_argument("--schema", action="store_true", help="print the config's JSON schema")
    return parser


def parse_input(spec: str) -> InputSpec:
    """Read ``[KIND:]PATH[@DOMAIN]`` from ``--input``; a local PATH that exists with an ``@`` in its name is
    taken whole (``shots@2x``; ``shots@2x@factory`` gives it a domain)."""
    kind = "auto"
    for known in ("files", "manifest", "webdataset", "mmc4", "obelics"):
        if spec.startswith(known + ":"):
            kind, spec = known, spec[len(known) + 1 :]
    domain = None
    # A local path that exists is taken whole (a folder named shots@2x); else the last @ starts a domain.
    if "@" in spec and not ("://" not in spec and os.path.lexists(spec)):
        spec, domain = spec.rsplit("@", 1)
    try:
        return InputSpec(path=spec if "://" in spec else str(Path(spec).resolve()), kind=kind, domain=domain)
    except pydantic.ValidationError as error:
        problems = "; ".join(problem["msg"].removeprefix("Value error, ") for problem in error.errors())
        raise ConfigError(f"--input {printable(spec)}: {problems}") from None


def _without_model_manager() -> None:
    """Import Beam's RunInference without its ModelManager, whose module imports torch: 3 s of every run's start-up.

    ``apache_beam.ml.inference.base`` imports ``model_manager`` only for ``RunInference(use_model_manager=True)``,
    which no stage uses, and treats a failed import as "no ModelManager" (and no ``resource`` module, which it uses
    for a memory metric: put back here). The launcher builds the graph and, with worker processes, runs no model;
    a stage that loads one imports torch where it runs.
    """
    import resource

    blocked = "apache_beam.ml.inference.model_manager"
    if blocked in sys.modules:
        return
    sys.modules[blocked] = None
    try:
        from apache_beam.ml.inference import base
    finally:
        del sys.modules[blocked]
    base.resource = resource


def _refuse_unknown_flags(beam_args: list[str], run_flags: list[str], profile: str | None = None) -> None:
    """Stop before any work on a flag that neither ``unishard run`` nor any Beam option takes (Beam would ignore it),
    or on a Beam flag's value that Beam would refuse only after the run started (``flag_value_problems``).

    Raises:
        ConfigError: Naming each such flag, with the closest flag there is, or each wrong value.
    """
    from pipeline.beam_flags import beam_flags, flag_value_problems, unknown_flags

    unknown = unknown_flags(beam_args)
    if not unknown:
        if problems := flag_value_problems(beam_args):
            where = f" (given on the command line or in profile {profile}'s [beam] table)" if profile else ""
            raise ConfigError("; ".join(problems) + f"{where}. Nothing was run")
        return
    known = [*run_flags, *beam_flags()]
    named = []
    for flag in unknown:
        close = difflib.get_close_matches(flag.partition("=")[0], known, n=1, cutoff=0.75)
        named.append(f"{flag} (did you mean {close[0]}?)" if close else flag)
    raise ConfigError(
        f"unknown flag{'s' if len(named) > 1 else ''} {', '.join(named)}: neither unishard run nor Beam's pipeline "
        "options take it, and Beam would run without it. Fix the spelling (Beam's flags use underscores: "
        "--direct_num_workers); `unishard run --help` lists unishard's own. Nothing was run"
    )


def _run(args: argparse.Namespace, beam_args: list[str]) -> int:
    _without_model_manager()
    from pipeline.launch import AuditFailed, RunError, run
    from pipeline.output_folder import ForeignOutput
    from pipeline.state import OutputBusy

    path = args.config_flag or args.config_path
    overrides = list(args.set)
    if args.smoke_models:
        overrides.append("clip.smoke=true")
    if args.fail_on_audit:
        overrides.append("audit.fail_on_bounds=true")
    if args.profile:
        from pipeline.profiles import apply_profile

        beam_args, overrides = apply_profile(args.profile, beam_args, overrides)
    _refuse_unknown_flags(beam_args, args.run_flags, args.profile)
    beam_args = console.beam_log_args(beam_args, args.log_level)
    if args.output:
        # Unescaped: TOML takes any character in a string, but not JSON's surrogate pairs (an emoji in a name).
        output = args.output if "://" in args.output else str(Path(args.output).resolve())
        overrides.append(f"run.output={json.dumps(output, ensure_ascii=False)}")
    config = load_config(path, overrides, typed=list(args.set))
    if args.input:
        inputs = [*config.ingest.inputs, *map(parse_input, args.input)]
        config = config.model_copy(update={"ingest": config.ingest.model_copy(update={"inputs": inputs})})
    text = Path(path).read_text(encoding="utf-8") if path else ""
    started = time.time()
    try:
        summary = run(
            config,
            beam_args,
            text,
            report=not args.no_report,
            progress=not args.no_progress,
            rebuild=args.rebuild,
            force=args.force,
        )
    except ForeignOutput as error:
        print(f"unishard: {error}", file=sys.stderr)
        return 2
    except AuditFailed as error:  # the output was committed: its summary first, then why the exit code is 1
        summary = error.summary
        report = console.report_written_since(summary.output, started)
        print("\n".join(console.summary_lines(summary.output, summary.counts, summary.seconds, report)))
        print(f"unishard: {error}", file=sys.stderr)
        return 1
    except (RunError, OutputBusy) as error:
        print(f"unishard: {error}", file=sys.stderr)
        return 1
    report = console.report_written_since(summary.output, started)
    print("\n".join(console.summary_lines(summary.output, summary.counts, summary.seconds, report)))
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        argv, level = console.split_verbosity(sys.argv[1:] if argv is None else list(argv))
    except ValueError as error:
        print(f"unishard: {error}", file=sys.stderr)
        return 2
    console.configure(level)
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    args.log_level = level
    args.run_flags = sorted(_subparser(parser, "run")._option_string_actions)
    try:
        if args.command == "config" and not unknown:
            print(json.dumps(config_schema(), indent=2))
            return 0
        if args.command == "run":
            return _run(args, unknown)
        if args.command in _TOOLS and not unknown:
            return _tools()[args.command].main(args)
    except ConfigError as error:
        print(f"unishard: {printable(str(error))}", file=sys.stderr)
        return 2
    parser.error(f"unknown arguments: {' '.join(unknown)}")
    return 2


def entry() -> None:
    """The ``unishard`` command (and ``python -m pipeline``): ``main``, then exit with its status.

    The read-only tools (``report``, ``validate``, ``inspect``, ``models``) leave without the interpreter's teardown:
    a native thread left by pyarrow or gRPC could abort it ("terminate called without an active exception", exit
    -6) after the tool had printed a clean result. Their output is flushed first; they hold nothing else to finish.
    A reader that stops reading (``| head``) ends the command quietly, as ``ls | head`` does.
    """
    try:
        code = main()
        command = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), "")
        if command in _TOOLS:
            sys.stdout.flush()
            sys.stderr.flush()
            logging.shutdown()
            os._exit(code)
    except BrokenPipeError:
        # The reader left (`unishard inspect SHARD | head`): what it wanted was printed. Python's own recipe: point
        # stdout at /dev/null so that the interpreter's last flush does not fail too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        os._exit(0)
    except KeyboardInterrupt:
        # Ctrl-C: a run writes only under its staging folder until the commit, which the next run finishes.
        print(
            "unishard: interrupted; nothing new was committed (a commit already under way is finished by the next "
            "run into the same output)",
            file=sys.stderr,
        )
        sys.exit(130)
    sys.exit(code)
