"""Confinement: an input path is read only when it leads into one of its roots.

A local path is compared where it really resolves (``os.path.realpath`` of the path and of every root), so a
symbolic link inside a root that leads out of it, to a file or through a folder on the way, is caught.
``ingest.follow_symlinks = true`` compares the normalised names instead and lets links lead anywhere. Remote paths
(``gs://``, ``s3://``) have no links: their normalised names are compared. A ``file://`` URL is a local path, its
percent-escapes decoded as a URL's path is; anything else is taken literally (``%2e%2e`` is a folder name, not
``..``). Ingest (manifest rows, matched files, sidecars) and the interleaved importers all check through here, so
the rule and its rejection (reason ``outside_root``) read the same everywhere.
"""

import os
import posixpath
import urllib.parse
from collections.abc import Sequence
from typing import Any

from schemas import reasons
from schemas.records.ledger import RejectItem

OPT_IN = "ingest.follow_symlinks = true"


def is_remote(path: str) -> bool:
    return "://" in path


def from_file_url(value: str) -> str:
    """The local path of a ``file://`` URL (percent-escapes decoded); any other value unchanged."""
    if value[:7].lower() == "file://":
        return urllib.parse.unquote(urllib.parse.urlparse(value).path)
    return value


def normalise(path: str) -> str:
    """Collapse ``.``, ``..`` and doubled slashes of a local path, or of a remote URL's path."""
    if is_remote(path):
        scheme, _, rest = path.partition("://")
        return f"{scheme}://{posixpath.normpath(rest)}" if rest else path
    return os.path.normpath(path)


def within(path: str, root: str) -> bool:
    """Whether ``path`` is ``root`` or below it (both already normalised or resolved)."""
    return path == root or path.startswith(root.rstrip("/") + "/")


def resolve(path: str, follow_symlinks: bool) -> str:
    """Where ``path`` leads: the real path of a local path, or the normalised name (remote, or links followed)."""
    if is_remote(path) or follow_symlinks:
        return normalise(path)
    return os.path.realpath(path)


def outside_root(what: str, path: str, roots: Sequence[str], follow_symlinks: bool, **detail: Any) -> RejectItem:
    """The ``outside_root`` rejection of ``path``: where it resolves, the roots, and how to let it in."""
    resolved = resolve(path, follow_symlinks)
    by_name = any(within(normalise(path), normalise(root)) for root in roots)
    if by_name and not follow_symlinks:
        how = f"a symbolic link leads out of the roots; set {OPT_IN} to follow links, or add {resolved}'s folder"
    else:
        how = "move the file under a root or add its folder"
    return RejectItem(
        reasons.OUTSIDE_ROOT,
        f"{what} resolves to {resolved}, outside the allowed roots {list(roots)}, and is never read; {how} to the "
        "input's roots",
        path=path,
        resolved=resolved,
        **detail,
    )


def confine(path: str, roots: Sequence[str], follow_symlinks: bool, what: str, **detail: Any) -> str:
    """Return ``path`` normalised when it leads into one of ``roots``.

    Args:
        path: A local path (absolute, or relative to the working directory) or a remote URL.
        roots: Folders the path may lead into (local, ``file://`` or remote).
        follow_symlinks: Compare names only, so symbolic links may lead out of the roots.
        what: Names the path for the rejection (``path 'img/a.jpg' in m.csv``).
        **detail: More detail for the rejection.

    Raises:
        RejectItem: ``outside_root`` when it leads out of every root (detail: ``path``, ``resolved``, ``detail``).
    """
    roots = [from_file_url(root) for root in roots]
    named = normalise(path)
    resolved = resolve(named, follow_symlinks)
    if any(within(resolved, resolve(normalise(root), follow_symlinks)) for root in roots):
        return named
    raise outside_root(what, named, roots, follow_symlinks, **detail)
