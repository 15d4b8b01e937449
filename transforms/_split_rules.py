"""The rules of splitting as pure functions: groups, anchors, pins, strata and minimums (no Beam).

``transforms.split`` runs them in Beam; ``plan_splits`` runs the same functions in memory, as the reference the
tests check the Beam transform against. How a split is decided:
1. **Groups.** A sample is a node ``1:<key>``; its interleaved document (``Sample.document_id``, set by
   the documents stage) and each configured metadata key (``group_by``: ``doc_id``, ``sku``,
   ``line+date``) is a node ``0:<fields>=<values>`` joined to every sample holding that value; duplicate links join
   two samples. Connected components (``transforms._components``, light string records only) merge them
   transitively, so a chain of duplicates or shared documents is one group.
2. **Anchor.** A group's anchor is its smallest node: a metadata token when it has one (a product id does not change
   when new photos of it arrive), else its smallest sample key. The group's place in ``[0, 1)`` is a hash of the
   salt and the anchor, cut into ranges by ``fractions`` (held-out splits from 0, by name, train last).
3. **Pins.** A group with a member pinned by ``shipped`` (incremental runs keep what shipped: a new photo of a
   shipped product joins the product's split), by ``earlier`` (a rebuild over an output split with the same
   settings pins each sample to the split it shipped in, so a new anchor cannot move it) or by the metadata
   field ``pin_field`` (a manifest's own split column) goes where its pins say; pins that disagree go to the pinned
   held-out split first by name (``test`` before ``validation``, train last), and the conflict is reported. So a
   sample that shipped held out never moves into train; a shipped train sample whose group now holds a held-out pin
   moves out of train. An incremental run cannot move a shipped sample (its shard is never rewritten): it stops
   (``changed_content.refuse_split_move``) and the launcher rebuilds. Every sample an earlier output held keeps
   ``was``, the split it shipped in, so the report counts the moves.
4. **Strata and minimums.** A group's stratum is the rarest stratum (domain plus the first ``stratify_by`` label) of
   its members. Each held-out split gets at least ``min_groups`` groups of each stratum: if hashing left it short,
   the unpinned train groups with the smallest hash move over. A stratum whose minimums would hold out more than
   ``max_heldout_share`` of its groups, or leave train none, is reported as too small and left to hashing.

Everything but the minimum top-ups is a pure function of the group, so an incremental run that adds inputs keeps
every earlier assignment whose group did not change; pinning with ``shipped`` or ``earlier`` keeps the top-ups too.
"""

import dataclasses
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from schemas.config.split import SplitConfig
from schemas.documents import DOCUMENT_ANNOTATION
from schemas.records.samples import Sample
from schemas.records.values import blank
from schemas.splits import SplitReport, StratumReport, StratumSplit
from transforms._components import components
from transforms.changed_content import refuse_split_move

_UNIT_BITS = 60
TOKEN_PREFIX = "0:"
EARLIER_NONE, EARLIER_KEPT, EARLIER_IGNORED = "none", "kept", "ignored"


@dataclasses.dataclass(frozen=True)
class SplitMember:
    """The light view of one sample that splitting reads."""

    key: str
    stratum: str
    pin: str = ""
    shipped: bool = False
    was: str = ""
    """The split an earlier run put the sample in: the one it sits in (``shipped``), or, in a rebuild, shipped in."""


@dataclasses.dataclass(frozen=True)
class SplitGroup:
    """One merged group with its place in the hash range and its split before minimum top-ups."""

    anchor: str
    size: int
    strata: tuple[tuple[str, int], ...]
    pins: tuple[tuple[str, int], ...]
    stratum: str
    unit: float
    split: str
    pinned: bool


@dataclasses.dataclass(frozen=True)
class StratumDecision:
    stratum: str
    groups: int
    by_split: tuple[tuple[str, int], ...]
    moved: tuple[tuple[str, str], ...]
    status: str


def key_node(key: str) -> str:
    return f"1:{key}"


def token_node(spec: str, values: list[Any]) -> str:
    return f"{TOKEN_PREFIX}{spec}={json.dumps(values, sort_keys=True, ensure_ascii=False, default=str)}"


