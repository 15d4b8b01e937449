"""Per-stage resource hints: ``--stage_resource_hint STAGE:HINT=VALUE`` (``pipeline.beam_flags.UnishardOptions``)
read back for one stage, and attached to that stage's transform (``with_stage_hints``, in ``pipeline/assemble.py``).
"""

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.beam_flags import UnishardOptions
from schemas.profile import ProfileError


def stage_hints(options: PipelineOptions, stage: str) -> dict[str, str]:
    """The resource hints given for ``stage`` by ``--stage_resource_hint STAGE:HINT=VALUE``.

    The last entry for a hint wins; an empty value (``embed:accelerator=``) removes a hint a profile set.
    """
    hints = {}
    for entry in options.view_as(UnishardOptions).stage_resource_hints or []:
        name, hint, value = split_hint(entry)
        if name == stage:
            hints[hint] = value
    return {hint: value for hint, value in hints.items() if value}


def split_hint(entry: str) -> tuple[str, str, str]:
    stage, _, rest = entry.partition(":")
    hint, equals, value = rest.partition("=")
    if not (stage and hint and equals):
        raise ProfileError(f"--stage_resource_hint {entry!r}: expected STAGE:HINT=VALUE, e.g. embed:min_ram=16GB")
    return stage, hint, value


def with_stage_hints(transform: beam.PTransform, pipeline: beam.Pipeline, stage: str) -> beam.PTransform:
    """Attach the run's resource hints for ``stage`` to ``transform`` (a composite passes them to its parts).

    Use in ``pipeline/assemble.py`` around a model stage::

        embedded = unique | "Embed" >> with_stage_hints(EmbedImages(config.embed, config.clip), pipeline, "embed")

    Runners that do not understand a hint ignore it; Dataflow places the stage on workers that satisfy it.
    """
    hints = stage_hints(pipeline.options, stage)
    return transform.with_resource_hints(**hints) if hints else transform
