"""Every command of the README works as written, in a fresh copy of the checkout, in README order.

The commands are the README's fenced ``bash`` blocks (one command a line; ``&&`` chains are split) and its
``python`` blocks (each run as one program). A new command is run by default. ``SKIPPED`` names the commands this
test does not run and why, ``SUBSTITUTED`` the ones it runs changed and why; nothing else is left out. The copy holds
the files ``git`` would commit; the installed ``unishard`` (this environment, made by the README's install line) runs
from it with ``HF_HUB_OFFLINE=1``.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TIMEOUT_S = 900
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
    assert run[:2] == ["python examples/make_demo.py", "unishard run examples/demo.toml --smoke-models"]
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


def test_every_readme_command_runs_as_written(tmp_path):
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to copy")
    checkout = tmp_path / "unishard"
    _fresh_copy(checkout)
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
    outputs = dict(ran)
    assert "kept" in outputs[next(c for c in outputs if "examples/out/demo/ledger" in c)]
    assert re.search(r"\d+ items: \d+ kept", outputs["unishard run examples/demo.toml --smoke-models"])
