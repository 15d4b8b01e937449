"""What a file Pillow cannot identify is, from its first bytes, and what its owner can do about it.

``unidentified(data)`` returns the rejection ``normalise`` records for it (and ``decode_hint(format)`` what to do about
an opened file whose pixels Pillow could not decode, for formats that need help from outside Python):

- ``unsupported_image`` when the bytes start with an image format's signature (a PNG, JPEG, TIFF... that Pillow
  still cannot open): the file is damaged, or it is a variant of the format Pillow lacks. A HEIF/HEIC photo
  (``is_heif``) is readable with the ``heif`` extra, and the detail says how to install it; a JPEG XL image is a
  format Pillow has no reader for, and the detail says how to convert it;
- ``unsupported_image`` for a camera raw file (``camera_raw`` by signature, ``raw_preview`` for an opened TIFF whose
  first page is a preview): raw sensor data that Pillow does not develop, whose preview must not pass for the photo;
- ``not_an_image`` otherwise, naming what the bytes show when they show one (a PDF document, an SVG drawing, a
  video, a ZIP archive or Office document, a Thumbs.db, macOS's ``._`` and ``.DS_Store`` files).

Telling these apart matters to the person who reads the ledger: "convert it to PNG" is no advice for a damaged PNG.
Pure functions, no Beam.
"""

import json

from PIL import Image

from schemas import reasons
from schemas.records.ledger import RejectItem

# The ISO base media ``ftyp`` brands of HEIF still images and sequences (HEVC and generic), as phones write them.
HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"})

# JPEG XL's bare codestream and its ISO box container: an image format Pillow has no reader for.
JPEG_XL = (b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")

# Leading bytes of the raster formats people keep images in, and the name a person knows each by.
SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "BigTIFF"),
    (b"MM\x00+", "BigTIFF"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"8BPS", "Photoshop (PSD)"),
    (b"qoif", "QOI"),
    (b"DDS ", "DDS"),
    (b"icns", "ICNS"),
)

# Formats whose pixels Pillow reads only with help from outside Python, and what the file's owner can do.
DECODE_HINTS = {
    "EPS": "an EPS/PostScript file, which Pillow renders with Ghostscript: install Ghostscript (the gs command) on "
    "every worker, or export the file as PNG",
    "WMF": "a Windows Metafile (vector drawing), which Pillow renders only on Windows: export it as PNG",
    "TIFF": "the TIFF's compression or layout is one Pillow's libtiff cannot decode (WebP or JPEG XL inside a TIFF, "
    "for one), or the file is damaged: save it again as an uncompressed or LZW TIFF, or as PNG",
}


COCO_ADVICE = (
    "give it as its own input (--input FILE; in a config file, base = FOLDER when its file names are relative to "
    "another folder, as a CVAT export's are to images/), or name it NAME.coco.json beside its images; each image it "
    "lists is then an item with its captions, labels and boxes"
)


def coco_sidecar(path: str, head: bytes) -> str | None:
    """What to do with a JSON file no image takes that is a COCO annotation file (``head``: its first bytes), for its
    ``orphan_sidecar`` row; ``None`` for any other file."""
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if path.lower().endswith(".json") and start.startswith(b"{") and b'"images"' in head:
        if b'"annotations"' in head or b'"categories"' in head:
            return f"{path} is a COCO annotation file, which is no image's sidecar: {COCO_ADVICE}"
    return None


def unidentified(data: bytes) -> RejectItem:
    """The rejection of bytes that ``PIL.Image.open`` could not identify."""
    if is_heif(data):
        return RejectItem(
            reasons.UNSUPPORTED_IMAGE,
            "a HEIF/HEIC image (the default photo format of iPhones), which Pillow reads only with pillow-heif: "
            "install unishard's heif extra (pip install 'unishard[heif]') or convert the file to JPEG",
        )
    if data.startswith(JPEG_XL):
        return RejectItem(
            reasons.UNSUPPORTED_IMAGE,
            "a JPEG XL image, a format Pillow does not read: convert it to PNG or JPEG first (djxl from libjxl does)",
            format="JPEG XL",
        )
    name = image_format(data)
    if name is not None:
        return RejectItem(
            reasons.UNSUPPORTED_IMAGE,
            f"the file starts like a {name} image but Pillow cannot read it: it is damaged (cut short, or a header "
            f"value is invalid) or uses a {name} variant Pillow does not support; get a fresh copy from its source, "
            "or open it in an image editor and save it again as JPEG or PNG",
            format=name,
        )
    return RejectItem(reasons.NOT_AN_IMAGE, _not_an_image(data))


