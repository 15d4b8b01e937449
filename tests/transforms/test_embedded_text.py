"""Text embedded in a photo's file (``transforms.embedded_text``): XMP, IPTC and EXIF Windows fields, read in that
order per key, camera boilerplate left out, and XMP that does not parse safely skipped with a note."""

import io
import struct

from PIL import Image

from transforms.embedded_text import embedded_text

XMP = (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" '
    'xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" photoshop:Headline="Spring line">'
    "{fields}</rdf:Description></rdf:RDF></x:xmpmeta>"
    '<?xpacket end="w"?>'
)
LIGHTROOM_FIELDS = (
    '<dc:title><rdf:Alt><rdf:li xml:lang="de">Blaue Jacke</rdf:li>'
    '<rdf:li xml:lang="x-default">Blue jacket</rdf:li></rdf:Alt></dc:title>'
    '<dc:description><rdf:Alt><rdf:li xml:lang="x-default">A blue  denim\njacket on white.</rdf:li></rdf:Alt>'
    "</dc:description><dc:subject><rdf:Bag><rdf:li>denim</rdf:li><rdf:li>jacket</rdf:li></rdf:Bag></dc:subject>"
)


def _jpeg(**options) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (40, 60, 160)).save(buffer, "JPEG", **options)
    return buffer.getvalue()


def _with_iptc(jpeg: bytes, datasets: list[tuple[int, int, bytes]]) -> bytes:
    """``jpeg`` with an APP13 Photoshop segment holding these IPTC datasets (record, number, value), as photo
    editors write it: resource 8BIM 0x0404, an empty padded name, the IPTC bytes."""
    iptc = b"".join(
        b"\x1c" + bytes([record, number]) + struct.pack(">H", len(value)) + value for record, number, value in datasets
    )
    resource = b"8BIM" + struct.pack(">H", 0x0404) + b"\x00\x00" + struct.pack(">I", len(iptc)) + iptc
    resource += b"\x00" * (len(iptc) % 2)
    payload = b"Photoshop 3.0\x00" + resource
    return jpeg[:2] + b"\xff\xed" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def test_a_photo_managers_xmp_title_caption_and_keywords_are_read_in_the_default_language():
    found, notes = embedded_text(_jpeg(xmp=XMP.format(fields=LIGHTROOM_FIELDS).encode()))
    assert found == {
        "title": "Blue jacket",
        "description": "A blue denim jacket on white.",
        "keywords": ["denim", "jacket"],
    }
    assert notes == []


def test_iptc_caption_keywords_and_object_name_are_read_and_xmp_wins_a_key_both_give():
    iptc = [
        (2, 5, b"Pump housing"),
        (2, 120, "Gehäuse, Charge 7".encode("cp1252")),
        (2, 25, b"pump"),
        (2, 25, b"cast"),
    ]
    found, _ = embedded_text(_with_iptc(_jpeg(), iptc))
    assert found == {"title": "Pump housing", "description": "Gehäuse, Charge 7", "keywords": ["pump", "cast"]}

    only_headline = XMP.format(fields="")  # XMP with a headline but no title: IPTC's object name comes first
    found, _ = embedded_text(_with_iptc(_jpeg(xmp=only_headline.encode()), iptc))
    assert found["title"] == "Pump housing"
    found, _ = embedded_text(_with_iptc(_jpeg(xmp=XMP.format(fields=LIGHTROOM_FIELDS).encode()), iptc))
    assert found["title"] == "Blue jacket" and found["keywords"] == ["denim", "jacket"]


def test_windows_explorer_fields_are_read_and_a_cameras_own_name_is_not_taken_for_a_caption():
    exif = Image.Exif()
    exif[0x010E] = "OLYMPUS DIGITAL CAMERA"  # ImageDescription, as cameras fill it
    exif[0x9C9B] = "Line 3 press".encode("utf-16-le") + b"\x00\x00"  # XPTitle
    exif[0x9C9C] = "oil on the left guide".encode("utf-16-le")  # XPComment
    exif[0x9C9E] = "press; oil ;".encode("utf-16-le")  # XPKeywords
    found, _ = embedded_text(_jpeg(exif=exif.tobytes()))
    assert found == {"title": "Line 3 press", "description": "oil on the left guide", "keywords": ["press", "oil"]}

    camera_only = Image.Exif()
    camera_only[0x010E] = "SONY DSC"
    assert embedded_text(_jpeg(exif=camera_only.tobytes())) == ({}, [])


def test_xmp_with_entity_expansion_is_skipped_with_a_note_and_png_and_tiff_packets_are_read():
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><x>&b;</x>'
    found, notes = embedded_text(_jpeg(xmp=bomb))
    assert found == {} and len(notes) == 1 and notes[0].startswith("embedded XMP metadata skipped: EntitiesForbidden")

    from PIL import PngImagePlugin

    chunk = PngImagePlugin.PngInfo()
    chunk.add_itxt("XML:com.adobe.xmp", XMP.format(fields=LIGHTROOM_FIELDS))
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48)).save(buffer, "PNG", pnginfo=chunk)
    assert embedded_text(buffer.getvalue())[0]["title"] == "Blue jacket"

    from PIL import TiffImagePlugin

    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[700] = XMP.format(fields=LIGHTROOM_FIELDS).encode()  # a TIFF keeps its XMP packet in tag 700
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48)).save(buffer, "TIFF", tiffinfo=tags)
    assert embedded_text(buffer.getvalue())[0]["description"] == "A blue denim jacket on white."
    assert embedded_text(b"not an image") == ({}, [])
