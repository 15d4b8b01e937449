"""Which files of an output folder unishard wrote, so that it never deletes or replaces anything else.

An output folder is unishard's when it does not exist, is empty apart from unishard's lock and staging folder, or
holds ``_run/files.json``: the list of every file the last commit left there, written by that commit. Outputs of
versions before that list hold ``_run/state.json``; their files are recognised by the names unishard gives them
(``LEGACY_NAMES``). Any other folder is refused before any work unless the run is forced (``--force``), and even then
unishard writes beside the files it finds, never over them.

Within its own output, a commit deletes or replaces only files the previous commit listed. A commit that would delete
or write over anything else (a person's file at a name unishard writes, a symbolic link, a path through a symbolic
link) stops before its commit point, naming the paths; files a person adds elsewhere are left in place, and
``unishard validate`` names those under ``shards/``.
"""

import json
import os

from apache_beam.io.filesystems import FileSystems

from transforms._io import join, literal
from transforms._output_layout import LEGACY_MARKER, LEGACY_NAMES, MACHINERY, MANIFEST, listed_files

SHOWN = 10


class ForeignOutput(RuntimeError):
    """The output folder holds files unishard did not write, and the run was not forced."""


class ForeignFiles(RuntimeError):
    """A commit would delete or write over files unishard did not write; nothing was committed."""


def _is_remote(path: str) -> bool:
    return "://" in path


def _exists(path: str) -> bool:
    return os.path.lexists(path) if not _is_remote(path) else FileSystems.exists(path)


def files_under(root: str, links: bool = False) -> list[str]:
    """Every committed-name file below ``root`` (``.tmp-`` files excluded), as relative paths.

    Symbolic links are never followed, ``root`` included: unishard writes none, and what one points to lies outside
    the folder. With ``links``, the links themselves (to files or folders) are listed too.
    """
    if not _is_remote(root):
        if os.path.islink(root) or not os.path.isdir(root):
            return []
        entries = (os.path.join(top, name) for top, folders, names in os.walk(root) for name in [*names, *folders])
        return sorted(
            os.path.relpath(path, root)
            for path in entries
            if (links if os.path.islink(path) else not os.path.isdir(path) and ".tmp-" not in os.path.basename(path))
        )
    prefix = root.rstrip("/") + "/"
    return sorted(
        m.path[len(prefix) :]
        for m in FileSystems.match([literal(prefix) + "**"])[0].metadata_list
        if ".tmp-" not in m.path
    )


def is_unishard_output(output: str) -> bool:
    """Whether ``output`` is absent, empty apart from unishard's lock and staging, or carries unishard's record."""
    if _exists(join(output, MANIFEST)) or _exists(join(output, LEGACY_MARKER)):
        return True
    if not _is_remote(output):
        return not os.path.isdir(output) or set(os.listdir(output)) <= set(MACHINERY)
    prefix = output.rstrip("/") + "/"
    found = FileSystems.match([literal(prefix) + "**"])[0].metadata_list
    return all(m.path[len(prefix) :].split("/", 1)[0] in MACHINERY for m in found)


def check_output_folder(output: str, force: bool) -> None:
    """Refuse, before any work, an output folder holding files unishard did not write, unless ``force``.

    Raises:
        ForeignOutput: The folder is not empty and carries no record of a unishard run.
    """
    if force or is_unishard_output(output):
        return
    raise ForeignOutput(
        f"the output folder {output} already holds files that unishard did not write (it has no {MANIFEST}). "
        "Give an empty or new folder with --output, or add --force to write into it: unishard then writes beside "
        "those files and never deletes or replaces them. Nothing was written"
    )


def written_files(output: str) -> set[str] | None:
    """The relative paths unishard wrote into ``output``, or ``None`` where no record says (not a unishard output)."""
    manifest = join(output, MANIFEST)
    if _exists(manifest):
        return set(listed_files(manifest))
    if _exists(join(output, LEGACY_MARKER)):
        return {path for path in files_under(output) if LEGACY_NAMES.fullmatch(path)}
    return None


def manifest_bytes(files: set[str]) -> bytes:
    """The content of ``_run/files.json`` listing ``files`` (itself included)."""
    return json.dumps({"files": sorted({*files, MANIFEST})}, indent=1).encode() + b"\n"


def link_on_the_way(output: str, relative: str) -> str | None:
    """The first symbolic link between ``output`` and ``output/relative`` (the file itself included), or ``None``."""
    if _is_remote(output):
        return None
    path = output
    for part in relative.split("/"):
        path = os.path.join(path, part)
        if os.path.islink(path):
            return path
    return None


def foreign_files(output: str, before: set[str], paths: list[str]) -> list[str]:
    """One line per file of ``paths`` a commit may not delete or write: not written by unishard, or behind a link.

    Args:
        output: The output folder.
        before: The paths unishard wrote there (``written_files``).
        paths: Relative paths the commit deletes or writes.
    """
    found = set()
    for relative in paths:
        link = link_on_the_way(output, relative)
        if link:
            found.add(f"{link} is a symbolic link: unishard never deletes or writes through one")
        elif relative not in before and _exists(join(output, relative)):
            found.add(f"{join(output, relative)} was not written by unishard")
    return sorted(found)


def describe(problems: list[str]) -> str:
    """``problems`` as indented lines, the first ``SHOWN`` of them."""
    shown = [*problems[:SHOWN], *([f"... and {len(problems) - SHOWN} more"] if len(problems) > SHOWN else [])]
    return "\n  " + "\n  ".join(shown)


def strays(output: str, tree: str = "shards") -> list[str]:
    """Files and symbolic links under ``output/tree`` that unishard did not write; none where no record says."""
    known = written_files(output)
    if known is None:
        return []
    return [f"{tree}/{path}" for path in files_under(join(output, tree), links=True) if f"{tree}/{path}" not in known]
