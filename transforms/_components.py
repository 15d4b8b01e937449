"""Connected components of a large graph in Beam, without holding the graph in one place.

Input: edges ``(a, b)`` between string node ids. Output: ``(node, label)`` for every node in an edge, where the label
is the smallest node id of its component (so the caller chooses what anchors a component by how it names nodes).

The method is Kiveris et al., "Connected Components in MapReduce and Beyond" (SoCC 2014): alternating *large-star*
and *small-star* rounds, each one ``GroupByKey`` over edges, turn every component into a star around its smallest
node in O(log^2 n) rounds. Beam has no loops, so a fixed number of rounds is unrolled; whatever has not become a star
by then (usually nothing: documents and duplicate clusters are stars from the first round) is finished by one
union-find over just those edges. The result is exact for any round count, including zero: the rounds only shrink
the residue. Metric: ``split/residual_edges``.
"""

from collections.abc import Iterable, Iterator

import apache_beam as beam
from apache_beam import pvalue

GOOD = "good"
BAD = "bad"


def orient(edge: tuple[str, str]) -> Iterator[tuple[str, str]]:
    """Yield the edge as ``(larger, smaller)``; self-loops carry no connectivity and are dropped."""
    a, b = edge
    if a != b:
        yield (a, b) if a > b else (b, a)


def large_star(node: str, neighbours: Iterable[str]) -> Iterator[tuple[str, str]]:
    """Connect every larger neighbour of ``node`` to the smallest node of its neighbourhood."""
    neighbours = set(neighbours)
    smallest = min(neighbours | {node})
    for neighbour in sorted(neighbours):
        if neighbour > node:
            yield neighbour, smallest


def small_star(node: str, smaller: Iterable[str]) -> Iterator[tuple[str, str]]:
    """Connect ``node`` and its smaller neighbours to the smallest of them."""
    members = set(smaller) | {node}
    smallest = min(members)
    for member in sorted(members):
        if member != smallest:
            yield member, smallest


def good_parent(parents: Iterable[str], root_parents: Iterable[str]) -> str | None:
    """The single parent of a node already in a finished star (its only parent is a root), else ``None``."""
    parents = set(parents)
    if len(parents) == 1 and parents <= set(root_parents):
        return next(iter(parents))
    return None


