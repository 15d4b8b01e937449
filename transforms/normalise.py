"""Normalise: decode each image once, convert it to 8-bit sRGB, orient, resize, strip metadata and re-encode.

Input element type: ``InputItem`` with bytes. Output: ``Sample`` (key, original and normalised facts, content
hashes, perceptual hashes, and the normalised image: written once into the run's image store, ``image_ref``, when
the transform is given one, inline otherwise; see ``transforms.image_store``). Given ``quality_side``, the quality
measures of the normalised pixels (``transforms/quality_measures.py``, on a copy at most that long) go into
``scores`` too, so the quality stage decodes nothing: measuring here, on pixels already in memory, saves a second
decode of every image (``benchmarks/bench_quality.py``: quality CPU 0.079 of normalise's, 0.10 decoding). The
format is detected from the content, never from the extension. HEIF/HEIC photos are read when the ``heif`` extra
(pillow-heif) is installed; without it they are rejected as ``unsupported_image`` with a detail that says how to read
them. A file Pillow cannot identify is ``unsupported_image`` when it starts like an image (damaged, or a variant Pillow
lacks) and ``not_an_image`` otherwise (``transforms._unreadable``). A camera raw file is ``unsupported_image`` too,
named by its signature or by the reduced-resolution preview a TIFF-based raw puts first, so that preview never
ships as the photo. A title, caption and keywords embedded in the file (``transforms/embedded_text.py``) fill the
sample's ``title``, ``description`` and ``keywords`` where its sidecar or manifest leaves them empty.

Reason codes: ``empty_file``, ``not_an_image``, ``truncated``, ``decompression_bomb``, ``unsupported_image``,
``too_small``. Config section: ``normalise``. Metrics: ``normalise/rejected``, ``normalise/failed``.
"""

import hashlib
import io
import re
import warnings
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import apache_beam as beam
from PIL import Image, ImageCms, ImageFile, UnidentifiedImageError

from schemas import reasons
from schemas.config.normalise import NormaliseConfig
from schemas.records.inputs import InputItem
from schemas.records.ledger import RejectItem
from schemas.records.samples import ImageInfo, Sample
from schemas.records.values import printable
from transforms._annotation_files import boxes_in_image
from transforms._bit_depth import HIGH_DEPTH_MODES, to_8bit
from transforms._common import StageFn, apply_stage
from transforms._unreadable import camera_raw, decode_hint, raw_preview, unidentified
from transforms.embedded_text import embedded_text
from transforms.hashing import perceptual_hashes
from transforms.image_store import store_image
from transforms.quality_measures import analysis_copy, measure

try:
    from pillow_heif import register_heif_opener
except ImportError:  # without the ``heif`` extra, a HEIF/HEIC file is rejected with a reason that names the extra
    pass
else:
    register_heif_opener()

STAGE = "normalise"
KEY_HEX_CHARS = 32
_ORIENTATION_TAG = 0x0112
_TRANSPOSES = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_PIL_FORMATS = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}


class NormaliseOutputs(NamedTuple):
    samples: beam.PCollection
    rejected: beam.PCollection


class Normalise(beam.PTransform):
    """Decode, convert, orient, resize and re-encode every item; reject what is not a usable image."""

    def __init__(
        self,
        config: NormaliseConfig,
        hashes: list[str] = ("phash",),
        images: str | None = None,
        quality_side: int | None = None,
    ):
        super().__init__()
        self._config = config
        self._hashes = list(hashes)
        self._images = images
        self._quality_side = quality_side

    def expand(self, items: beam.PCollection):
        normalise = _NormaliseFn(self._config, self._hashes, self._images, self._quality_side)
        samples, dropped = apply_stage(items, "Decode", normalise)
        return NormaliseOutputs(samples=samples, rejected=dropped)


def content_key(data: bytes) -> tuple[str, str]:
    """Return ``(key, sha256)`` of original bytes; the key is the first 32 hex digits of the SHA-256."""
    digest = hashlib.sha256(data).hexdigest()
    return digest[:KEY_HEX_CHARS], digest


def open_image(data: bytes, config: NormaliseConfig) -> tuple[Image.Image, int]:
    """Identify the format from the bytes and refuse empty files, non-images and decompression bombs.

    Returns:
        The opened (not yet decoded) image and its frame count.
    """
    if not data:
        raise RejectItem(reasons.EMPTY_FILE, "the file is empty (0 bytes)")
    if raw := camera_raw(data):  # Pillow would read some as a TIFF and give its preview, or fail on the sensor data
        raise raw
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
        frames = getattr(image, "n_frames", 1)
    except UnidentifiedImageError:
        raise unidentified(data) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        claimed = re.search(r"\((\d+) pixels\)", str(error))
        pixels = int(claimed.group(1)) if claimed else None
        claim = f"{pixels} pixels" if pixels else str(error)
        raise RejectItem(reasons.DECOMPRESSION_BOMB, _bomb(claim, pixels, config)) from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise _decode_error(error) from None
    width, height = image.size
    if width <= 0 or height <= 0:
        raise RejectItem(reasons.UNSUPPORTED_IMAGE, f"the header claims an empty size {width}x{height}")
    if preview := raw_preview(image):
        raise preview
    if width * height > config.max_pixels:
        claim = f"{width}x{height} = {width * height} pixels"
        raise RejectItem(reasons.DECOMPRESSION_BOMB, _bomb(claim, width * height, config), width=width, height=height)
    return image, frames


