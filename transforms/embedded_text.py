"""Text a photo carries inside its file: the title, description and keywords that a photo manager, a stock library
or Windows Explorer wrote into its XMP, IPTC or EXIF Windows fields (Lightroom's Title and Caption, Photo Mechanic's
Headline, Explorer's Title and Comments).

``embedded_text(data)`` reads them from the file's header (no pixels are decoded) and returns them as ``metadata``
keys: ``title``, ``description`` and ``keywords`` (a list). ``normalise`` gives a sample only the keys its sidecar
or manifest row leaves empty, so ``text.fields`` and caption templates use them as they use a sidecar's, and the
sidecar wins a key both give. Per key, the first source that has it:

- ``title``: XMP ``dc:title``, IPTC Object Name (2:05), XMP ``photoshop:Headline``, IPTC Headline (2:105), EXIF
  XPTitle;
- ``description``: XMP ``dc:description``, IPTC Caption/Abstract (2:120), EXIF XPComment, EXIF XPSubject;
- ``keywords``: XMP ``dc:subject``, IPTC Keywords (2:25), EXIF XPKeywords (``;``-separated).

EXIF ImageDescription and UserComment are not read: cameras fill them with their own name ("OLYMPUS DIGITAL
CAMERA", "SONY DSC"), which would become the caption. XMP is parsed with defusedxml (no entity expansion, no external
entities); XMP that does not parse is skipped, and the returned note says so. Pure functions, no Beam.
"""

import io
from typing import Any

import defusedxml.ElementTree
from PIL import Image, IptcImagePlugin

_RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
_DC = "{http://purl.org/dc/elements/1.1/}"
_PHOTOSHOP = "{http://ns.adobe.com/photoshop/1.0/}"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_TIFF_XMP = 700
_XP_TITLE, _XP_COMMENT, _XP_KEYWORDS, _XP_SUBJECT = 0x9C9B, 0x9C9C, 0x9C9E, 0x9C9F
_IPTC_TITLE, _IPTC_HEADLINE, _IPTC_CAPTION, _IPTC_KEYWORDS = (2, 5), (2, 105), (2, 120), (2, 25)
_IPTC_CHARSET = (1, 90)
_UTF8_ESCAPE = b"\x1b%G"


