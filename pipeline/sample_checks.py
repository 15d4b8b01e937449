"""What is wrong with one shard sample, from its tar members alone: pure checks, no file access.

A ``pairs`` sample's JSON must validate against ``SampleRecord``, name its own key, and match its ``txt`` member and
its image's SHA-256, with no other member. A ``docs`` sample's JSON must parse as a ``DocumentRecord`` whose images
are exactly its other members, each matching its hash (``document_problems``). In the other views, every
``{member, image_sha256}`` object in the JSON is checked against that member. ``pipeline.validate`` runs these on
every sample of every shard.
"""

import hashlib
import json
from typing import Any

from schemas.documents import parse_document
from schemas.shard import SampleRecord

PAIRS_VIEW = "pairs"
DOCS_VIEW = "docs"


def sample_problems(key: str, members: dict[str, bytes], view: str) -> list[str]:
    if "json" not in members:
        return [f"sample {key} has no json member"]
    try:
        record = json.loads(members["json"])
    except (ValueError, UnicodeDecodeError) as error:
        return [f"sample {key}: json member is not valid JSON ({error})"]
    if not isinstance(record, dict):
        return [f"sample {key}: json member is not an object"]
    if view == DOCS_VIEW:
        found = [] if record.get("key", key) == key else [f"sample {key}: json names key {record.get('key')!r}"]
        return found + [f"sample {key}: {problem}" for problem in document_problems(members)]
    if view != PAIRS_VIEW:
        problems = [] if record.get("key", key) == key else [f"sample {key}: json names key {record.get('key')!r}"]
        for member, digest in _image_references(record):
            if member not in members:
                problems.append(f"sample {key} has no member {member!r} that its json names")
            elif hashlib.sha256(members[member]).hexdigest() != digest:
                problems.append(
                    f"sample {key}: {member} bytes do not match image_sha256 in its json (tampered or corrupted)"
                )
        return problems
    try:
        parsed = SampleRecord.model_validate(record)
    except ValueError as error:
        return [f"sample {key}: json does not match the sample schema: {_first_line(error)}"]
    problems = []
    if parsed.key != key:
        problems.append(f"sample {key}: json names key {parsed.key!r}")
    if "txt" not in members:
        problems.append(f"sample {key} has no txt member")
    elif members["txt"] != parsed.text.encode("utf-8"):
        problems.append(f"sample {key}: txt member differs from the json text")
    image_ext = parsed.image_member.partition(".")[2]
    if image_ext not in members:
        problems.append(f"sample {key} has no image member {parsed.image_member!r}")
    elif hashlib.sha256(members[image_ext]).hexdigest() != parsed.image_sha256:
        problems.append(f"sample {key}: image bytes do not match image_sha256 in its json (tampered or corrupted)")
    extra = sorted(set(members) - {"json", "txt", image_ext})
    if extra:
        problems.append(f"sample {key} has unexpected members {extra}")
    return problems


def document_problems(members: dict[str, bytes]) -> list[str]:
    """What is wrong with one ``docs`` sample, given its tar members by suffix (``json``, ``0.jpg``...).

    The JSON must parse as a supported ``DocumentRecord`` version, every image it names must be
    a member whose SHA-256 matches, and no other member may exist. An empty list means the sample is sound.
    """
    if "json" not in members:
        return ["no json member"]
    try:
        record = parse_document(json.loads(members["json"]))
    except ValueError as error:  # pydantic.ValidationError and json.JSONDecodeError are ValueErrors
        return [f"json does not parse as a document: {error}"]
    problems = []
    named = {meta.member: meta for meta in record.image_metadata if meta is not None}
    for member, meta in named.items():
        if member not in members:
            problems.append(f"image member {member} is missing")
        elif hashlib.sha256(members[member]).hexdigest() != meta.image_sha256:
            problems.append(f"image member {member} does not match its image_sha256")
    if extra := sorted(set(members) - set(named) - {"json"}):
        problems.append(f"members the JSON does not name: {extra}")
    return problems


def _image_references(node: Any) -> list[tuple[str, str]]:
    """``(member, image_sha256)`` of every object in a JSON value naming both (the docs and edit views' images)."""
    found = []
    if isinstance(node, dict):
        if isinstance(node.get("member"), str) and isinstance(node.get("image_sha256"), str):
            found.append((node["member"], node["image_sha256"]))
        for value in node.values():
            found.extend(_image_references(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_image_references(value))
    return found


def _first_line(error: Exception) -> str:
    return " ".join(str(error).split("\n")[:3])
