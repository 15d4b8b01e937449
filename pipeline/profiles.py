"""Runner profiles become Beam arguments; per-stage resource hints reach the model stages.

``unishard run --profile NAME|PATH`` loads ``runners/NAME.toml`` (or the file at PATH), checks that every ``[beam]``
key is a Beam pipeline option and every hint a Beam resource hint, and merges the profile's flags under the
command line's: a flag given on the command line replaces the profile's, and for repeatable flags
(``--experiments``, ``--resource_hints``, ``--stage_resource_hint``) an entry with the same key replaces the
profile's entry. ``[config]`` keys become ``--set`` overrides placed before the user's own.

Stage hints travel as ``--stage_resource_hint STAGE:HINT=VALUE`` (``pipeline.beam_flags.UnishardOptions``), so a
profile, the command line and ``run.json`` all speak the same flag. ``pipeline/assemble.py`` attaches them with
``pipeline.stage_hints.with_stage_hints``. Reading and merging Beam flags: ``pipeline.beam_flags``.
"""

import logging
import tomllib
from pathlib import Path

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from apache_beam.transforms import resources

import runners
from pipeline.beam_flags import REPEATABLE, UnishardOptions, beam_action, given_options, merge_args
from pipeline.dofn_specs import cache_dofn_specs
from pipeline.stage_hints import split_hint
from schemas.config.unishard import UnishardConfig
from schemas.profile import ProfileError, RunnerProfile, parse_profile

_LOG = logging.getLogger("unishard")

PROFILE_DIR = Path(runners.__file__).parent
LOCAL_RUNNER = "FnApiRunner"
# Listed items from which a local run nobody sized uses one worker process per core (``use_the_cores``).
PARALLEL_FROM = 500
# Beam's DirectRunner (SwitchingDirectRunner) first tries Prism, which downloads a binary from GitHub at submit time
# and, when that fails, falls back to the FnApiRunner anyway.
_PRISM_FIRST = frozenset({"direct", "directrunner", "switchingdirectrunner"})


class RunOptions(PipelineOptions):
    """The options of a run: ``PipelineOptions`` that make each view once.

    Beam asks the pipeline's options for ``TypeOptions`` on every ``apply`` and every type check while the graph is
    built (some 3,400 times for unishard's graph), and each ``view_as`` builds an argparse parser over the view's
    options and parses the flags again (0.7 ms): over 2 s of every run's start-up. A view holds no values of its
    own (it reads and writes the options' shared dictionary), so one view per class serves every caller.
    """

    def view_as(self, cls: type[PipelineOptions]) -> PipelineOptions:
        views = self.__dict__.setdefault("_views", {})
        if cls not in views:
            views[cls] = super().view_as(cls)
        return views[cls]

    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())
        state.pop("_views", None)
        return state


def available_profiles() -> list[str]:
    """Names of the profiles shipped in ``runners/``."""
    return sorted(path.stem for path in PROFILE_DIR.glob("*.toml"))


def find_profile(spec: str) -> Path:
    """The file of profile ``spec``: a path to a TOML file, or the name of a shipped profile."""
    path = Path(spec)
    if path.suffix == ".toml" or "/" in spec or path.is_file():
        if not path.is_file():
            raise ProfileError(f"{spec}: runner profile file not found")
        return path
    shipped = PROFILE_DIR / f"{spec}.toml"
    if not shipped.is_file():
        raise ProfileError(f"--profile {spec}: no such profile; shipped profiles: {', '.join(available_profiles())}")
    return shipped


def load_profile(spec: str) -> RunnerProfile:
    """Read and validate a profile given by name or path.

    Raises:
        ProfileError: Missing file, bad TOML, a key that is not a Beam option or resource hint, or a "what" key.
    """
    path = find_profile(spec)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ProfileError(f"{path}: not valid TOML: {error}") from None
    profile = parse_profile(data, path.stem, str(path))
    _check_beam_keys(profile)
    _check_hints(profile)
    return profile


def _check_beam_keys(profile: RunnerProfile) -> None:
    for key, value in profile.beam.items():
        action = beam_action(f"--{key}")
        if action is None:
            raise ProfileError(f"{profile.origin}: beam.{key}: not a Beam pipeline option")
        if action.nargs == 0 and not isinstance(value, bool):
            raise ProfileError(f"{profile.origin}: beam.{key}: a switch; write true or false")
        if isinstance(value, list) and not isinstance(action, REPEATABLE):
            raise ProfileError(f"{profile.origin}: beam.{key}: takes one value, not a list")
    for key in profile.profile.requires:
        if beam_action(f"--{key}") is None:
            raise ProfileError(f"{profile.origin}: profile.requires.{key}: not a Beam pipeline option")


def _check_hints(profile: RunnerProfile) -> None:
    stages = set(UnishardConfig.model_fields)
    for stage, hints in profile.resource_hints.items():
        if stage not in stages:
            raise ProfileError(
                f"{profile.origin}: resource_hints.{stage}: not a stage; stages are named by their config section "
                f"({', '.join(sorted(stages))})"
            )
        try:
            resources.parse_resource_hints({name: str(value) for name, value in hints.items()})
        except ValueError as error:
            raise ProfileError(f"{profile.origin}: resource_hints.{stage}: {error}") from None