RAW_ADVICE = (
    "export it as JPEG or TIFF with a raw developer (darktable, RawTherapee, the camera maker's software), or give "
    "the JPEG the camera saved beside it"
)


def camera_raw(data: bytes) -> RejectItem | None:
    """The rejection of a camera raw file that is no plain TIFF, told by its signature (Canon CR2's TIFF header is
    followed by ``CR``); the TIFF-based raws (DNG, NEF, ARW) open as TIFF and are told by ``raw_preview``."""
    name = None
    if data[:4] == b"II*\x00" and data[8:10] == b"CR":
        name = "Canon CR2"
    elif data[4:12] == b"ftypcrx ":
        name = "Canon CR3"
    elif data.startswith(b"FUJIFILMCCD-RAW"):
        name = "Fujifilm RAF"
    elif data[:4] in (b"IIRO", b"IIRS", b"MMOR"):
        name = "Olympus ORF"
    elif data[:4] == b"IIU\x00":
        name = "Panasonic RW2"
    if name is None:
        return None
    return RejectItem(
        reasons.UNSUPPORTED_IMAGE, f"a {name} camera raw file, which Pillow cannot develop: {RAW_ADVICE}", format=name
    )


_NEW_SUBFILE_TYPE, _MAKE, _DNG_VERSION = 254, 271, 50706


def raw_preview(image: Image.Image) -> RejectItem | None:
    """The rejection of an opened TIFF whose first image says it is a reduced-resolution version of another image in
    the file (NewSubfileType bit 0): the preview a TIFF-based camera raw (DNG, NEF, ARW, PEF...) puts first, before
    sensor data Pillow cannot decode. ``None`` for any other image."""
    if image.format != "TIFF":
        return None
    value = image.tag_v2.get(_NEW_SUBFILE_TYPE, 0)
    if not (isinstance(value, int) and value & 1):
        return None
    make = str(image.tag_v2.get(_MAKE, "")).replace("\x00", "").strip()
    kind = "a DNG raw file" if _DNG_VERSION in image.tag_v2 else "a camera raw file or a multi-resolution TIFF"
    return RejectItem(
        reasons.UNSUPPORTED_IMAGE,
        f"{kind}{f' ({make})' if make else ''}: the image Pillow reads is the {image.width}x{image.height} preview "
        f"its first page marks as a reduced-resolution copy (TIFF NewSubfileType 1), not the photo: {RAW_ADVICE}",
        width=image.width,
        height=image.height,
    )


def decode_hint(format: str | None) -> str | None:
    """What to do about a file of ``format`` (Pillow's name) whose pixels Pillow could not decode, if known."""
    return DECODE_HINTS.get(format or "")


def is_heif(data: bytes) -> bool:
    """Whether the bytes start as a HEIF file: an ``ftyp`` box whose major brand is a HEIF one."""
    return data[4:8] == b"ftyp" and data[8:12] in HEIF_BRANDS


def image_format(data: bytes) -> str | None:
    """The image format whose signature ``data`` starts with, or None."""
    for signature, name in SIGNATURES:
        if data.startswith(signature):
            return name
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "WebP"
    if data[:2] == b"BM" and data[6:10] == b"\x00\x00\x00\x00":  # BMP: the two reserved header fields are zero
        return "BMP"
    # Netpbm: P1-P7, then whitespace, or the width's digits where a damaged header lost it (a text file starting
    # "P6" and a digit was named as a table of file names)
    if len(data) > 2 and data[0:1] == b"P" and data[1] in b"1234567" and data[2] in b" \t\r\n0123456789":
        return "Netpbm (PBM/PGM/PPM)"
    if data[:4] in (b"\x00\x00\x01\x00", b"\x00\x00\x02\x00") and len(data) >= 6 and data[4:6] != b"\x00\x00":
        return "ICO" if data[2] == 1 else "CUR"
    return None


APPLE_DOUBLE = b"\x00\x05\x16\x07"  # AppleDouble header magic (RFC 1740)
OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # Microsoft compound file: Thumbs.db, .xls, .doc
VIDEO_ADVICE = "extract still frames first (ffmpeg -i VIDEO -vf fps=1 frame-%04d.jpg) to use it"


