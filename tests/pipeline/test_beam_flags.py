"""Beam flags: every option Beam knows (and unishard's own), the flags none takes, and merging flag lists so the later
one wins."""

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import cli
from pipeline.beam_flags import beam_action, flag_value_problems, given_options, merge_args, unknown_flags
from pipeline.stage_hints import stage_hints


def test_beam_and_unishard_options_are_known_and_a_typo_is_not():
    assert beam_action("--direct_num_workers").dest == "direct_num_workers"
    assert beam_action("--stage_resource_hint").dest == "stage_resource_hints"
    assert beam_action("--stage_resource_hints").dest == "stage_resource_hints"
    assert beam_action("--direct_num_worker") is None


def test_given_options_name_every_known_flag_in_either_spelling():
    args = ["--runner", "FnApiRunner", "--direct_num_workers=2", "--no_such_flag=1", "positional"]
    assert given_options(args) == {"runner", "direct_num_workers"}


def test_a_later_flag_replaces_an_earlier_one_and_unknown_tokens_pass_through():
    merged = merge_args(["--runner=FlinkRunner", "--parallelism", "2", "--own=x"], ["--runner", "FnApiRunner"])
    assert merged == ["--parallelism", "2", "--own=x", "--runner", "FnApiRunner"]


def test_repeatable_flags_merge_by_key_and_the_command_line_wins():
    profile = ["--stage_resource_hint=text:min_ram=1GB", "--stage_resource_hint=text:cpu_count=2", "--experiments=a"]
    merged = merge_args(profile, ["--stage_resource_hint", "text:min_ram=4GB", "--experiments=b"])
    options = PipelineOptions(merged)
    assert stage_hints(options, "text") == {"cpu_count": "2", "min_ram": "4GB"}
    assert options.view_as(beam.options.pipeline_options.DebugOptions).experiments == ["a", "b"]


def test_unknown_flags_are_those_no_beam_option_takes_whatever_their_values():
    args = ["--runner", "FnApiRunner", "--direct_num_worker=2", "--direct-num-workers", "2", "--experiments=a", "-x"]
    assert unknown_flags(args) == ["--direct_num_worker=2", "--direct-num-workers", "-x"]


def test_run_refuses_a_misspelt_flag_before_any_work_and_names_the_closest(tmp_path, capsys):
    """Beam logged "Unparseable argument" at WARNING, which the console hides, and ran on its default worker count."""
    out = tmp_path / "out"
    args = ["run", "--input", str(tmp_path), "--output", str(out), "--direct_num_worker=2", "--smoke-model"]
    assert cli.main(args) == 2
    error = capsys.readouterr().err
    assert "--direct_num_worker=2 (did you mean --direct_num_workers?)" in error
    assert "--smoke-model (did you mean --smoke-models?)" in error and "Nothing was run" in error
    assert not out.exists()


@pytest.mark.parametrize(
    ("flag", "said"),
    [
        ("--runner=FooRunner", "--runner=FooRunner: Beam knows no such runner"),
        ("--runner=DataflowRunner", "--runner=DataflowRunner needs --project, --region, --temp_location"),
        ("--direct_num_workers=-1", "--direct_num_workers=-1: give 0 (one worker per core) or more"),
        ("--direct_num_workers=two", "--direct_num_workers: invalid int value: 'two'"),
    ],
)
def test_run_refuses_a_flag_value_beam_would_refuse_only_after_starting(tmp_path, capsys, flag, said):
    """Beam printed a traceback (an unknown runner, Dataflow without a project), an IndexError with "the runner's
    log above" and no log (-1 workers), or its own usage text (a word for a number), after the run had started."""
    out = tmp_path / "out"
    assert cli.main(["run", "--input", str(tmp_path), "--output", str(out), "--smoke-models", flag]) == 2
    error = capsys.readouterr().err
    assert said in error and "Nothing was run" in error and "Traceback" not in error and "usage:" not in error
    assert not out.exists()


def test_known_runners_pass_by_any_spelling_beam_takes():
    assert flag_value_problems(["--runner=direct", "--runner=PortableRunner", "--direct_num_workers=0"]) == []


def test_a_wrong_value_from_a_profile_names_the_profile(tmp_path, capsys):
    """A profile's ``direct_num_workers = "two"`` printed Beam's usage text after the run had started."""
    profile = tmp_path / "p3.toml"
    profile.write_text(
        '[profile]\nengine = "x"\ndescription = "y"\n[beam]\nrunner = "FnApiRunner"\ndirect_num_workers = "two"\n'
    )
    args = ["run", "--input", str(tmp_path), "--output", str(tmp_path / "out"), "--smoke-models", "--profile"]
    assert cli.main([*args, str(profile)]) == 2
    error = capsys.readouterr().err
    assert (
        "--direct_num_workers: invalid int value: 'two'" in error and f"in profile {profile}'s [beam] table" in error
    )