def _bomb(claim: str, pixels: int | None, config: NormaliseConfig) -> str:
    """What a decompression-bomb rejection says: the size claimed, the limit, and a limit that would take it."""
    # The next multiple of 100 million pixels above the claim: a limit that takes this file and not much more.
    limit = (
        f"--set normalise.max_pixels={(pixels // 10**8 + 1) * 10**8}" if pixels else "a higher normalise.max_pixels"
    )
    return (
        f"the header claims {claim}, above normalise.max_pixels={config.max_pixels}: a file that decodes to that "
        f"many pixels is a decompression bomb or a very large scan; if it is a genuine image, raise the limit "
        f"({limit}) or downscale the file"
    )


def _decode_error(error: BaseException, format: str | None = None) -> RejectItem:
    """Classify a decoder error: truncation, a decompression bomb, or a corrupt or unsupported file."""
    message = str(error)
    if "too large" in message.lower():
        return RejectItem(reasons.DECOMPRESSION_BOMB, f"decoding refused: {message}")
    if "truncated" in message.lower() or isinstance(error, EOFError):
        return RejectItem(reasons.TRUNCATED, f"decoding failed: {message}")
    detail = f"decoding failed: {type(error).__name__}: {message}"
    return RejectItem(reasons.UNSUPPORTED_IMAGE, f"{detail}; {hint}" if (hint := decode_hint(format)) else detail)


def _load_first_frame(image: Image.Image, config: NormaliseConfig) -> Image.Image:
    if config.draft and image.format == "JPEG":
        # At least max_side on both sides, so LANCZOS does most of the reduction. Asking for the longer side alone
        # lets the DCT average up to 8x8 pixels into one: 13-17% less Laplacian variance than a whole decode on 24 MP
        # photos, against 3-5% this way (tests/transforms/test_normalise.py measures it on a 1/f-noise photo).
        image.draft("RGB", (config.max_side, config.max_side))
    try:
        # A freshly opened file is at its first frame; seeking is not needed (and for PSD it picks a layer).
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise _decode_error(error, image.format) from None
    return image


def to_srgb(image: Image.Image, background: tuple[int, int, int]) -> tuple[Image.Image, list[str]]:
    """Convert any decoded mode to 8-bit RGB in sRGB, compositing alpha on ``background``."""
    notes: list[str] = []
    icc = image.info.get("icc_profile")
    if image.mode in HIGH_DEPTH_MODES:
        image, scaled = to_8bit(image)
        notes.append(scaled)
    if image.mode == "LAB":
        lab = ImageCms.createProfile("LAB")
        image = ImageCms.profileToProfile(image, lab, ImageCms.createProfile("sRGB"), outputMode="RGB")
        notes.append("converted LAB to sRGB")
        icc = None
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:
            notes.append("alpha composited on background")
        canvas = Image.new("RGB", rgba.size, background)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        image = canvas
    if icc and image.mode in ("RGB", "CMYK", "L"):
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            image = ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
            notes.append("converted embedded ICC profile to sRGB")
        except (ImageCms.PyCMSError, OSError):
            notes.append("embedded ICC profile unusable; converted without it")
    if image.mode != "RGB":
        image = image.convert("RGB")
    return image, notes


def _orientation(image: Image.Image, notes: list[str]) -> int:
    """Read the EXIF orientation tag before any conversion can drop it; corrupt EXIF counts as upright."""
    try:
        return int(image.getexif().get(_ORIENTATION_TAG, 1) or 1)
    except Exception:  # noqa: BLE001 - corrupt EXIF must not lose a decodable image
        notes.append("EXIF orientation unreadable; kept as stored")
        return 1


def _upright(image: Image.Image, orientation: int, notes: list[str]) -> Image.Image:
    """Apply an EXIF orientation (the same transposes as ``ImageOps.exif_transpose``)."""
    method = _TRANSPOSES.get(orientation)
    if method is None:
        return image
    notes.append(f"applied EXIF orientation {orientation}")
    return image.transpose(method)


