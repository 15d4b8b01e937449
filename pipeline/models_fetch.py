"""Fetch model weights from the Hugging Face hub into its cache: on the launcher, before any data is read.

``fetch(name, pretrained, cache_dir, section)`` downloads what ``transforms.model_weights.hub_files`` names (an
open_clip pretrained tag's repository, or an ``hf-hub:ORG/NAME`` repository with its ``open_clip_config.json``) into
``cache_dir`` or the hub cache (``HF_HOME``/``HF_HUB_CACHE``), with the hub library's progress bar, and returns the
local weights file; workers then find it there with ``locate_weights``. It first asks the hub (``HF_ENDPOINT``) about
every file without writing anything, so a wrong name, a private repository or an unreachable hub fails with a
``FetchError`` that names the model, the tag, the repository and the fix. A download that fails part way (a cut
connection, a full disk) leaves the cache exactly as it was: no partial file and no reference a later run could load.
``hub_offline()`` says whether the user forbade the network (``HF_HUB_OFFLINE=1``); the launcher then fetches
nothing.
"""

import contextlib
import logging
import os
import shutil
import socket
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

from transforms.model_weights import HF_HUB_PREFIX, HubFiles, hub_files

_LOG = logging.getLogger("unishard")
PROBE_TIMEOUT_S = 10.0


class FetchError(RuntimeError):
    """Weights could not be fetched; the message names the model, what the hub said and how to fix it.

    Attributes:
        unreachable: The hub could not be reached at all (no network, wrong endpoint).
    """

    def __init__(self, message: str, unreachable: bool = False):
        super().__init__(message)
        self.unreachable = unreachable


def hub_offline() -> bool:
    """Whether the hub library is offline (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` when it was imported)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def describe(name: str, pretrained: str | None) -> str:
    """``model NAME (pretrained TAG)``, the words every message uses for a model."""
    tagged = pretrained and not name.startswith(HF_HUB_PREFIX)
    return f"model {name}" + (f" (pretrained {pretrained})" if tagged else "")


def fetch(
    name: str, pretrained: str | None, cache_dir: str | None, section: str = "clip", endpoint: str | None = None
) -> str:
    """Download a model's weights (and an ``hf-hub:`` model's config) into the cache; return the weights file.

    ``endpoint`` is the hub's address (default ``HF_ENDPOINT``, else https://huggingface.co).

    Raises:
        FetchError: The hub does not have the model, refused it, cannot be reached, or the download failed; the
            cache is then as it was before the call.
        ModelUnavailable: ``pretrained`` is not a tag open_clip knows for ``name``.
    """
    from huggingface_hub import constants, hf_hub_download

    what = describe(name, pretrained)
    files = hub_files(name, pretrained, section)
    if files is None:
        raise FetchError(
            f"{section}: the weights of {what} are published at a plain URL, not on the hub; download them and add "
            f"`--set {section}.checkpoint=PATH`"
        )
    endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
    cache = Path(cache_dir or constants.HF_HUB_CACHE).expanduser()
    _check_resolves(endpoint)
    with _online():
        wanted, size = _probe(files, what, section, endpoint)
        _LOG.info(
            "unishard: downloading %s %s from %s/%s (%s) into %s; later runs read it from there",
            section,
            what,
            endpoint,
            files.repo,
            _megabytes(size),
            cache,
        )
        storage = "models--" + files.repo.replace("/", "--")
        with _restored_on_failure(cache, [cache / storage, cache / ".locks" / storage]):
            for filename in wanted:
                try:
                    path = hf_hub_download(
                        files.repo, filename, cache_dir=str(cache) if cache_dir else None, endpoint=endpoint
                    )
                except Exception as error:  # noqa: BLE001 - every failure becomes one message naming the model
                    file = f"{files.repo}/{filename}"
                    raise _download_error(error, file, what, section, endpoint, cache, size) from error
    _LOG.debug("unishard: %s %s is in %s", section, what, path)
    return path


def _check_resolves(endpoint: str) -> None:
    """Fail at once, in one line, when the hub's host name does not resolve (no network, no DNS): the hub library
    would retry five times over half a minute, printing each failure."""
    parsed = urllib.parse.urlsplit(endpoint)
    if not parsed.hostname:
        return
    try:
        socket.getaddrinfo(parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80))
    except socket.gaierror as error:
        raise FetchError(
            f"could not reach the hub at {endpoint}: its host name {parsed.hostname} does not resolve "
            f"({error.strerror}); this machine has no network or no DNS",
            unreachable=True,
        ) from None


@contextlib.contextmanager
def _online() -> Iterator[None]:
    """Let the hub library use the network for the block (``unishard models fetch`` runs even where it is off),
    its own log quiet: every failure becomes one message of ours."""
    from huggingface_hub import constants

    offline = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = False
    hub_log = logging.getLogger("huggingface_hub")
    level = hub_log.level
    hub_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = offline
        hub_log.setLevel(level)


def _probe(files: HubFiles, what: str, section: str, endpoint: str) -> tuple[list[str], int]:
    """The files to download (required ones, then the first weights file the repository has) and their total size.

    Asks the hub about each file (HEAD requests) and writes nothing.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    wanted, size = [], 0
    for filename in [*files.required, *files.weights]:
        try:
            url = hf_hub_url(files.repo, filename, endpoint=endpoint)
            metadata = get_hf_file_metadata(url, timeout=PROBE_TIMEOUT_S, endpoint=endpoint)
        except EntryNotFoundError:  # the file, in a repository the hub has
            if filename in files.required:
                raise FetchError(
                    f"{section}: the hub repository {files.repo} at {endpoint} has no {filename}, so it does not hold "
                    f"an open_clip model ({what}).\n  to fix it: check `{section}.name`"
                ) from None
            continue
        except Exception as error:  # noqa: BLE001 - every failure becomes one message naming the model
            if _status(error) == 404 and filename in files.weights and not isinstance(error, RepositoryNotFoundError):
                continue  # a bare 404 (a mirror): maybe only this candidate is missing
            raise _probe_error(error, files, filename, what, section, endpoint) from None
        wanted.append(filename)
        size += metadata.size or 0
        if filename not in files.required:
            return wanted, size
    raise FetchError(
        f"{section}: the hub repository {files.repo} at {endpoint} holds none of {', '.join(files.weights)} for "
        f"{what}.\n  to fix it: check `{section}.name` and `{section}.pretrained`, or point to a weights file with "
        f"`--set {section}.checkpoint=PATH`"
    )