def _not_an_image(data: bytes) -> str:
    if data.startswith(APPLE_DOUBLE):
        return (
            "a macOS AppleDouble file (the ._NAME companion a Mac writes beside a file on a non-Mac disk or in a "
            "zip), not an image: the image is the file without the ._ prefix; delete the ._ files (dot_clean)"
        )
    if data[4:8] == b"Bud1":
        return "a macOS .DS_Store folder index, not an image: delete it or leave it out of the input"
    if data[4:8] == b"ftyp":  # an ISO media file whose brand is no HEIF image: a phone's or camera's video
        return f"a video (MP4, MOV or 3GP), not an image: {VIDEO_ADVICE}"
    if data.startswith(b"\x1a\x45\xdf\xa3") or (data.startswith(b"RIFF") and data[8:12] == b"AVI "):
        return f"a video (Matroska, WebM or AVI), not an image: {VIDEO_ADVICE}"
    if data.startswith(b"PK\x03\x04"):
        return (
            "a ZIP archive or an Office document (.xlsx, .docx, .pptx), not an image: unzip an archive of images "
            "first; a spreadsheet of image paths and text is a manifest once saved as CSV UTF-8"
        )
    if data.startswith(OLE2):
        return (
            "a Windows Thumbs.db thumbnail cache or an old Office file (.xls, .doc), not an image: delete Thumbs.db "
            "files or leave them out with ingest.ignore; save a spreadsheet of image paths as CSV UTF-8"
        )
    if data[257:262] == b"ustar" or data.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")):
        return (
            "a tar archive (or a gzip, bzip2 or xz file), not an image: give a WebDataset tar as its own input "
            "(--input FILE.tar, or webdataset:FILE for a .tar.gz), where each sample is an item; unpack another "
            "archive first"
        )
    head = data[:1024].lstrip()
    if head.startswith(b"%PDF-"):
        return "a PDF document, not an image: export its pages as images (e.g. pdftoppm -png) to use them"
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        return "an SVG vector drawing, not a raster image: render it to PNG first (e.g. with rsvg-convert)"
    if head.startswith(b"{") and b'"images"' in data and b'"annotations"' in data:
        return f"a COCO annotation file (images and annotations), not an image: {COCO_ADVICE}"
    start = data[:65536]
    if _is_text(head) and b"names:" in start and any(key in start for key in (b"nc:", b"train:", b"val:")):
        # A YAML whose class names a label file reads is no item (transforms._annotation_files.is_class_names), so
        # one that reaches the ledger labels no image.
        return (
            "a YOLO dataset's YAML file, not an image, whose class names label no image here: they are read where "
            "its names key lists them and a labels/ folder lies beside it or at most three folders below; move it "
            "there, or leave it out with ingest.ignore to drop this row"
        )
    if _is_text(head) and (table := _table_columns(head)):
        columns, named = table
        read = named in ("path", "file_name")
        path_column = "" if read else f' with path_column = "{named}" in its config entry'
        rename = "name it" if read else "rename that column file_name and the file"
        return (
            f"a table whose column {named!r} names files (columns: {', '.join(columns[:8])}), not an image: give it "
            f"as its own input (--input FILE, a manifest{path_column}), or {rename} metadata.csv (.jsonl, .parquet) "
            "to describe the images of its folder"
        )
    if data.startswith(b"PAR1"):
        return (
            "a Parquet table, not an image: give it as its own input (--input FILE, a manifest), or name it "
            "metadata.parquet, with a file_name column, to describe the images of its folder"
        )
    if _is_text(head):
        return (
            "a text file, not an image: a table of image file names and their text (CSV, JSON Lines, Parquet) is read "
            "as a manifest when given as its own --input, or, named metadata.csv (or .jsonl, .parquet) with a "
            "file_name column, as the metadata of its folder's images; leave other files out with ingest.ignore"
        )
    return "the content is not an image format Pillow can read: convert it to JPEG or PNG to use it"


# Column names that hold an image's file name in tables people export (the first two are read as such).
_FILE_COLUMNS = ("path", "file_name", "filename", "image", "image_path", "img", "file", "image_file", "file_path")


def _table_columns(head: bytes) -> tuple[list[str], str] | None:
    """The columns of a CSV, TSV or JSON Lines table's first line and the first that names files, if it has one."""
    text = head.decode("utf-16" if head.startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-8", errors="ignore")
    line = text.lstrip("\ufeff").splitlines()[0] if text.strip() else ""
    if line.startswith("{"):
        try:
            columns = [str(key) for key in json.loads(line)]
        except (ValueError, TypeError):
            return None
    else:
        delimiter = max(",;\t|", key=line.count)
        columns = [name.strip().strip('"') for name in line.split(delimiter)] if line.count(delimiter) else []
    named = next((name for name in columns if name.lower() in _FILE_COLUMNS), None)
    return (columns, named) if named else None


def _is_text(head: bytes) -> bool:
    """Whether the start of a file reads as text: UTF-8 (or UTF-16 with its byte-order mark) with no control bytes."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    text = head.decode("utf-8", errors="ignore")
    if not text or len(text.encode("utf-8")) < len(head) - 3:  # at most a character cut at the end
        return False
    return all(char.isprintable() or char in "\t\r\n\f" for char in text)
