"""The ``unishard`` command line.

``unishard run [CONFIG] [--config FILE] [--input SPEC ...] [--output DIR] [--set section.key=value ...] [Beam flags]``
runs a job; flags unishard does not know (``--runner``, ``--direct_num_workers``...) go to Beam's PipelineOptions.
``unishard config --schema`` prints the config's JSON schema.
"""

import argparse
import json
import logging
import sys
from pathlib import Path

from schemas.config import ConfigError, InputSpec, UnishardConfig, load_config

_LOG = logging.getLogger("unishard")


def _run_parser(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run a curation job", allow_abbrev=False)
    run.add_argument("config_path", nargs="?", help="config TOML file (same as --config)")
    run.add_argument("--config", dest="config_flag", help="config TOML file")
    run.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="SPEC",
        help="an input: a file pattern or folder, a manifest (.csv/.jsonl/.parquet) or WebDataset tars (.tar); "
        "prefix KIND: to force the kind (files:, manifest:, webdataset:) and add @DOMAIN to set the domain",
    )
    run.add_argument("--output", help="output folder (overrides run.output)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    run.add_argument(
        "--profile",
        metavar="NAME|PATH",
        help="a runner profile: a name from runners/ (direct, direct-multiprocess, portable, flink, spark, dataflow) "
        "or a TOML file; Beam flags on the command line override the profile's",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unishard", description=__doc__, allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)
    _run_parser(sub)
    config = sub.add_parser("config", help="show the configuration schema")
    config.add_argument("--schema", action="store_true", help="print the config's JSON schema")
    return parser


def parse_input(spec: str) -> InputSpec:
    """Read ``[KIND:]PATH[@DOMAIN]`` from ``--input``."""
    kind = "auto"
    for known in ("files", "manifest", "webdataset"):
        if spec.startswith(known + ":"):
            kind, spec = known, spec[len(known) + 1 :]
    domain = None
    if "@" in spec:
        spec, domain = spec.rsplit("@", 1)
    return InputSpec(path=spec if "://" in spec else str(Path(spec).resolve()), kind=kind, domain=domain)


def _run(args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipeline.launch import RunError, run

    path = args.config_flag or args.config_path
    overrides = list(args.set)
    if args.profile:
        from pipeline.profiles import apply_profile

        beam_args, overrides = apply_profile(args.profile, beam_args, overrides)
    if args.output:
        overrides.append(f"run.output={json.dumps(str(Path(args.output).resolve()))}")
    config = load_config(path, overrides)
    if args.input:
        inputs = [*config.ingest.inputs, *map(parse_input, args.input)]
        config = config.model_copy(update={"ingest": config.ingest.model_copy(update={"inputs": inputs})})
    text = Path(path).read_text(encoding="utf-8") if path else ""
    try:
        summary = run(config, beam_args, text)
    except RunError as error:
        print(f"unishard: {error}", file=sys.stderr)
        return 1
    by_status = summary.counts["by_status"]
    print(
        f"unishard: {summary.counts['items']} items: {by_status.get('kept', 0)} kept, "
        f"{by_status.get('rejected', 0)} rejected, {by_status.get('failed', 0)} failed "
        f"in {summary.seconds:.1f}s -> {summary.output}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    try:
        if args.command == "config" and not unknown:
            print(json.dumps(UnishardConfig.model_json_schema(), indent=2))
            return 0
        if args.command == "run":
            return _run(args, unknown)
    except ConfigError as error:
        print(f"unishard: {error}", file=sys.stderr)
        return 2
    parser.error(f"unknown arguments: {' '.join(unknown)}")
    return 2
