"""Reason codes for every rejection and failure, in one place.

A reason code is a stable snake_case string written into the ledger, the report and the shard statistics.
Reports compare runs by these strings, so a code is never renamed: add a new one instead.
"""

# Ingest: the input item could not be turned into bytes to decode.
MISSING_FILE = "missing_file"
OUTSIDE_ROOT = "outside_root"
MALFORMED_SIDECAR = "malformed_sidecar"
ORPHAN_SIDECAR = "orphan_sidecar"
MALFORMED_MANIFEST_ROW = "malformed_manifest_row"
UNREADABLE_INPUT = "unreadable_input"
WEB_URL = "web_url"  # a manifest row names an http(s) address and no downloaded copy sits beside the manifest

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

# Model stages: no usable caption candidate and no captioner; CLIP score below the threshold of its group.
NO_CAPTION = "no_caption"
LOW_CLIP_SCORE = "low_clip_score"

# Image quality, measured without model weights (in the order a sample failing several gets its code).
TEXT_HEAVY = "text_heavy"
UNDEREXPOSED = "underexposed"
OVEREXPOSED = "overexposed"
LOW_CONTRAST = "low_contrast"
BLURRY = "blurry"

# Safety and privacy.
FACE_PRESENT = "face_present"
UNSAFE_IMAGE = "unsafe_image"
UNSAFE_TEXT = "unsafe_text"

# Interleaved documents. Imports: an image reference with no local file, an import line that is not a document.
UNRESOLVABLE_IMAGE = "unresolvable_image"
MALFORMED_DOCUMENT = "malformed_document"
# An image that left its document (the image itself stays kept in the pairs view).
IMAGE_UNPLACED = "image_unplaced"
IMAGE_BELOW_MIN_SIMILARITY = "image_below_min_similarity"
# A document dropped after curation, or not written to the docs view (document ledger only).
DOCUMENT_TOO_FEW_IMAGES = "document_too_few_images"
DOCUMENT_TOO_LITTLE_TEXT = "document_too_little_text"
DOCUMENT_SPLIT_CONFLICT = "document_split_conflict"
DOCUMENT_NOT_SAMPLED = "document_not_sampled"

# Unexpected exceptions: the detail carries the exception type and message.
EXCEPTION = "exception"

# Status values of a ledger row.
KEPT = "kept"
REJECTED = "rejected"
FAILED = "failed"
STATUSES = (KEPT, REJECTED, FAILED)
