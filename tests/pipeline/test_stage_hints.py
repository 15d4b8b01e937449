"""Stage resource hints: read back per stage (the last entry wins, an empty value removes), and attached to every
part of a stage's composite transform."""

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability.common_urns import resource_hints
from apache_beam.testing.util import assert_that, equal_to

from pipeline.profiles import resolve_options
from pipeline.stage_hints import split_hint, stage_hints, with_stage_hints
from schemas.profile import ProfileError


def test_the_last_hint_for_a_stage_wins_and_an_empty_value_removes_it():
    options = PipelineOptions(
        [
            "--stage_resource_hint=embed:min_ram=1GB",
            "--stage_resource_hint=embed:min_ram=4GB",
            "--stage_resource_hint=embed:accelerator=type:nvidia-l4;count:1",
            "--stage_resource_hint=embed:accelerator=",
            "--stage_resource_hint=caption:min_ram=2GB",
        ]
    )
    assert stage_hints(options, "embed") == {"min_ram": "4GB"}
    assert stage_hints(options, "text") == {}


def test_a_hint_must_name_stage_hint_and_value():
    assert split_hint("embed:accelerator=type:nvidia-l4;count:1") == ("embed", "accelerator", "type:nvidia-l4;count:1")
    with pytest.raises(ProfileError, match="expected STAGE:HINT=VALUE"):
        split_hint("embed-min_ram=16GB")


def test_stage_hints_reach_every_part_of_a_composite_and_still_run_locally():
    class _Double(beam.PTransform):
        def expand(self, pcoll):
            return pcoll | "Times" >> beam.Map(lambda x: x * 2) | "Plus" >> beam.Map(lambda x: x + 0)

    options = PipelineOptions(
        ["--runner=FnApiRunner", "--stage_resource_hint=text:accelerator=type:nvidia-l4;count:1"]
    )
    resolve_options(options)
    with beam.Pipeline(options=options) as pipeline:
        doubled = pipeline | beam.Create([1, 2]) | "Text" >> with_stage_hints(_Double(), pipeline, "text")
        assert_that(doubled, equal_to([2, 4]))
    proto = pipeline.to_runner_api()
    hinted = {
        transform.unique_name
        for transform in proto.components.transforms.values()
        if resource_hints.ACCELERATOR.urn in proto.components.environments[transform.environment_id].resource_hints
    }
    assert {"Text/Times", "Text/Plus"} <= hinted
    assert not any(name.startswith("Create") for name in hinted)
