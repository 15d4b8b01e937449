"""``LedgerRow``: where one input item ended, its constructors ``rejected`` and ``failed``, and ``RejectItem``,
which a stage's pure logic raises to reject an item."""

import dataclasses
import json
from typing import Any

from schemas import reasons
from schemas.compact import hex_bytes, hex_text, packed, unpacked
from schemas.records.values import map_strings, printable


@dataclasses.dataclass(frozen=True)
class LedgerRow:
    """Where one input item ended: kept, rejected with a reason, or failed with the error.

    Attributes:
        source: The ``InputItem.source``; unique across the ledger of a run.
        key: The sample key, or ``None`` when the item never decoded.
        status: ``kept``, ``rejected`` or ``failed``.
        stage: The stage that decided (``ingest``, ``normalise``, ``exact_dedup``, ``write_shards``...).
        reason: A code from ``schemas.reasons`` (empty for kept rows).
        detail: JSON text with what a person needs: the survivor of a duplicate, the error, the shard written.
        domain: Data domain, for per-domain funnels.
        split: The split a kept item was written to (empty otherwise).
        document_id: The interleaved document an item dropped before it was read belonged to (an imported image
            that resolved to no file), so the documents stage lists it among the images that left; empty otherwise.
            Not a ledger column (``detail`` names it for people).
    """

    source: str
    key: str | None
    status: str
    stage: str
    reason: str
    detail: str = "{}"
    domain: str = ""
    split: str = ""
    document_id: str = ""

    def __post_init__(self):
        if self.status not in reasons.STATUSES:
            raise ValueError(f"ledger status must be one of {reasons.STATUSES}, got {self.status!r}")

    def __reduce__(self) -> tuple:
        values = (self.source, hex_bytes(self.key), self.status, self.stage, self.reason, self.detail, self.domain)
        return _ledger_row, (packed((*values, self.split, self.document_id)),)


def _ledger_row(blob: bytes) -> LedgerRow:
    source, key, *rest = unpacked(blob)
    return LedgerRow(source, hex_text(key), *rest)


def detail_json(**fields: Any) -> str:
    """Serialise ledger detail fields canonically (sorted keys), so ledgers compare byte for byte.

    A file name that is not UTF-8 (in an error message, a path) is shown with its odd bytes as ``\\xNN``: the
    ledger's text columns hold UTF-8 only.
    """
    text = json.dumps(fields, sort_keys=True, ensure_ascii=False, default=str)
    if printable(text) == text:
        return text
    return json.dumps(map_strings(json.loads(text), printable), sort_keys=True, ensure_ascii=False)


def rejected(
    stage: str, reason: str, source: str, key: str | None = None, domain: str = "", **detail: Any
) -> LedgerRow:
    """Build the ledger row of an item a stage rejected on purpose."""
    return LedgerRow(source, key, reasons.REJECTED, stage, reason, detail_json(**detail), domain)


def failed(stage: str, source: str, error: BaseException, key: str | None = None, domain: str = "") -> LedgerRow:
    """Build the ledger row of an item whose processing raised an unexpected exception."""
    detail = detail_json(error_type=type(error).__name__, error=str(error))
    return LedgerRow(source, key, reasons.FAILED, stage, reasons.EXCEPTION, detail, domain)


class RejectItem(Exception):
    """Raised by a stage's pure logic to reject the item it is working on with a reason code.

    The stage's DoFn turns it into a ``rejected`` ledger row; any other exception becomes a ``failed`` row.
    """

    def __init__(self, reason: str, message: str = "", **detail: Any):
        super().__init__(message or reason)
        self.reason = reason
        self.detail = {"message": message, **detail} if message else detail
