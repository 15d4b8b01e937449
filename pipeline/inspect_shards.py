"""``unishard inspect SHARD.tar [KEY] [--extract DIR]``: look inside one shard from a terminal.

Without a key it lists the samples (key, members, domain, text); with a key it prints that sample's JSON and text.
``--extract DIR`` writes the images (of the key, or of every sample) to ``DIR/KEY.EXT``, never over an existing file
or through a symbolic link (one holding other bytes is skipped with a message). Shard text is untrusted:
control and bidirectional-override characters are shown as escapes so a caption cannot drive the terminal.
"""

import argparse
import json
import os
import re
import sys
import tarfile
import unicodedata
from typing import TextIO

from apache_beam.io.filesystems import FileSystems

from pipeline.tar_members import KEY_PATTERN

_EXT = re.compile(r"[a-z0-9]+(\.[a-z0-9]+)*")
TEXT_MEMBERS = ("json", "txt")


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("inspect", help="list a shard's samples or show one", allow_abbrev=False)
    parser.add_argument("shard", help="a shard tar (shards/<view>/<split>/shard-NNNNNN.tar)")
    parser.add_argument("key", nargs="?", help="a sample key: print its JSON and text")
    parser.add_argument("--extract", metavar="DIR", help="write the images (of KEY, or of every sample) into DIR")


def printable(text: str, keep_newlines: bool = False) -> str:
    """``text`` with control, format and bidi characters escaped (``\\x1b`` -> ``\\x1b`` shown literally)."""
    out = []
    for char in text:
        if keep_newlines and char in "\n\t":
            out.append(char)
        elif unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp"):
            out.append(char.encode("unicode_escape").decode("ascii"))
        else:
            out.append(char)
    return "".join(out)


def read_shard(path: str) -> tuple[dict[str, dict[str, bytes]], list[str]]:
    """Every sample of a tar by key and extension, in tar order; raises ``tarfile.TarError`` if unreadable."""
    samples: dict[str, dict[str, bytes]] = {}
    order: list[str] = []
    with FileSystems.open(path, compression_type="uncompressed") as handle, tarfile.open(fileobj=handle) as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, _, ext = member.name.rpartition("/")[2].partition(".")
            if key not in samples:
                order.append(key)
            samples.setdefault(key, {})[ext] = tar.extractfile(member).read()
    return samples, order


def _record(members: dict[str, bytes]) -> dict:
    try:
        record = json.loads(members.get("json", b"{}"))
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def list_samples(path: str, samples: dict[str, dict[str, bytes]], order: list[str], out: TextIO) -> None:
    out.write(f"{printable(path)}: {len(order)} samples\n")
    rows = []
    for key in order:
        members = samples[key]
        record = _record(members)
        text = members.get("txt", b"").decode("utf-8", errors="replace") or str(record.get("text", ""))
        rows.append(
            (
                printable(key),
                " ".join(f"{printable(ext)}:{_size(len(data))}" for ext, data in sorted(members.items())),
                printable(str(record.get("domain", ""))),
                printable(" ".join(text.split()))[:80],
            )
        )
    widths = [
        max([len(header), *(len(row[i]) for row in rows)]) for i, header in enumerate(("KEY", "MEMBERS", "DOMAIN"))
    ]
    out.write(f"{'KEY':<{widths[0]}}  {'MEMBERS':<{widths[1]}}  {'DOMAIN':<{widths[2]}}  TEXT\n")
    for row in rows:
        out.write(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}\n")


def show_sample(key: str, members: dict[str, bytes], out: TextIO) -> None:
    out.write(f"key: {printable(key)}\n")
    out.write(
        "members: "
        + ", ".join(f"{printable(key)}.{printable(e)} ({len(d):,} bytes)" for e, d in sorted(members.items()))
        + "\n"
    )
    if "json" in members:
        try:
            pretty = json.dumps(json.loads(members["json"]), indent=2, sort_keys=True, ensure_ascii=False)
        except ValueError:
            pretty = members["json"].decode("utf-8", errors="replace")
        out.write("json:\n" + printable(pretty, keep_newlines=True) + "\n")
    if "txt" in members:
        out.write("text:\n" + printable(members["txt"].decode("utf-8", errors="replace"), keep_newlines=True) + "\n")


def extract(samples: dict[str, dict[str, bytes]], keys: list[str], folder: str, out: TextIO) -> int:
    """Write the image members of ``keys`` to ``folder``; unsafe names and names already taken are skipped."""
    os.makedirs(folder, exist_ok=True)
    written = 0
    for key in keys:
        for ext, data in sorted(samples[key].items()):
            if ext in TEXT_MEMBERS:
                continue
            if not KEY_PATTERN.fullmatch(key) or not _EXT.fullmatch(ext):
                out.write(f"skipped {printable(key)}.{printable(ext)}: not a safe file name\n")
                continue
            target = os.path.join(folder, f"{key}.{ext}")
            try:
                with open(target, "xb") as handle:
                    handle.write(data)
            except FileExistsError:
                if os.path.islink(target) or not _holds(target, data):
                    out.write(f"skipped {target}: a different file is already there\n")
                    continue
                out.write(f"kept {target}: already extracted\n")
                written += 1
                continue
            out.write(f"wrote {target}\n")
            written += 1
    return written


def _holds(path: str, data: bytes) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read() == data
    except OSError:
        return False


def main(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        samples, order = read_shard(args.shard)
    except FileNotFoundError:
        err.write(f"unishard: {args.shard}: no such shard\n")
        return 2
    except (tarfile.TarError, EOFError, OSError) as error:
        err.write(f"unishard: {args.shard}: not a readable tar ({error}); run `unishard validate` on its output\n")
        return 1
    keys = order
    if args.key:
        if args.key not in samples:
            err.write(f"unishard: {printable(args.key)} is not in {args.shard} ({len(order)} samples)\n")
            return 1
        keys = [args.key]
        show_sample(args.key, samples[args.key], out)
    else:
        list_samples(args.shard, samples, order, out)
    if args.extract:
        try:
            extract(samples, keys, args.extract, out)
        except OSError as error:  # a file at the folder's name, a folder that cannot be written
            err.write(f"unishard: --extract {args.extract}: cannot write images there ({error}); name a folder\n")
            return 2
    return 0


def _size(count: int) -> str:
    for unit in ("B", "K", "M", "G"):
        if count < 1024 or unit == "G":
            return f"{count}{unit}" if unit == "B" else f"{count:.0f}{unit}"
        count /= 1024
    return f"{count:.0f}G"
