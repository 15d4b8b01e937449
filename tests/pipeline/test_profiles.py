"""Runner profiles: every shipped profile gives options Beam itself accepts, the command line wins, "what" keys are
refused, stage resource hints reach the transforms, and the local default never tries Prism."""

import copy
import logging
import pickle
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import (
    DirectOptions,
    FlinkRunnerOptions,
    GoogleCloudOptions,
    PipelineOptions,
    PortableOptions,
    SetupOptions,
    SparkRunnerOptions,
    TypeOptions,
    WorkerOptions,
)
from apache_beam.options.pipeline_options_validator import PipelineOptionsValidator
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.runners.portability.stager import Stager
from apache_beam.runners.runner import create_runner

from pipeline import cli
from pipeline.job import run_job
from pipeline.profiles import (
    PROFILE_DIR,
    RunOptions,
    apply_profile,
    available_profiles,
    load_profile,
    resolve_options,
    use_the_cores,
)
from pipeline.stage_hints import stage_hints
from schemas.config.load import load_config
from schemas.profile import ProfileError
from tests.helpers import noise_images
from tests.helpers import run_job as run_unishard

ROOT = Path(__file__).resolve().parents[2]
PRISM_ATTEMPT = r"PrismRunner|[Dd]ownloading prism|prism binary"

# What a user supplies for each shipped profile, as the README's commands show.
USER_ARGS = {
    "direct": [],
    "direct-multiprocess": [],
    "portable": ["--job_endpoint=localhost:8099", "--environment_config=localhost:50000"],
    "flink": ["--flink_master=flink-jobmanager:8081", "--sdk_container_image=registry.example/unishard-worker:0.1.0"],
    "spark": ["--spark_master_url=spark://spark-master:7077", "--sdk_container_image=registry.example/unishard:0.1"],
    "dataflow": [
        "--project=acme-curation",
        "--region=europe-west4",
        "--temp_location=gs://acme-curation-tmp/beam",
        "--sdk_container_image=europe-docker.pkg.dev/acme-curation/images/unishard-worker:0.1.0",
    ],
}

EXPECTED = {
    "direct": (DirectOptions, {"direct_running_mode": "in_memory", "direct_num_workers": 1}),
    "direct-multiprocess": (DirectOptions, {"direct_running_mode": "multi_processing", "direct_num_workers": 0}),
    "portable": (PortableOptions, {"job_endpoint": "localhost:8099", "environment_type": "EXTERNAL"}),
    "flink": (FlinkRunnerOptions, {"flink_master": "flink-jobmanager:8081", "parallelism": 16}),
    "spark": (SparkRunnerOptions, {"spark_master_url": "spark://spark-master:7077", "spark_version": "3"}),
    "dataflow": (GoogleCloudOptions, {"project": "acme-curation", "temp_location": "gs://acme-curation-tmp/beam"}),
}


def write_profile(tmp_path: Path, text: str) -> str:
    path = tmp_path / "custom.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_shipped_profiles_are_the_documented_set():
    assert available_profiles() == sorted(USER_ARGS)
    readme = (PROFILE_DIR / "README.md").read_text(encoding="utf-8")
    for name in available_profiles():
        assert f"`{name}`" in readme


@pytest.mark.parametrize("name", sorted(USER_ARGS))
def test_every_shipped_profile_produces_options_beam_validates(name):
    args, overrides = apply_profile(name, USER_ARGS[name], [])
    options = PipelineOptions(args)
    runner = resolve_options(options)
    assert overrides == []
    view, values = EXPECTED[name]
    for option, value in values.items():
        assert getattr(options.view_as(view), option) == value
    errors = PipelineOptionsValidator(options, create_runner(runner)).validate()
    assert errors == []
    assert not options.view_as(SetupOptions).save_main_session
    if name in ("flink", "spark", "dataflow"):
        assert options.view_as(WorkerOptions).sdk_container_image == USER_ARGS[name][-1].split("=", 1)[1]


def test_local_profiles_and_the_default_never_try_prism():
    assert resolve_options(PipelineOptions([])) == "FnApiRunner"
    assert resolve_options(PipelineOptions(["--runner=DirectRunner"])) == "FnApiRunner"
    assert resolve_options(PipelineOptions(["--runner=PrismRunner"])) == "PrismRunner"
    for name in ("direct", "direct-multiprocess"):
        assert load_profile(name).beam["runner"] == "FnApiRunner"