def normalise_image(data: bytes, config: NormaliseConfig) -> tuple[Image.Image, ImageInfo, list[str]]:
    """Decode ``data`` into an upright, resized 8-bit sRGB image.

    Returns:
        The image, facts about the original encoding, and notes on what was converted.

    Raises:
        RejectItem: For every kind of unusable input, with its reason code.
    """
    image, frames = open_image(data, config)
    original = ImageInfo(image.width, image.height, image.format or "", image.mode, len(data), frames)
    image = _load_first_frame(image, config)
    notes = [f"first frame of {frames}"] if frames > 1 else []
    orientation = _orientation(image, notes)
    image, converted = to_srgb(image, config.background)
    notes += converted
    image = _upright(image, orientation, notes)
    if min(original.width, original.height) < config.min_side:  # the file's size: draft decoding may be smaller
        raise RejectItem(
            reasons.TOO_SMALL,
            f"{original.width}x{original.height} has a side below normalise.min_side={config.min_side}",
            width=original.width,
            height=original.height,
        )
    if max(image.size) > config.max_side:
        scale = config.max_side / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        if min(size) < config.min_side <= config.max_side:  # a thin banner: the resize would leave a strip
            raise RejectItem(
                reasons.TOO_SMALL,
                f"{original.width}x{original.height} would be {size[0]}x{size[1]} after resizing to "
                f"normalise.max_side={config.max_side}, a side below normalise.min_side={config.min_side}; raise "
                "max_side to keep images this elongated",
                width=original.width,
                height=original.height,
            )
        image = image.resize(size, Image.Resampling.LANCZOS)
    image.info.clear()
    return image, original, notes


def encode(image: Image.Image, config: NormaliseConfig) -> bytes:
    """Encode without any EXIF, XMP, ICC or GPS metadata."""
    buffer = io.BytesIO()
    options = {"quality": config.quality} if config.format in ("jpg", "webp") else {}
    image.save(buffer, format=_PIL_FORMATS[config.format], **options)
    return buffer.getvalue()


def normalise_item(
    item: InputItem,
    config: NormaliseConfig,
    hashes: list[str],
    images: str | None = None,
    quality_side: int | None = None,
) -> Sample:
    """The ``Sample`` of one read item: normalised, encoded, hashed, stored in ``images`` when given, and its quality
    measured on a copy at most ``quality_side`` long when given.

    Raises:
        RejectItem: The bytes are not a usable image (the reason says why).
        StagingError: The image store cannot be written.
    """
    data = item.data or b""
    key, sha256 = content_key(data)
    image, original, notes = normalise_image(data, config)
    metadata, found_notes = _with_embedded_text(item.metadata, data)
    metadata, box_notes = boxes_in_image(metadata, original.width, original.height)
    notes += found_notes + box_notes
    encoded = encode(image, config)
    pixels = hashlib.sha256(f"{image.width}x{image.height}:".encode() + image.tobytes()).hexdigest()
    reference = store_image(images, encoded, config.format) if images else ""
    return Sample(
        key=key,
        source=item.source,
        path=printable(item.path),  # shown in shards: UTF-8 text (ingest read the real name)
        domain=item.domain,
        metadata=metadata,
        image=b"" if reference else encoded,
        image_ext=config.format,
        sha256=sha256,
        pixel_sha256=pixels,
        original=original,
        normalised=ImageInfo(image.width, image.height, _PIL_FORMATS[config.format], "RGB", len(encoded)),
        notes=tuple(notes),
        hashes=perceptual_hashes(image, hashes),
        image_ref=reference,
        scores=_measured(image, quality_side) if quality_side else {},
    )


def _measured(image: Image.Image, side: int) -> dict[str, float]:
    """The quality measures of ``image`` on a copy at most ``side`` long (and larger copies for print on paper)."""
    return measure(analysis_copy(image, side), lambda larger: analysis_copy(image, larger)).scores()


def _with_embedded_text(metadata: Mapping[str, Any], data: bytes) -> tuple[dict[str, Any], list[str]]:
    """``metadata`` with the title, description and keywords embedded in the file (``transforms.embedded_text``) for
    the keys it leaves empty (a sidecar or manifest value wins), and notes saying which were taken."""
    found, notes = embedded_text(data)
    merged = dict(metadata)
    taken = [key for key, value in found.items() if not merged.get(key)]
    for key in taken:
        merged[key] = found[key]
    if taken:
        notes.append(f"{', '.join(taken)} from the file's embedded metadata (XMP, IPTC or EXIF Windows fields)")
    return merged, notes


class _NormaliseFn(StageFn):
    stage = STAGE

    def __init__(self, config: NormaliseConfig, hashes: list[str], images: str | None, quality_side: int | None):
        super().__init__()
        self._config = config
        self._hashes = hashes
        self._images = images
        self._quality_side = quality_side

    def setup(self):
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        Image.MAX_IMAGE_PIXELS = self._config.max_pixels

    def apply(self, item: InputItem) -> Iterator[Sample]:
        yield normalise_item(item, self._config, self._hashes, self._images, self._quality_side)
