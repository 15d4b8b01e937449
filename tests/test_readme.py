"""Every command of the README works as written, in a fresh copy of the checkout, in README order.

The commands are the README's fenced ``bash`` blocks (one command a line; ``&&`` chains are split) and its
``python`` blocks (each run as one program). A new command is run by default. ``SKIPPED`` names the commands this
test does not run and why, ``SUBSTITUTED`` the ones it runs changed and why; nothing else is left out. The copy holds
the files ``git`` would commit; the installed ``unishard`` (this environment, made by the README's install line) runs
from it with ``HF_HUB_OFFLINE=1``.
"""

import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from importlib import metadata
from pathlib import Path

import pytest

from tests.helpers import RUN_SPECIFIC

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TIMEOUT_S = 900
DEMO_RUN = "unishard run examples/demo.toml --smoke-models"
# The demo output's bytes, file by file, as a commit that changed them on purpose recorded them. A refactor must not
# change a byte; a change of output on purpose refreshes this file (UNISHARD_UPDATE_DIGEST=1 with this test) and says
# why in its commit message.
DEMO_DIGEST = ROOT / "tests" / "data" / "demo_digest.json"
# JPEG encoding, random model weights and Parquet bytes follow these libraries' versions, and the model's floats the
# processor's instruction set: the recorded digest holds for the environment and machine kind it was recorded on
# (the one .ci/run installs; elsewhere the test warns instead of comparing).
DIGEST_PACKAGES = (
    "apache-beam",
    "imagehash",
    "numpy",
    "open_clip_torch",
    "opencv-python-headless",
    "pillow",
    "pyarrow",
    "scikit-image",
    "scipy",
    "torch",
)
SKIPPED = {
    "pip install ": "installs the package: the test runs in the environment that line made (.ci/run runs it)",
    "python -m pytest": "the test suite itself",
    "python benchmarks/": "a benchmark: minutes of measurement against a yardstick, not a check",
}
SUBSTITUTED = {
    "unishard run examples/demo.toml": (
        "unishard run examples/demo.toml --smoke-models",
        "the demo's CLIP weights come from the hub, which tests never reach",
    ),
}
_BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def readme_commands(text: str) -> list[tuple[str, str]]:
    """``(language, command)`` pairs in README order: a shell command, or a whole Python block."""
    commands = []
    for language, body in _BLOCK.findall(text):
        if language == "python":
            commands.append(("python", body))
        elif language in ("bash", "sh", "shell"):
            for line in body.replace("\\\n", " ").splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    commands.extend(("bash", part.strip()) for part in line.split(" && "))
    return commands


def planned(commands: list[tuple[str, str]]) -> list[tuple[str, str, str | None]]:
    """Each command as it will run, with the reason it is skipped (``None``: it runs)."""
    plan = []
    for language, command in commands:
        skipped = next((why for prefix, why in SKIPPED.items() if command.startswith(prefix)), None)
        if command in SUBSTITUTED:
            command = SUBSTITUTED[command][0]
        plan.append((language, command, skipped))
    return plan


def test_the_readme_commands_are_found_and_only_the_listed_ones_skipped():
    plan = planned(readme_commands(README.read_text(encoding="utf-8")))
    run = [command for _, command, skipped in plan if skipped is None]
    assert run[:2] == ["python examples/make_demo.py", DEMO_RUN]
    assert any(language == "python" and "examples/out/demo/ledger" in command for language, command, _ in plan)
    assert {command.split()[0] for _, command, skipped in plan if skipped} <= {"pip", "python"}


def _fresh_copy(target: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


@pytest.fixture
def checkout():
    """A fresh copy of the checkout at a fixed path: outputs name their sources by absolute path, and the demo
    digest holds for one path."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to copy")
    path = Path(tempfile.gettempdir()) / "unishard-readme-check" / "unishard"
    # Another run of this test on the machine (a second checkout's suite) would delete and rewrite the same folder
    # under this one's commands: wait for it instead.
    with open(path.parent.with_name("unishard-readme-check.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        shutil.rmtree(path.parent, ignore_errors=True)
        _fresh_copy(path)
        yield path
        shutil.rmtree(path.parent, ignore_errors=True)


def test_every_readme_command_runs_as_written(checkout):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    ran = []
    for language, command, skipped in planned(readme_commands(README.read_text(encoding="utf-8"))):
        if skipped:
            continue
        if language == "python":
            done = subprocess.run(
                [sys.executable, "-"],
                input=command,
                cwd=checkout,
                env=env,
                capture_output=True,
                text=True,
                timeout=TIMEOUT_S,
            )
        else:
            done = subprocess.run(
                ["bash", "-c", command], cwd=checkout, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
            )
        assert done.returncode == 0, f"README command failed: {command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        ran.append((command, done.stdout))
        if command == DEMO_RUN:
            demo_digest = _file_digests(checkout / "examples" / "out" / "demo")
            run_at = str(checkout)
    outputs = dict(ran)
    assert "kept" in outputs[next(c for c in outputs if "examples/out/demo/ledger" in c)]
    assert re.search(r"\d+ items: \d+ kept", outputs[DEMO_RUN])
    _compare_with_recorded(demo_digest, run_at)


def _file_digests(output: Path) -> dict[str, str]:
    """SHA-256 of every output file but those recording where and when the run happened, by relative path."""
    return {
        str(path.relative_to(output)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(output.rglob("*"))
        if path.is_file() and not str(path.relative_to(output)).startswith(RUN_SPECIFIC)
    }


def _environment(run_at: str) -> dict[str, str]:
    return {"checkout": run_at, **_processor()} | {name: metadata.version(name) for name in DIGEST_PACKAGES}


def _processor() -> dict[str, str]:
    """The processor the model's floats were computed on: torch picks its kernels by instruction set (the same
    versions gave other embedding bytes on an AVX-512 machine than on the one the digest was first recorded on)."""
    import torch

    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return {"cpu": names[0] if names else platform.processor(), "torch_cpu": torch.backends.cpu.get_cpu_capability()}


def _compare_with_recorded(digests: dict[str, str], run_at: str) -> None:
    here = _environment(run_at)
    if os.environ.get("UNISHARD_UPDATE_DIGEST") == "1":
        DEMO_DIGEST.parent.mkdir(exist_ok=True)
        recorded = {"environment": here, "files": digests}
        DEMO_DIGEST.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        return
    recorded = json.loads(DEMO_DIGEST.read_text(encoding="utf-8"))
    if recorded["environment"] != here:
        differ = {name: (recorded["environment"].get(name), version) for name, version in here.items()}
        differ = {name: pair for name, pair in differ.items() if pair[0] != pair[1]}
        warnings.warn(
            f"demo digest not compared: recorded with other library versions or processor (recorded, here): {differ}",
            stacklevel=2,
        )
        return
    changed = sorted(name for name in digests.keys() & recorded["files"] if digests[name] != recorded["files"][name])
    added = sorted(digests.keys() - recorded["files"])
    missing = sorted(recorded["files"].keys() - digests)
    assert not (changed or added or missing), (
        f"the demo's output differs from {DEMO_DIGEST.relative_to(ROOT)}: changed {changed}, new {added}, "
        f"missing {missing}. A refactor must not change output bytes; if this change of output is intended, "
        "rerun this test with UNISHARD_UPDATE_DIGEST=1 and say why in the commit message."
    )