@pytest.mark.parametrize("args", [[], ["--runner=DirectRunner"], ["--profile", "direct-multiprocess"]])
def test_default_and_direct_runs_log_no_prism_attempt(args, caplog):
    if args[:1] == ["--profile"]:
        args, _ = apply_profile(args[1], ["--direct_num_workers=1"], [])
    options = PipelineOptions(args)
    runner = resolve_options(options)
    pipeline = beam.Pipeline(options=options)
    _ = pipeline | beam.Create([1, 2, 3]) | "Square" >> beam.Map(lambda x: x * x)
    with caplog.at_level(logging.INFO), caplog.at_level(logging.DEBUG, logger="unishard"):
        run_job(pipeline, runner, "STAGING")
    assert runner == "FnApiRunner"
    assert "job finished on FnApiRunner; state DONE" in caplog.text
    assert not re.search(PRISM_ATTEMPT, caplog.text)


def test_command_line_flags_override_the_profile():
    args, _ = apply_profile("flink", [*USER_ARGS["flink"], "--parallelism", "4"], [])
    assert PipelineOptions(args).view_as(FlinkRunnerOptions).parallelism == 4
    args, _ = apply_profile("direct-multiprocess", ["--direct_num_workers=2", "--runner=FnApiRunner"], [])
    direct = PipelineOptions(args).view_as(DirectOptions)
    assert (direct.direct_num_workers, direct.direct_running_mode) == (2, "multi_processing")
    assert args.count("--direct_num_workers=0") == 0


def test_profile_setting_a_threshold_is_refused_naming_file_and_key(tmp_path):
    path = write_profile(tmp_path, '[profile]\nengine = "x"\ndescription = "y"\n[config.normalise]\nmax_side = 64\n')
    with pytest.raises(ProfileError) as error:
        load_profile(path)
    assert path in str(error.value)
    assert "config.normalise.max_side" in str(error.value)
    assert "never what it keeps" in str(error.value)


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("[normalise]\nmin_side = 8\n", "normalise"),
        ('[beam]\noutput = "/elsewhere"\n', "beam.output"),
        ('[beam]\nflink_mastr = "host:8081"\n', "beam.flink_mastr"),
        ('[resource_hints.nonexistent_stage]\nmin_ram = "1GB"\n', "resource_hints.nonexistent_stage"),
        ('[resource_hints.text]\ngpu = "yes"\n', "resource_hints.text"),
    ],
)
def test_profile_keys_that_are_not_how_settings_are_refused(tmp_path, table, key):
    path = write_profile(tmp_path, f'[profile]\nengine = "x"\ndescription = "y"\n{table}')
    with pytest.raises(ProfileError, match=key.replace(".", r"\.")) as error:
        load_profile(path)
    assert path in str(error.value)


def test_how_keys_become_overrides_before_the_users_own(tmp_path):
    path = write_profile(
        tmp_path,
        '[profile]\nengine = "x"\ndescription = "y"\n[beam]\nrunner = "FnApiRunner"\n'
        '[config.embed]\nbatch_size = 64\n[config.clip]\ndevice = "cuda"\nthreads = 2\n',
    )
    args, overrides = apply_profile(path, [], ["clip.device=cpu"])
    assert args == ["--runner=FnApiRunner"]
    assert overrides == ['clip.device="cuda"', "clip.threads=2", "embed.batch_size=64", "clip.device=cpu"]
    config = load_config(None, overrides)
    assert (config.embed.batch_size, config.clip.device, config.clip.threads) == (64, "cpu", 2)


def test_a_missing_required_option_is_named():
    with pytest.raises(ProfileError, match="needs --project"):
        apply_profile("dataflow", USER_ARGS["dataflow"][1:], [])


def test_cli_refuses_a_bad_profile_with_exit_code_2(tmp_path, capsys):
    path = write_profile(tmp_path, '[profile]\nengine = "x"\ndescription = "y"\n[config.text]\nmax_chars = 5\n')
    assert cli.main(["run", "--profile", path, "--input", str(tmp_path)]) == 2
    assert "config.text.max_chars" in capsys.readouterr().err


def test_an_empty_command_line_hint_removes_the_profiles():
    args, _ = apply_profile("dataflow", [*USER_ARGS["dataflow"], "--stage_resource_hint=embed:accelerator="], [])
    options = PipelineOptions(args)
    resolve_options(options)
    assert "accelerator" in load_profile("dataflow").resource_hints["embed"]
    assert "accelerator" not in stage_hints(options, "embed")


def test_an_unknown_stage_in_a_command_line_hint_is_refused():
    with pytest.raises(ProfileError, match="'embedd' is not a stage"):
        resolve_options(PipelineOptions(["--stage_resource_hint=embedd:min_ram=1GB"]))


