"""Read a shard tar's members, checking its structure on the way: every member a regular file at the top level with
an extension, keys lowercase hex without a dot, a sample's members adjacent and never twice, and a clean
end-of-archive marker (a truncated or corrupted shard is caught). ``pipeline.validate.check_shard`` then checks what
the members hold.
"""

import os
import re
import tarfile

KEY_PATTERN = re.compile(r"[0-9a-f]+")
_BLOCK = 512


def read_members(handle, samples: dict[str, dict[str, bytes]], order: list[str]) -> tuple[int, list[str]]:
    """Read every member of a seekable tar into ``samples``; return the file size and the problems found."""
    size = handle.seek(0, os.SEEK_END)
    handle.seek(0)
    problems = []
    last = None
    end = 0
    try:
        with tarfile.open(fileobj=handle, mode="r:") as tar:
            for member in tar:
                name = member.name
                if not member.isfile():
                    problems.append(f"member {name!r} is not a regular file")
                    continue
                content = tar.extractfile(member).read()
                if len(content) != member.size:
                    raise tarfile.ReadError(f"unexpected end of data in member {name!r}")
                if "/" in name:
                    problems.append(f"member {name!r} is inside a folder")
                key, dot, ext = name.rpartition("/")[2].partition(".")
                if not dot or not ext:
                    problems.append(f"member {name!r} has no extension")
                    continue
                if not KEY_PATTERN.fullmatch(key):
                    problems.append(f"member {name!r}: key {key!r} is not lowercase hex")
                if key != last and key in samples:
                    problems.append(f"members of {key} are not adjacent (webdataset would split the sample)")
                if ext in samples.setdefault(key, {}):
                    problems.append(f"member {name!r} appears twice")
                samples[key][ext] = content
                if key != last:
                    order.append(key)
                last = key
            end = tar.offset
    except (tarfile.TarError, EOFError, OSError, ValueError) as error:
        return size, [*problems, f"truncated or corrupted after {len(order)} samples: {error}"]
    handle.seek(end)
    tail = handle.read()
    if size % _BLOCK or len(tail) < 2 * _BLOCK or tail.strip(b"\0"):
        problems.append(
            f"truncated or corrupted: no clean end-of-archive marker after {len(order)} samples ({size} bytes)"
        )
    return size, problems