def document_of(sample: Sample) -> str:
    """The interleaved document the documents stage put the sample in (``""`` when none)."""
    return sample.document_id


def group_tokens(metadata: Mapping[str, Any], group_by: Iterable[str], document: str = "") -> list[str]:
    """The group nodes of a sample: its document, if any, and one per ``group_by`` spec whose fields all hold a
    non-empty value."""
    tokens = [token_node(DOCUMENT_ANNOTATION, [document])] if document else []
    for spec in group_by:
        values = [metadata.get(field) for field in spec.split("+")]
        if all(not blank(value) for value in values):
            tokens.append(token_node(spec, values))
    return tokens


def token_edges(
    key: str, metadata: Mapping[str, Any], config: SplitConfig, document: str = ""
) -> list[tuple[str, str]]:
    return [(key_node(key), token) for token in group_tokens(metadata, config.group_by, document)]


def stratum_of(domain: str, metadata: Mapping[str, Any], stratify_by: Iterable[str]) -> str:
    """``domain`` alone, or ``domain/field=value`` for the first ``stratify_by`` field with a value."""
    for field in stratify_by:
        value = metadata.get(field)
        if not blank(value):
            return f"{domain}/{field}={value}"
    return domain


def heldout_order(config: SplitConfig) -> list[str]:
    """Held-out splits in the order they take hash ranges from 0 and win pin conflicts: by name, so the layout does
    not depend on the order of keys in a config file (``test`` before ``validation``)."""
    return sorted(name for name in config.fractions if name != config.train)


def first_split(names: Iterable[str], config: SplitConfig) -> str:
    """The split that wins among ``names``: held-out splits by name, then train, then names no longer configured
    (``""`` when there is none)."""
    order = [*heldout_order(config), config.train]
    found = [name for name in names if name]
    return min(found, key=lambda name: (order.index(name) if name in order else len(order), name), default="")


def member_of(key: str, domain: str, metadata: Mapping[str, Any], config: SplitConfig) -> SplitMember:
    """The light record of one sample: its key, stratum and the split its metadata pins it to (if a known one)."""
    pin = str(metadata.get(config.pin_field) or "").strip().lower()
    stratum = stratum_of(domain, metadata, config.stratify_by)
    return SplitMember(key, stratum, pin if pin in config.fractions else "")


def shipped_member(key: str, domain: str, metadata: Mapping[str, Any], split: str, config: SplitConfig) -> SplitMember:
    """A sample an earlier run wrote, pinned where it shipped (if that split still exists)."""
    member = member_of(key, domain, metadata, config)
    pin = split if split in config.fractions else member.pin
    return dataclasses.replace(member, pin=pin, shipped=True, was=split)


def unit_of(anchor: str, salt: str) -> float:
    """The group's place in ``[0, 1)``: a hash of the salt and the anchor."""
    digest = hashlib.sha256(f"{salt}\0{anchor}".encode()).hexdigest()
    return int(digest[:15], 16) / (1 << _UNIT_BITS)


def hashed_split(unit: float, config: SplitConfig) -> str:
    edge = 0.0
    for name in heldout_order(config):
        edge += config.fractions[name]
        if unit < edge:
            return name
    return config.train


def would_be_split(key: str, tokens: Iterable[str], found: Iterable[str], config: SplitConfig) -> str:
    """The split a sample that never reached splitting (removed earlier) would have joined: the split of a group it
    shares a token with (the first by precedence), else the hashed split of the group it would have anchored."""
    if not config.enabled:
        return "all"
    found = set(found)
    for name in [*heldout_order(config), config.train]:
        if name in found:
            return name
    return hashed_split(unit_of(min([*tokens, key_node(key)]), config.salt), config)


def decide_group(anchor: str, summary: tuple, sizes: Mapping[str, int], config: SplitConfig) -> SplitGroup:
    """The group's stratum (its rarest member stratum) and split before minimum top-ups."""
    size, strata, pins = summary
    stratum = min(strata, key=lambda name: (sizes.get(name, 0), name))
    unit = unit_of(anchor, config.salt)
    precedence = [*heldout_order(config), config.train]
    pinned = [name for name in precedence if pins.get(name)]
    split = pinned[0] if pinned else hashed_split(unit, config)
    return SplitGroup(
        anchor, size, tuple(sorted(strata.items())), tuple(sorted(pins.items())), stratum, unit, split, bool(pinned)
    )