def embedded_text(data: bytes) -> tuple[dict[str, Any], list[str]]:
    """``({title, description, keywords} found in the file's metadata, notes)``; empty when it holds none."""
    try:
        image = Image.open(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - normalise reports an unreadable file; here it simply holds no text
        return {}, []
    notes: list[str] = []
    try:
        xmp, iptc, windows = _xmp(image, notes), _iptc(image), _windows(image)
    except Exception as error:  # noqa: BLE001 - odd metadata never costs the photo its place; the note says why
        return {}, [f"embedded metadata skipped: {type(error).__name__}: {error}"]
    found: dict[str, Any] = {}
    for key, candidates in (
        ("title", ((xmp, "title"), (iptc, "title"), (xmp, "headline"), (iptc, "headline"), (windows, "title"))),
        ("description", ((xmp, "description"), (iptc, "description"), (windows, "description"))),
        ("keywords", ((xmp, "keywords"), (iptc, "keywords"), (windows, "keywords"))),
    ):
        value = next((source[name] for source, name in candidates if source.get(name)), None)
        if value:
            found[key] = value
    return found, notes


def _clean(text: str) -> str:
    return " ".join(text.replace("\x00", " ").split())


def _xmp_packet(image: Image.Image) -> bytes | str | None:
    if image.format == "TIFF":
        packet = image.tag_v2.get(_TIFF_XMP)
        return bytes(packet) if isinstance(packet, tuple) else packet
    return image.info.get("xmp") or image.info.get("XML:com.adobe.xmp")


def _xmp(image: Image.Image, notes: list[str]) -> dict[str, Any]:
    packet = _xmp_packet(image)
    if not packet:
        return {}
    if isinstance(packet, bytes):
        packet = packet.decode("utf-8", "replace")
    try:
        root = defusedxml.ElementTree.fromstring(packet.strip("\x00 \t\r\n"))
    except Exception as error:  # noqa: BLE001 - ParseError or a defusedxml refusal (entities): the text is not used
        notes.append(f"embedded XMP metadata skipped: {type(error).__name__}: {error}")
        return {}
    found: dict[str, Any] = {}
    for key, element in (("title", f"{_DC}title"), ("description", f"{_DC}description")):
        node = root.find(f".//{element}")
        if node is not None and (text := _alternative(node)):
            found[key] = text
    subject = root.find(f".//{_DC}subject")
    if subject is not None:
        found["keywords"] = [text for item in subject.iter(f"{_RDF}li") if (text := _clean(item.text or ""))]
    for description in root.iter(f"{_RDF}Description"):
        headline = description.get(f"{_PHOTOSHOP}Headline")
        node = description.find(f"{_PHOTOSHOP}Headline")
        headline = headline or (node.text if node is not None else None)
        if headline and _clean(headline):
            found["headline"] = _clean(headline)
            break
    return found


def _alternative(node) -> str:
    """The default-language text of an ``rdf:Alt`` (``x-default``, else the first), or the node's own text."""
    items = list(node.iter(f"{_RDF}li"))
    chosen = next((item for item in items if item.get(_XML_LANG) == "x-default"), items[0] if items else node)
    return _clean(chosen.text or "")


def _iptc(image: Image.Image) -> dict[str, Any]:
    try:
        info = IptcImagePlugin.getiptcinfo(image) or {}
    except Exception:  # noqa: BLE001 - damaged IPTC blocks are common in old files; they hold no usable text then
        return {}
    utf8 = _values(info.get(_IPTC_CHARSET))[:1] == [_UTF8_ESCAPE]

    def texts(tag: tuple[int, int]) -> list[str]:
        decoded = [_decode(value, utf8) for value in _values(info.get(tag))]
        return [text for text in decoded if text]

    found: dict[str, Any] = {}
    for key, tag in (("title", _IPTC_TITLE), ("headline", _IPTC_HEADLINE), ("description", _IPTC_CAPTION)):
        if values := texts(tag):
            found[key] = values[0]
    if keywords := texts(_IPTC_KEYWORDS):
        found["keywords"] = keywords
    return found


def _values(value: Any) -> list[bytes]:
    if value is None:
        return []
    return [item for item in (value if isinstance(value, list) else [value]) if isinstance(item, bytes)]


def _decode(value: bytes, utf8: bool) -> str:
    """IPTC text: UTF-8 when the record says so or the bytes are valid UTF-8, else Windows-1252 (old IPTC editors)."""
    try:
        return _clean(value.decode("utf-8"))
    except UnicodeDecodeError:
        return "" if utf8 else _clean(value.decode("cp1252", "replace"))


def _windows(image: Image.Image) -> dict[str, Any]:
    try:
        exif = image.getexif()
    except Exception:  # noqa: BLE001 - a damaged EXIF block holds no usable text
        return {}
    found: dict[str, Any] = {}
    for key, tag in (
        ("title", _XP_TITLE),
        ("description", _XP_COMMENT),
        ("subject", _XP_SUBJECT),
        ("keywords", _XP_KEYWORDS),
    ):
        value = exif.get(tag)
        if isinstance(value, tuple):  # some writers store the UTF-16 bytes as a tuple of integers
            value = bytes(value)
        if isinstance(value, bytes) and (text := _clean(value.decode("utf-16-le", "replace"))):
            found[key] = text
    if "subject" in found:
        found.setdefault("description", found.pop("subject"))
    if "keywords" in found:
        found["keywords"] = [word for part in found["keywords"].split(";") if (word := _clean(part))]
    return found