def test_beam_stages_the_project_from_pyproject_for_setup_file(tmp_path):
    options = PipelineOptions([f"--setup_file={ROOT / 'pyproject.toml'}"])
    staged = Stager.create_job_resources(options, str(tmp_path), log_submission_env_dependencies=False)
    by_name = {
        beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(artifact.role_payload).staged_name: artifact
        for artifact in staged
    }
    tarball = beam_runner_api_pb2.ArtifactFilePayload.FromString(by_name["workflow.tar.gz"].type_payload).path
    with tarfile.open(tarball) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    on_disk = {
        str(path.relative_to(ROOT))
        for package in ("pipeline", "schemas", "transforms", "runners")
        for path in (ROOT / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert sorted(on_disk - names) == []


def test_worker_image_is_beams_sdk_image_for_this_beam_and_python():
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert f"ARG BEAM_VERSION={beam.__version__}\n" in dockerfile
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert f"FROM apache/beam_python{python}_sdk:${{BEAM_VERSION}}" in dockerfile
    pins = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    for package, arg in (("torch", "TORCH_VERSION"), ("torchvision", "TORCHVISION_VERSION")):
        version = re.search(rf"ARG {arg}=(\S+)", dockerfile).group(1)
        assert f'"{package}=={version}"' in pins


@pytest.mark.parametrize(
    ("args", "items", "cpus", "expected"),
    [
        (["--runner=DirectRunner"], 499, 8, 0),  # small: in one process
        (["--runner=DirectRunner"], 500, 8, 8),  # one worker process per core
        ([], 5000, 2, 2),  # no --runner at all is the local runner too
        (["--runner=DirectRunner"], 5000, 1, 0),  # one core: nothing to spread over
        (["--runner=DirectRunner", "--direct_num_workers=1"], 5000, 8, 0),  # told otherwise
        (["--runner=DirectRunner", "--direct_running_mode=in_memory"], 5000, 8, 0),
        (["--runner=PortableRunner", "--job_endpoint=localhost:8099"], 5000, 8, 0),  # not a local run
    ],
)
def test_a_large_local_run_nobody_sized_uses_one_worker_process_per_core(args, items, cpus, expected):
    options = PipelineOptions(args)
    resolve_options(options)
    assert use_the_cores(options, args, items, cpus) == expected
    direct = options.view_as(DirectOptions)
    if expected:
        assert (direct.direct_running_mode, direct.direct_num_workers) == ("multi_processing", cpus)
    else:
        assert direct.direct_running_mode != "multi_processing"


def test_the_direct_profile_keeps_a_large_run_in_one_process():
    args, _ = apply_profile("direct", ["--runner=DirectRunner"], [])
    options = PipelineOptions(args)
    resolve_options(options)
    assert use_the_cores(options, args, 100_000, 8) == 0


def test_a_default_run_above_the_size_uses_worker_processes_with_the_same_output(tmp_path, monkeypatch, caplog):
    import pipeline.launch
    import pipeline.profiles

    for module in (pipeline.launch, pipeline.profiles):
        monkeypatch.setattr(module, "PARALLEL_FROM", 3)
    monkeypatch.setattr(pipeline.launch.os, "cpu_count", lambda: 2)
    inputs = noise_images(tmp_path / "in", 4, size=(96, 64), suffix="png", seed=7)
    sections = {"text": {"required": False}, "caption": {"required": False}}
    with caplog.at_level(logging.INFO, logger="unishard"):
        default = run_unishard([tmp_path / "in"], tmp_path / "default", **sections)
    assert "3 or more inputs: 2 worker processes, one per core" in caplog.text
    one = run_unishard([tmp_path / "in"], tmp_path / "one", beam_args=["--direct_num_workers=1"], **sections)
    assert len(default.samples()) == len(inputs)
    assert default.file_bytes() == one.file_bytes()


def test_run_options_make_each_view_once_and_views_share_the_values():
    options = RunOptions(["--direct_num_workers=3", "--no_pipeline_type_check"])
    assert options.view_as(TypeOptions) is options.view_as(TypeOptions)
    assert options.view_as(TypeOptions).pipeline_type_check is False
    options.view_as(DirectOptions).direct_num_workers = 5
    assert options.view_as(DirectOptions).direct_num_workers == 5
    assert options.get_all_options()["direct_num_workers"] == 5
    copied = copy.deepcopy(options)
    assert "_views" not in pickle.loads(pickle.dumps(options)).__dict__
    assert copied.view_as(DirectOptions).direct_num_workers == 5
    copied.view_as(DirectOptions).direct_num_workers = 7
    assert options.view_as(DirectOptions).direct_num_workers == 5


def test_the_launcher_builds_a_run_without_importing_torch():
    script = (
        "import sys\n"
        "from pipeline import cli\n"
        "cli._without_model_manager()\n"
        "import pipeline.launch\n"
        "from apache_beam.ml.inference import base\n"
        "assert base.RunInference and base.resource is not None\n"
        "print('torch' in sys.modules)\n"
    )
    found = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT)
    assert found.stdout.strip() == "False"