def decide_stratum(
    stratum: str, by_split: Mapping[str, int], candidates: Iterable[tuple[float, str]], config: SplitConfig
) -> StratumDecision:
    """Move unpinned train groups (smallest hash first) into held-out splits short of ``min_groups``."""
    counts = Counter(by_split)
    total = sum(counts.values())
    heldout = [name for name in heldout_order(config) if config.fractions[name] > 0]
    need = config.min_groups * len(heldout)
    moved: list[tuple[str, str]] = []
    status = "ok"
    if need and (total - need < 1 or need > config.max_heldout_share * total):
        status = "too_small"
    elif need:
        queue = sorted(candidates)
        for name in heldout:
            while counts[name] < config.min_groups and queue:
                _, anchor = queue.pop(0)
                moved.append((anchor, name))
                counts[name] += 1
                counts[config.train] -= 1
        if any(counts[name] < config.min_groups for name in heldout):
            status = "unmet"
    return StratumDecision(stratum, total, tuple(sorted(counts.items())), tuple(moved), status)


def plan_splits(
    samples: Iterable[tuple[str, str, Mapping[str, Any]]],
    links: Iterable[tuple[str, str]],
    config: SplitConfig,
    shipped: Iterable[tuple] = (),
    earlier: Iterable[tuple[str, str, bool]] = (),
) -> tuple[dict[str, str], dict[str, StratumDecision]]:
    """In-memory mirror of ``AssignSplits`` from ``(key, domain, metadata[, document])`` (and shipped
    ``(key, domain, metadata, split[, document])``, and a rebuilt output's ``(key, split, pinned)``): the key -> split
    map of ``samples`` and the stratum decisions. Built from the same functions; tests use it as the reference for the
    Beam transform and for properties.

    Raises:
        ChangedContent: A shipped sample's group goes to another split than the one it sits in.
    """
    samples, shipped = list(samples), list(shipped)
    edges = [e for key, _, metadata, *doc in samples for e in token_edges(key, metadata, config, *doc)]
    edges += [e for key, _, metadata, _, *doc in shipped for e in token_edges(key, metadata, config, *doc)]
    edges += [(key_node(a), key_node(b)) for a, b in links]
    labels, _ = components(edges, config.rounds)
    by_node: dict[str, dict[str, list]] = {}
    for key, domain, metadata, *_ in samples:
        by_node.setdefault(key_node(key), {"member": [], "shipped": []})["member"].append(
            member_of(key, domain, metadata, config)
        )
    for row in shipped:
        by_node.setdefault(key_node(row[0]), {"member": [], "shipped": []})["shipped"].append(
            shipped_member(*row[:4], config)
        )
    for key, split, pinned in earlier:
        by_node.setdefault(key_node(key), {"member": [], "shipped": []}).setdefault("earlier", []).append(
            (split, pinned)
        )
    placed: dict[str, list[SplitMember]] = {}
    for node, joined in sorted(by_node.items()):
        joined["label"] = [labels[node]] if node in labels else []
        for anchor, member in place((node, joined), config):
            placed.setdefault(anchor, []).append(member)
    sizes = Counter(m.stratum for members in placed.values() for m in members)
    groups = []
    for anchor, members in placed.items():
        summary = (len(members), Counter(m.stratum for m in members), Counter(m.pin for m in members if m.pin))
        groups.append(decide_group(anchor, summary, sizes, config))
    final = {g.anchor: g.split for g in groups}
    decisions = {}
    need = max(1, config.min_groups * len(heldout_order(config)))
    for stratum in sorted({g.stratum for g in groups}):
        mine = [g for g in groups if g.stratum == stratum]
        candidates = sorted((g.unit, g.anchor) for g in mine if g.split == config.train and not g.pinned)[:need]
        decision = decide_stratum(stratum, Counter(g.split for g in mine), candidates, config)
        final.update(dict(decision.moved))
        decisions[stratum] = decision
    for anchor, members in placed.items():
        for member in members:
            if member.shipped:
                refuse_split_move(anchor, member.was, final[anchor])
    split_of = {m.key: final[anchor] for anchor, members in placed.items() for m in members if not m.shipped}
    return split_of, decisions


