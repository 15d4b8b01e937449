"""Beam's command-line flags as unishard reads them: every option Beam knows in this process (unishard's own
``UnishardOptions`` included), the flags none of them takes, and merging two flag lists so that the second one wins.

A flag given later replaces an earlier one; for repeatable flags (``--experiments``, ``--resource_hints``,
``--stage_resource_hint``) an entry with the same key replaces the earlier entry. No file or network access.
"""

import argparse
import functools

from apache_beam.options.pipeline_options import (
    PipelineOptions,
    StandardOptions,
    _BeamArgumentParser,
    _CommaSeparatedListAction,
)

# Flags that accumulate values (--experiments, --resource_hints...): merged entry by entry, not replaced whole.
REPEATABLE = (argparse._AppendAction, _CommaSeparatedListAction)


class UnishardOptions(PipelineOptions):
    """Beam options unishard adds: resource hints for one stage rather than the whole pipeline."""

    @classmethod
    def _add_argparse_args(cls, parser: _BeamArgumentParser) -> None:
        parser.add_argument(
            "--stage_resource_hint",
            "--stage_resource_hints",
            dest="stage_resource_hints",
            action="append",
            default=[],
            help="A Beam resource hint for one stage, as STAGE:HINT=VALUE (STAGE is the stage's config section, "
            "e.g. embed:accelerator=type:nvidia-l4;count:1;install-nvidia-driver). Repeatable.",
        )


@functools.cache
def _beam_parser() -> _BeamArgumentParser:
    """Every Beam pipeline option known in this process, as Beam itself collects them."""
    parser = _BeamArgumentParser(allow_abbrev=False, exit_on_error=False)
    classes = {str(cls): cls for cls in PipelineOptions.__subclasses__()}
    for cls in classes.values():
        cls._add_argparse_args(parser)
    return parser


def beam_action(flag: str):
    return _beam_parser()._option_string_actions.get(flag)


def beam_flags() -> list[str]:
    """Every flag a Beam option known in this process takes (``--runner``, ``--direct_num_workers``...)."""
    return sorted(_beam_parser()._option_string_actions)


def unknown_flags(args: list[str]) -> list[str]:
    """The flags among ``args`` that no Beam option known in this process takes, as given.

    Beam only logs those (at WARNING, which the console hides) and runs without them: a misspelt
    ``--direct_num_worker=2`` would run on the default worker count. Values are not checked here; Beam does.
    """
    return [tokens[0] for key, tokens in _groups(args) if key is None and tokens[0].startswith("-")]


def _groups(args: list[str]) -> list[tuple[tuple[str, str] | None, list[str]]]:
    """Split command-line args into flags with their values, each with the key it overrides (None: unknown)."""
    groups = []
    index = 0
    while index < len(args):
        token = args[index]
        flag, has_value, value = token.partition("=")
        action = beam_action(flag) if token.startswith("--") else None
        if action is None:
            groups.append((None, [token]))
            index += 1
            continue
        taken = [token]
        if not has_value and action.nargs != 0 and index + 1 < len(args):
            value = args[index + 1]
            taken.append(value)
        entry = value.partition("=")[0] if isinstance(action, REPEATABLE) else ""
        groups.append(((action.dest, entry), taken))
        index += len(taken)
    return groups


def merge_args(profile_args: list[str], cli_args: list[str]) -> list[str]:
    """The profile's flags that the command line does not override, then the command line's, in order."""
    overridden = {key for key, _ in _groups(cli_args) if key is not None}
    kept = [token for key, tokens in _groups(profile_args) if key not in overridden for token in tokens]
    return kept + list(cli_args)


def given_options(args: list[str]) -> set[str]:
    return {key[0] for key, _ in _groups(args) if key is not None}


def flag_value_problems(args: list[str]) -> list[str]:
    """What is wrong with the values of Beam's flags among ``args``, one line each, before Beam starts a job with
    them: a value of the wrong type (Beam prints its usage text and exits), a runner Beam does not know, a Dataflow
    job without the flags it needs, a negative worker count (an IndexError deep in the runner)."""
    try:
        values, _ = _beam_parser().parse_known_args(args)
    except argparse.ArgumentError as error:
        return [f"{error}"]
    problems = []
    runner = values.runner or ""
    known = {name.lower() for name in StandardOptions.KNOWN_RUNNER_NAMES}
    if runner and "." not in runner and not {runner.lower(), f"{runner.lower()}runner"} & known:
        problems.append(
            f"--runner={runner}: Beam knows no such runner ({', '.join(StandardOptions.KNOWN_RUNNER_NAMES)}, or a "
            "PipelineRunner class by its full name); for a cluster, use a profile: --profile portable, flink, spark "
            "or dataflow (see runners/README.md)"
        )
    if runner.lower().removesuffix("runner") == "dataflow":
        missing = [f"--{name}" for name in ("project", "region", "temp_location") if not getattr(values, name, None)]
        if missing:
            problems.append(
                f"--runner={runner} needs {', '.join(missing)}; --profile dataflow names each flag a Dataflow job "
                "needs and sets the rest"
            )
    workers = getattr(values, "direct_num_workers", None)
    if workers is not None and workers < 0:
        problems.append(f"--direct_num_workers={workers}: give 0 (one worker per core) or more")
    return problems