def union_find(edges: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Label every node of ``edges`` with the smallest node of its component."""
    parent: dict[str, str] = {}

    def find(node: str) -> str:
        parent.setdefault(node, node)
        root = node
        while parent[root] != root:
            root = parent[root]
        while parent[node] != root:
            parent[node], node = root, parent[node]
        return root

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {node: find(node) for node in sorted(parent)}


def components(edges: Iterable[tuple[str, str]], rounds: int) -> tuple[dict[str, str], int]:
    """In-memory mirror of ``ConnectedComponents`` built from the same per-node functions; returns the labels and
    the number of edges left to the final union-find. Tests compare it with plain union-find."""
    current = {oriented for edge in edges for oriented in orient(edge)}
    for _ in range(rounds):
        around: dict[str, set[str]] = {}
        for a, b in current:
            around.setdefault(a, set()).add(b)
            around.setdefault(b, set()).add(a)
        current = {e for node, ns in around.items() for e in large_star(node, ns)}
        smaller: dict[str, set[str]] = {}
        for a, b in current:
            smaller.setdefault(a, set()).add(b)
        current = {e for node, ns in smaller.items() for e in small_star(node, ns)}
    parents: dict[str, set[str]] = {}
    for a, b in current:
        parents.setdefault(a, set()).add(b)
    roots = {b for _, b in current} - set(parents)
    good = {node: p for node, ps in parents.items() if (p := good_parent(ps, roots & ps)) is not None}
    bad = {(a, b) for a, b in current if a not in good}
    in_bad = {node for edge in bad for node in edge}
    residue = bad | {(a, b) for a, b in good.items() if a in in_bad}
    labels = union_find(residue)
    for node, root in good.items():
        labels.setdefault(node, labels.get(root, root))
        labels.setdefault(root, root)
    return labels, len(residue)


class ConnectedComponents(beam.PTransform):
    """Label each node of an edge PCollection with the smallest node id of its connected component."""

    def __init__(self, rounds: int = 3):
        super().__init__()
        self._rounds = rounds

    def expand(self, edges: beam.PCollection) -> beam.PCollection:
        current = edges | "Orient" >> beam.FlatMap(orient)
        for index in range(self._rounds):
            current = (
                current
                | f"Around{index}" >> beam.FlatMap(lambda e: [(e[0], e[1]), (e[1], e[0])])
                | f"GroupAround{index}" >> beam.GroupByKey()
                | f"LargeStar{index}" >> beam.FlatMapTuple(large_star)
                | f"GroupSmaller{index}" >> beam.GroupByKey()
                | f"SmallStar{index}" >> beam.FlatMapTuple(small_star)
            )
        return current | "Finish" >> _Finish()


class _Finish(beam.PTransform):
    """Keep finished stars as they are; union-find the rest in one place."""

    def expand(self, edges: beam.PCollection) -> beam.PCollection:
        classified = (
            (
                edges | "AsChild" >> beam.MapTuple(lambda a, b: (a, ("parent", b))),
                edges | "AsParent" >> beam.MapTuple(lambda a, b: (b, ("child", a))),
            )
            | "FlattenRoles" >> beam.Flatten()
            | "GroupRoles" >> beam.GroupByKey()
            | "TellChildren" >> beam.FlatMapTuple(_tell_children)
            | "GroupTold" >> beam.GroupByKey()
            | "Classify" >> beam.FlatMapTuple(_classify).with_outputs(GOOD, BAD)
        )
        good, bad = classified[GOOD], classified[BAD]
        in_bad = (
            bad
            | "BadNodes" >> beam.FlatMap(lambda e: [(e[0], True), (e[1], True)])
            | "GroupBadNodes" >> beam.CombinePerKey(any)
        )
        routed = (
            {"good": good, "bad": in_bad}
            | "JoinGoodBad" >> beam.CoGroupByKey()
            | "Route" >> beam.FlatMapTuple(_route).with_outputs(GOOD, main="residue")
        )
        residue = (bad, routed.residue) | "Residue" >> beam.Flatten()
        solved = residue | "GatherResidue" >> beam.combiners.ToList() | "UnionFind" >> beam.ParDo(_UnionFindFn())
        settled = (
            {"solved": solved, "child": routed[GOOD] | "ByParent" >> beam.MapTuple(lambda a, b: (b, a))}
            | "JoinStars" >> beam.CoGroupByKey()
            | "LabelStars" >> beam.FlatMapTuple(_label_star)
        )
        return (solved, settled) | "AllLabels" >> beam.Flatten()


def _tell_children(node: str, roles: Iterable[tuple[str, str]]) -> Iterator[tuple[str, tuple[str, str, bool]]]:
    roles = list(roles)
    parents = sorted({other for role, other in roles if role == "parent"})
    for role, other in roles:
        if role == "child":
            yield other, ("parent_is_root", node, not parents)
    for parent in parents:
        yield node, ("parent", parent, False)


def _classify(node: str, told: Iterable[tuple[str, str, bool]]) -> Iterator:
    told = list(told)
    parents = {other for role, other, _ in told if role == "parent"}
    roots = {other for role, other, is_root in told if role == "parent_is_root" and is_root}
    parent = good_parent(parents, roots)
    if parent is not None:
        yield pvalue.TaggedOutput(GOOD, (node, parent))
    else:
        for other in sorted(parents):
            yield pvalue.TaggedOutput(BAD, (node, other))


def _route(node: str, joined: dict) -> Iterator:
    for parent in joined["good"]:
        if list(joined["bad"]):
            yield node, parent
        else:
            yield pvalue.TaggedOutput(GOOD, (node, parent))


def _label_star(root: str, joined: dict) -> Iterator[tuple[str, str]]:
    solved = list(joined["solved"])
    label = solved[0] if solved else root
    if not solved:
        yield root, root
    for child in joined["child"]:
        yield child, label


class _UnionFindFn(beam.DoFn):
    def __init__(self):
        self._residual = beam.metrics.Metrics.counter("split", "residual_edges")

    def process(self, residue: list[tuple[str, str]]) -> Iterator[tuple[str, str]]:
        self._residual.inc(len(residue))
        yield from union_find(sorted(residue)).items()
