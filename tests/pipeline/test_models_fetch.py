"""Fetching weights from a hub: a Hugging Face-compatible server on loopback holding a tiny open_clip model.

The server answers the hub's file API as huggingface_hub calls it: ``HEAD`` and ``GET`` on
``/{org}/{name}/resolve/{revision}/{filename}`` with ``X-Repo-Commit`` and ``ETag`` headers, ``X-Error-Code`` on
errors (``RepoNotFound`` with 404, or with 401 as the real hub answers anonymous requests for private repositories,
``EntryNotFound`` for a missing file). Its model is a tiny open_clip CLIP on random weights, saved the way open_clip's
``hf-hub:`` loader reads it (``open_clip_config.json`` and ``open_clip_model.safetensors``). Every test has its own
``HF_HOME``; the end-to-end tests run the real CLI with ``HF_ENDPOINT`` pointing at the server.
"""

import errno
import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipeline.models_fetch import FetchError, fetch
from tests.helpers import make_photo, write_sidecar

REPO = "unishard-test/tiny-clip"
PRIVATE = "unishard-test/private-clip"
MODEL = f"hf-hub:{REPO}"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
UNISHARD = Path(sys.executable).with_name("unishard")
CLI_TIMEOUT_S = 300


def _tiny_model_files() -> dict[str, bytes]:
    import open_clip
    import safetensors.torch
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = open_clip.CLIP(**TINY_CLIP)
    config = {"model_cfg": TINY_CLIP, "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}
    return {
        "open_clip_config.json": json.dumps(config).encode(),
        "open_clip_model.safetensors": safetensors.torch.save(model.state_dict()),
    }


class Hub(ThreadingHTTPServer):
    """The loopback hub: ``repos`` maps a repository to its files; ``truncate`` cuts every weights download short."""

    daemon_threads = True

    def __init__(self, repos: dict[str, dict[str, bytes]]):
        super().__init__(("127.0.0.1", 0), _HubHandler)
        self.repos = repos
        self.truncate = False
        self.requests: list[tuple[str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _HubHandler(BaseHTTPRequestHandler):
    server: Hub

    def log_message(self, *args) -> None:
        pass

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        self.server.requests.append((self.command, self.path))
        parts = self.path.split("/")
        if len(parts) < 6 or parts[3] != "resolve":
            return self._error(404, None)
        repo, filename = f"{parts[1]}/{parts[2]}", "/".join(parts[5:])
        if repo == PRIVATE:
            return self._error(401, "RepoNotFound", "Invalid username or password.")
        if repo not in self.server.repos:
            return self._error(404, "RepoNotFound")
        data = self.server.repos[repo].get(filename)
        if data is None:
            return self._error(404, "EntryNotFound")
        if body and self.server.truncate and filename.endswith(".safetensors"):
            if self.headers.get("Range"):
                self.close_connection = True  # a resumed request gets nothing either: the connection drops
                return None
            self._headers(200, data)
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return None
        self._headers(200, data)
        if body:
            self.wfile.write(data)
        return None

    def _headers(self, status: int, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("X-Repo-Commit", COMMIT)
        self.end_headers()

    def _error(self, status: int, code: str | None, message: str = "not found") -> None:
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
        if code == "EntryNotFound":
            self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture(scope="module")
def served() -> dict[str, bytes]:
    return _tiny_model_files()


@pytest.fixture
def hub(served):
    server = Hub({REPO: served})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for seed in range(4):
        make_photo(120, 96, seed=seed).save(folder / f"photo-{seed}.jpg")
        write_sidecar(folder / f"photo-{seed}.jpg", title=f"a test photo number {seed}")
    return folder


def _env(tmp_path: Path, hub: Hub, offline: bool = False) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and "proxy" not in k.lower()}
    env.update(HF_HOME=str(tmp_path / "hf-home"), HF_ENDPOINT=hub.url, HF_HUB_DISABLE_TELEMETRY="1", NO_PROXY="*")
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return env


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(UNISHARD), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=CLI_TIMEOUT_S
    )


def _run(images: Path, output: Path, env: dict[str, str], model: str = MODEL, *extra: str):
    args = ["run", "--input", str(images), "--output", str(output), "--no-report", "--no-progress"]
    return _cli([*args, "--set", f'clip.name="{model}"', *extra], env, images.parent)


def _cache_files(tmp_path: Path) -> list[str]:
    root = tmp_path / "hf-home"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink())


def test_first_run_downloads_the_model_and_a_second_run_reads_it_offline(hub, served, images, tmp_path):
    first = _run(images, tmp_path / "out", _env(tmp_path, hub))
    assert first.returncode == 0, first.stderr[-4000:]
    assert f"downloading clip model {MODEL} from {hub.url}/{REPO}" in first.stderr
    snapshot = tmp_path / "hf-home" / "hub" / f"models--{REPO.replace('/', '--')}" / "snapshots" / COMMIT
    for name, data in served.items():
        assert (snapshot / name).read_bytes() == data
    gets = [path for command, path in hub.requests if command == "GET"]
    assert sorted(gets) == sorted(f"/{REPO}/resolve/main/{name}" for name in served)
    models = json.loads((tmp_path / "out" / "_run" / "models.json").read_text())
    assert models["clip"]["model_id"] == "clip_tiny_clip" and models["meaningful"]

    hub.requests.clear()
    second = _run(images, tmp_path / "again", _env(tmp_path, hub, offline=True))
    assert second.returncode == 0, second.stderr[-4000:]
    assert hub.requests == []
    header = f"unishard: full run of 1 input on FnApiRunner into {tmp_path / 'again'}; models: clip_tiny_clip (fp32)"
    assert second.stderr.splitlines() == [header]
    assert (tmp_path / "again" / "_run" / "counts.json").read_text() == (
        tmp_path / "out" / "_run" / "counts.json"
    ).read_text()


def test_offline_run_without_the_model_refuses_before_reading_data(hub, images, tmp_path):
    done = _run(images, tmp_path / "out", _env(tmp_path, hub, offline=True))
    assert done.returncode == 1 and done.stdout == ""
    assert f"clip: model {MODEL} is not available on this machine." in done.stderr
    assert "not downloaded: HF_HUB_OFFLINE is set" in done.stderr
    assert f"unishard models fetch {MODEL} --cache-dir DIR" in done.stderr
    assert hub.requests == [] and not (tmp_path / "out").exists()


def test_truncated_download_fails_clearly_and_leaves_the_cache_as_it_was(hub, served, images, tmp_path):
    hub.truncate = True
    done = _run(images, tmp_path / "out", _env(tmp_path, hub))
    assert done.returncode == 1
    error = done.stderr
    assert f"clip: the download of {REPO}/open_clip_model.safetensors (model {MODEL}) from {hub.url}" in error
    assert "did not complete" in error and "The cache was left as it was; run again to retry" in error
    assert _cache_files(tmp_path) == [] and not (tmp_path / "out").exists()

    hub.truncate = False  # the retry the message suggests
    again = _cli(["models", "fetch", MODEL], _env(tmp_path, hub), tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert Path(again.stdout.split(" is in ")[1].split("\n")[0]).read_bytes() == served["open_clip_model.safetensors"]


@pytest.mark.parametrize(
    "name, pretrained, expected",
    [
        (
            "ViT-B-32",
            "laion2b_s34b_b79k",
            [
                "clip: the hub at {url} has no repository laion/CLIP-ViT-B-32-laion2B-s34B-b79K (HTTP 404 for "
                "{url}/laion/CLIP-ViT-B-32-laion2B-s34B-b79K/resolve/main/open_clip_model.safetensors), tried for "
                "model ViT-B-32 (pretrained laion2b_s34b_b79k)",
                "to fix it: check `clip.name` and `clip.pretrained`",
                "`--set clip.checkpoint=PATH`",
            ],
        ),
        (
            "hf-hub:unishard-test/no-such-clip",
            None,
            [
                "clip: the hub at {url} has no repository unishard-test/no-such-clip (HTTP 404",
                "tried for model hf-hub:unishard-test/no-such-clip",
                "to fix it: check the repository in `clip.name` (hf-hub:ORG/NAME)",
            ],
        ),
        (
            f"hf-hub:{PRIVATE}",
            None,
            [
                f"clip: the hub at {{url}} refused {PRIVATE} (HTTP 401 for {{url}}/{PRIVATE}/resolve/main/"
                f"open_clip_config.json), tried for model hf-hub:{PRIVATE}",
                "the repository is private or gated, or does not exist",
                "log in with `hf auth login` or set HF_TOKEN",
            ],
        ),
    ],
)
def test_a_name_the_hub_does_not_have_is_named_with_its_tag_and_the_fix(hub, tmp_path, name, pretrained, expected):
    with pytest.raises(FetchError) as raised:
        fetch(name, pretrained, str(tmp_path / "cache"), endpoint=hub.url)
    for words in expected:
        assert words.format(url=hub.url) in str(raised.value)
    assert not raised.value.unreachable
    assert not (tmp_path / "cache").exists()


def test_an_unreachable_hub_is_reported_as_such(hub, tmp_path, monkeypatch):
    import time

    monkeypatch.setattr(time, "sleep", lambda seconds: None)  # some huggingface_hub versions back off and retry
    closed = hub.url
    hub.shutdown()
    hub.server_close()
    with pytest.raises(FetchError, match=f"could not reach the hub at {closed}") as raised:
        fetch(MODEL, None, str(tmp_path / "cache"), endpoint=closed)
    assert raised.value.unreachable
    assert not (tmp_path / "cache").exists()


def test_a_hub_whose_name_does_not_resolve_fails_at_once_in_one_line(tmp_path, capfd):
    """No network (no DNS): the hub library retried five times over half a minute, printing each failure."""
    endpoint = "https://hub.unishard-test.invalid"  # RFC 2606: .invalid never resolves
    with pytest.raises(FetchError, match=f"could not reach the hub at {endpoint}: its host name") as raised:
        fetch(MODEL, None, str(tmp_path / "cache"), endpoint=endpoint)
    assert raised.value.unreachable and "no network or no DNS" in str(raised.value)
    printed = capfd.readouterr()
    assert "Retrying" not in printed.err + printed.out
    assert not (tmp_path / "cache").exists()


def test_a_full_disk_during_the_download_leaves_the_cache_as_it_was(hub, served, tmp_path, monkeypatch):
    from huggingface_hub import file_download

    cache = tmp_path / "cache"
    fetch(MODEL, None, str(cache), endpoint=hub.url)
    before = sorted(str(p) for p in cache.rglob("*"))
    hub.repos["unishard-test/other-clip"] = served
    real_http_get = file_download.http_get

    def full_disk(url, temp_file, **kwargs):
        if not url.endswith(".safetensors"):
            return real_http_get(url, temp_file, **kwargs)
        temp_file.write(b"\0" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(file_download, "http_get", full_disk)
    with pytest.raises(FetchError) as raised:
        fetch("hf-hub:unishard-test/other-clip", None, str(cache), endpoint=hub.url)
    message = str(raised.value)
    assert "clip: downloading unishard-test/other-clip/open_clip_model.safetensors" in message
    assert "failed: No space left on device. The cache was left as it was" in message
    assert sorted(str(p) for p in cache.rglob("*")) == before
    assert ("GET", "/unishard-test/other-clip/resolve/main/open_clip_config.json") in hub.requests