def profile_args(profile: RunnerProfile) -> list[str]:
    """The profile's ``[beam]`` and ``[resource_hints]`` tables as command-line Beam flags."""
    args = []
    for key, value in profile.beam.items():
        if isinstance(value, bool):
            args.extend([f"--{key}"] if value else [])
        elif isinstance(value, list):
            args.extend(f"--{key}={item}" for item in value)
        else:
            args.append(f"--{key}={value}")
    for stage, hints in sorted(profile.resource_hints.items()):
        args.extend(f"--stage_resource_hint={stage}:{hint}={value}" for hint, value in sorted(hints.items()))
    return args


def apply_profile(spec: str, beam_args: list[str], overrides: list[str]) -> tuple[list[str], list[str]]:
    """Merge profile ``spec`` into the command line's Beam args and ``--set`` overrides (the command line wins).

    Raises:
        ProfileError: The profile is invalid, or an option it requires was not given.
    """
    profile = load_profile(spec)
    merged = merge_args(profile_args(profile), beam_args)
    given = given_options(merged)
    for option, what in profile.profile.requires.items():
        if beam_action(f"--{option}").dest not in given:
            raise ProfileError(f"profile {profile.name} ({profile.origin}) needs --{option}: {what}")
    _LOG.info("unishard: profile %s (%s) for %s", profile.name, profile.origin, profile.profile.engine)
    return merged, [*profile.config_overrides(), *overrides]


def resolve_options(options: PipelineOptions) -> str:
    """Check the stage hints and return the runner, with Beam's DirectRunner replaced by the FnApiRunner.

    Beam 2.77's DirectRunner first tries Prism, which downloads a binary at submit time (slow, noisy, and a failure
    where there is no internet); the FnApiRunner is the in-process engine it then uses, and it honours
    ``--direct_running_mode`` and ``--direct_num_workers``. ``--runner=PrismRunner`` still selects Prism.
    """
    stages = set(UnishardConfig.model_fields)
    for entry in options.view_as(UnishardOptions).stage_resource_hints or []:
        stage, hint, value = split_hint(entry)
        if stage not in stages:
            raise ProfileError(f"--stage_resource_hint {entry}: {stage!r} is not a stage (a config section name)")
        if not value:
            continue
        try:
            resources.parse_resource_hints({hint: value})
        except ValueError as error:
            raise ProfileError(f"--stage_resource_hint {entry}: {error}") from None
    standard = options.view_as(StandardOptions)
    if standard.runner is None or standard.runner.lower() in _PRISM_FIRST:
        standard.runner = LOCAL_RUNNER
    close_flush_race()
    cache_dofn_specs()
    return standard.runner


def sized_by_user(beam_args: list[str]) -> bool:
    """Whether the command line or a profile chose how the local runner runs (``--direct_running_mode`` or
    ``--direct_num_workers``)."""
    return bool(given_options(beam_args) & {"direct_running_mode", "direct_num_workers"})


def use_the_cores(options: PipelineOptions, beam_args: list[str], items: int, cpus: int | None) -> int:
    """Give a local run that nobody sized one worker process per core once it is large enough; return the count.

    A run on the local FnApiRunner without ``--direct_running_mode``, ``--direct_num_workers`` or a profile runs
    in one process below ``PARALLEL_FROM`` listed items (starting worker processes costs seconds that a small run
    does not win back) and on ``cpus`` worker processes from there (the output is byte-identical either way).
    Returns 0 when the options were left as they were.
    """
    standard = options.view_as(StandardOptions)
    if standard.runner != LOCAL_RUNNER or sized_by_user(beam_args) or items < PARALLEL_FROM or (cpus or 1) < 2:
        return 0
    direct = options.view_as(DirectOptions)
    direct.direct_running_mode = "multi_processing"
    direct.direct_num_workers = cpus
    return cpus


def close_flush_race() -> None:
    """Stop the FnApiRunner's data channel from dropping elements it sends to SDK worker processes.

    With worker processes or threads (``--direct_running_mode=multi_processing`` or ``multi_threading``), the
    FnApiRunner sends each bundle's input through a gRPC data channel whose output stream Beam 2.77 flushes from a
    timer thread every ``DATA_BUFFER_TIME_LIMIT_MS`` (1 s). The flush reads the buffer, sends it, then clears it,
    without holding the lock the writing thread would need: bytes written between the read and the clear are
    discarded, so whole elements vanish without an error (measured: 355 of 4,000 images lost in one run, 84 in the
    next; a Flatten into a GroupByKey of 4,000 200 KB elements kept 2,227 to 3,948 of them). The runner writes each
    input in full and then closes the stream, so the timer has nothing to add: a limit of 0 makes the stream flush
    by size only, on the writing thread. Worker processes read the limit from their own options (0 by default).
    ``tests/pipeline/test_multiprocess.py`` holds the regression tests.
    """
    from apache_beam.runners.portability.fn_api_runner import worker_handlers

    worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = 0