def _status(error: BaseException) -> int | None:
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)


def _probe_error(
    error: Exception, files: HubFiles, filename: str, what: str, section: str, endpoint: str
) -> FetchError:
    status = _status(error)
    asked = f"{endpoint}/{files.repo}/resolve/main/{filename}"
    if status == 404:
        return FetchError(
            f"{section}: the hub at {endpoint} has no repository {files.repo} (HTTP 404 for {asked}), tried for "
            f"{what}.\n  to fix it: {_name_fix(files, section)}"
        )
    if status in (401, 403):
        return FetchError(
            f"{section}: the hub at {endpoint} refused {files.repo} (HTTP {status} for {asked}), tried for {what}: "
            "the repository is private or gated, or does not exist.\n  to fix it: "
            f"{_name_fix(files, section)}; for a private or gated repository, log in with `hf auth login` or set "
            "HF_TOKEN to a token that may read it"
        )
    if status is not None:
        return FetchError(
            f"{section}: the hub at {endpoint} answered HTTP {status} for {asked}, tried for {what}; try again later"
        )
    return FetchError(
        f"could not reach the hub at {endpoint} ({type(error).__name__}: {error})".replace("\n", " "), unreachable=True
    )


def _name_fix(files: HubFiles, section: str) -> str:
    if files.required:
        return f"check the repository in `{section}.name` (hf-hub:ORG/NAME)"
    return (
        f"check `{section}.name` and `{section}.pretrained`; if HF_ENDPOINT points to a mirror, check that it holds "
        f"{files.repo}; or point to a weights file with `--set {section}.checkpoint=PATH`"
    )


def _download_error(
    error: Exception, file: str, what: str, section: str, endpoint: str, cache: Path, size: int
) -> FetchError:
    if isinstance(error, OSError) and error.errno and _status(error) is None:
        return FetchError(
            f"{section}: downloading {file} ({what}, {_megabytes(size)}) into {cache} failed: {error.strerror}. "
            f"The cache was left as it was.\n  to fix it: free space there, or set HF_HOME (or `--set "
            "clip.cache_dir=DIR`) to a folder on a disk with room"
        )
    return FetchError(
        f"{section}: the download of {file} ({what}) from {endpoint} did not complete ({type(error).__name__}: "
        f"{error}). The cache was left as it was; run again to retry"
    )


def _megabytes(size: int) -> str:
    return f"{size / 1e6:,.1f} MB" if size else "size unknown"


@contextlib.contextmanager
def _restored_on_failure(cache: Path, folders: list[Path]) -> Iterator[None]:
    """Undo what the block created in ``cache`` if it raises: under ``folders``, and new files at the top."""
    top = set(os.listdir(cache)) if cache.is_dir() else None
    before = {folder: _entries(folder) for folder in folders}
    try:
        yield
    except BaseException:
        if top is None:
            shutil.rmtree(cache, ignore_errors=True)
            raise
        for folder, entries in before.items():
            for path in sorted(_entries(folder) or set(), key=len, reverse=True):
                if entries is None or path not in entries:
                    _remove(path)
            if entries is None:
                _remove(str(folder))
        for name in set(os.listdir(cache)) - top:
            _remove(str(cache / name))
        raise


def _remove(path: str) -> None:
    """Remove a file, a link or an empty folder; leave anything else."""
    with contextlib.suppress(OSError):
        if os.path.isdir(path) and not os.path.islink(path):
            os.rmdir(path)
        else:
            os.unlink(path)


def _entries(folder: Path) -> set[str] | None:
    """Every path under ``folder`` (files, links, folders), or ``None`` when it does not exist."""
    if not folder.is_dir():
        return None
    found = set()
    for root, dirs, names in os.walk(folder):
        found.update(os.path.join(root, name) for name in [*dirs, *names])
    return found
