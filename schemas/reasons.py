"""Reason codes for every rejection and failure, in one place.

A reason code is a stable snake_case string written into the ledger, the report and the shard statistics.
Reports compare runs by these strings, so a code is never renamed: add a new one instead.
"""

# Ingest: the input item could not be turned into bytes to decode.
MISSING_FILE = "missing_file"
OUTSIDE_ROOT = "outside_root"
MALFORMED_SIDECAR = "malformed_sidecar"
MALFORMED_MANIFEST_ROW = "malformed_manifest_row"
UNREADABLE_INPUT = "unreadable_input"

# Normalise: the bytes are not a usable image.
EMPTY_FILE = "empty_file"
NOT_AN_IMAGE = "not_an_image"
TRUNCATED = "truncated"
DECOMPRESSION_BOMB = "decompression_bomb"
UNSUPPORTED_IMAGE = "unsupported_image"
TOO_SMALL = "too_small"
NO_TEXT = "no_text"

# Deduplication.
EXACT_DUPLICATE = "exact_duplicate"
PIXEL_DUPLICATE = "pixel_duplicate"
NEAR_DUPLICATE = "near_duplicate"
SEMANTIC_DUPLICATE = "semantic_duplicate"
EVAL_CONTAMINATION = "eval_contamination"

# Safety and privacy.
FACE_PRESENT = "face_present"
UNSAFE_IMAGE = "unsafe_image"
UNSAFE_TEXT = "unsafe_text"

# Unexpected exceptions: the detail carries the exception type and message.
EXCEPTION = "exception"

# Status values of a ledger row.
KEPT = "kept"
REJECTED = "rejected"
FAILED = "failed"
STATUSES = (KEPT, REJECTED, FAILED)