def place(element: tuple[str, dict], config: SplitConfig) -> Iterator[tuple[str, SplitMember]]:
    """Give a node's members their group anchor, pin and ``was``.

    A shipped copy of a key, or the split a rebuilt output held it in (``earlier``: ``(split, pinned)``, pinned when
    that output was split with the same settings), pins the new sample (the winning pin by ``first_split``, its own
    metadata pin included) and is not counted; a shipped sample without a new copy is placed as it is.
    """
    node, joined = element
    anchor = (list(joined["label"]) or [node])[0]
    shipped, earlier = list(joined["shipped"]), list(joined.get("earlier", ()))
    members = list(joined["member"])
    if not members:
        for member in shipped:
            yield anchor, member
        return
    pins = [m.pin for m in shipped] + [split for split, pinned in earlier if pinned and split in config.fractions]
    was = first_split([m.was for m in shipped] + [split for split, _ in earlier], config)
    for member in members:
        yield anchor, dataclasses.replace(member, pin=first_split([member.pin, *pins], config), was=was)


def build_report(
    decisions: Iterable[StratumDecision],
    counts: Iterable[tuple[tuple[str, str], int]],
    largest: Iterable[SplitGroup],
    conflicts: Iterable[SplitGroup],
    conflict_count: int,
    config: SplitConfig,
    left: Iterable[tuple[tuple[str, str], int]] = (),
    earlier: str = EARLIER_NONE,
) -> SplitReport:
    """Combine stratum decisions (groups, by each group's stratum) and sample counts (by each sample's stratum), with
    the samples that ``left`` the split an earlier output held them in (``(was, split)`` counts) and whether its
    assignments were kept (``earlier``)."""
    decided = {d.stratum: d for d in decisions}
    moved_to = {anchor: name for d in decided.values() for anchor, name in d.moved}  # a stratum's top-up moves
    samples: dict[str, Counter] = {}
    for (stratum, split), count in counts:
        samples.setdefault(stratum, Counter())[split] += count
    strata, totals = [], {name: {"samples": 0, "groups": 0} for name in config.fractions}
    for stratum in sorted(set(decided) | set(samples)):
        decision = decided.get(stratum, StratumDecision(stratum, 0, (), (), "ok"))
        groups, sample_counts = dict(decision.by_split), samples.get(stratum, Counter())
        total_samples = sum(sample_counts.values())
        splits = {}
        for name in config.fractions:
            totals[name]["samples"] += sample_counts[name]
            totals[name]["groups"] += groups.get(name, 0)
            splits[name] = StratumSplit(
                samples=sample_counts[name],
                groups=groups.get(name, 0),
                sample_fraction=round(sample_counts[name] / total_samples, 6) if total_samples else 0.0,
                group_fraction=round(groups.get(name, 0) / decision.groups, 6) if decision.groups else 0.0,
            )
        moved = dict(sorted(Counter(name for _, name in decision.moved).items()))
        strata.append(StratumReport(stratum=stratum, samples=total_samples, groups=decision.groups,
                                    status=decision.status, moved=moved, splits=splits))  # fmt: skip
    return SplitReport(
        config=config.model_dump(mode="json"),
        totals=totals,
        strata=strata,
        too_small=[s.stratum for s in strata if s.status == "too_small"],
        unmet=[s.stratum for s in strata if s.status == "unmet"],
        pin_conflicts=conflict_count,
        pin_conflict_examples=[{"anchor": g.anchor, "pins": dict(g.pins), "split": g.split} for g in conflicts],
        largest_groups=[
            {"anchor": g.anchor, "samples": g.size, "split": moved_to.get(g.anchor, g.split)} for g in largest
        ],
        earlier_assignments=earlier,
        moved_since_earlier=[{"from": was, "to": split, "samples": n} for (was, split), n in sorted(left)],
    )
