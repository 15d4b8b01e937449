"""What stops an incremental job: a shipped file with new content, a new item of a document already decided, or a
split group whose shipped samples would have to change split.

An incremental run never rewrites an earlier shard. When a source an earlier run kept (``kept_source_key`` of its
ledger rows) now holds other content (``refuse_changed_content``) or other metadata (``METADATA``, raised by
``transforms/incremental.py``), a new item belongs to a document the earlier run already decided
(``refuse_grown_document``), the text rows of such a document changed (``refuse_changed_texts``), or new samples join
shipped samples of different splits into one group (``refuse_split_move``, raised by ``transforms/split.py``), the job
raises ``ChangedContent``; the launcher recognises the sentence in the failed job's error (``changed_content``,
whatever the runner's wrapping) and rebuilds the whole output instead. Used by ``transforms/incremental.py``,
``transforms/split.py`` (the checks) and ``transforms/mark_replaced.py``.

Pure functions (no Beam).
"""

from collections.abc import Iterable, Iterator

from schemas import reasons
from schemas.records.ledger import LedgerRow

CHANGED = "changed content since it was written to"
DOCUMENT = "document "
SPLIT_GROUP = "split group "
METADATA = "(its metadata: a sidecar or manifest value)"
TEXTS = "(its text rows: one edited, added or removed)"
_REBUILD_FILE = (
    "an incremental run cannot take an old sample out of its shard, so the whole output is rebuilt and the new "
    "content replaces it, as it does for every other changed file (the job stops at the first one it meets; the "
    "rebuilt run lists them all, and each one's ledger row names its old key as replaces_key)"
)
_REBUILD_METADATA = (
    "an incremental run cannot rewrite the shard that holds its sample, so the whole output is rebuilt with the new "
    "metadata"
)
_REBUILD_DOCUMENT = (
    "an incremental run never rewrites an earlier docs shard, so the whole output is rebuilt and the document is "
    "assembled again with every image it has"
)
_REBUILD_TEXTS = (
    "an incremental run never rewrites an earlier docs shard, so the whole output is rebuilt and the document is "
    "assembled again with the text rows it has now"
)

_REBUILD_SPLIT = (
    "an incremental run cannot move a shipped sample out of its shard, so the whole output is rebuilt and the group "
    "goes whole to one split, the held-out one first (test before validation, train last); the rebuild names the "
    "samples' moves and splits/splits.json counts them (moved_since_earlier)"
)


class ChangedContent(RuntimeError):
    """A shipped sample's file now holds other content, or a decided document gained an item: an incremental run
    cannot rewrite the earlier shard that holds it, a rebuild does.

    The message carries ``CHANGED``, which survives every runner's wrapping of a failed job's error, so the launcher
    recognises it (``changed_content``).
    """


def changed_content(error: BaseException) -> str | None:
    """The ``ChangedContent`` sentence inside a failed job's error (a runner wraps it in its own), or ``None``."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        for line in str(error).splitlines():
            if CHANGED in line:
                line = line.split(f"{ChangedContent.__name__}: ", 1)[-1]
                return line.split(" [while running", 1)[0].strip()
        error = error.__cause__ or error.__context__
    return None


def rebuild_reason(sentence: str) -> str:
    """Why the launcher rebuilds the output after the stop ``sentence`` (a ``changed_content`` result)."""
    if sentence.startswith(DOCUMENT):
        return _REBUILD_TEXTS if TEXTS in sentence else _REBUILD_DOCUMENT
    if sentence.startswith(SPLIT_GROUP):
        return _REBUILD_SPLIT
    return _REBUILD_METADATA if METADATA in sentence else _REBUILD_FILE


def kept_source_key(pair: tuple[str, LedgerRow]) -> Iterator[tuple[str, str]]:
    """``(source, content key)`` of an earlier ledger row ``(key, row)`` whose sample was kept (is in a shard)."""
    key, row = pair
    if row.status == reasons.KEPT:
        yield row.source, key


def refuse_changed_content(element: tuple[str, dict[str, Iterable[str]]], output: str) -> None:
    """Stop the incremental job when a source an earlier run shipped now has different content.

    Its old sample sits in an earlier shard, which incremental runs never rewrite, and the ledger has one row per
    source: keeping both would put a sample in the shards that no input accounts for, so the job stops and the
    launcher rebuilds the output.
    """
    source, keys = element
    now, kept = set(keys["now"]), set(keys["kept"])
    if now and kept and not now & kept:
        raise ChangedContent(f"{source} {CHANGED} {output} (key {min(kept)} is now {min(now)})")


def refuse_grown_document(element: tuple[str, dict[str, Iterable]], output: str) -> None:
    """Stop the incremental job when a new item belongs to a document an earlier run already decided.

    That document sits in an earlier docs shard (or its ledger row says why it was dropped without the new image);
    incremental runs never rewrite shards, so the launcher rebuilds the output and assembles it with every image.
    """
    doc_id, found = element
    sources, earlier = sorted(found["new"]), list(found["earlier"])
    if sources and earlier:
        raise ChangedContent(f"{DOCUMENT}{doc_id} {CHANGED} {output} (new member {sources[0]})")


def refuse_split_move(anchor: str, shipped_in: str, split: str) -> None:
    """Stop the incremental job when a group holding a sample shipped in ``shipped_in`` now goes to another split.

    New samples joined it to shipped samples of another split (a near copy of a test photo carrying a train photo's
    SKU), or one of them is pinned to a split that wins over where it shipped. The shipped sample sits in an earlier
    shard, which incremental runs never rewrite: leaving it there splits the group across two splits, so the job
    stops and the launcher rebuilds the output with the group in one split.
    """
    if shipped_in and shipped_in != split:
        raise ChangedContent(
            f"{SPLIT_GROUP}{anchor} {CHANGED} the shards (a sample shipped in {shipped_in}, the group now goes to "
            f"{split})"
        )


def refuse_changed_texts(element: tuple[str, dict[str, Iterable]], output: str) -> None:
    """Stop the incremental job when the text rows of a document an earlier run decided changed since.

    ``element``: a document id with its text fingerprint ``now`` and the ``earlier`` one (none where it had no text
    rows), and whether the earlier run ``decided`` it (its row in ``OUT/ledger_documents/``). Its texts sit in an
    earlier docs shard (or its ledger row was decided with the old texts); only a rebuild assembles it again.
    """
    doc_id, found = element
    now, earlier, decided = set(found["now"]), set(found["earlier"]), any(found["decided"])
    if decided and now != earlier:
        raise ChangedContent(f"{DOCUMENT}{doc_id} {CHANGED} {output} {TEXTS}")
