"""Decoding and normalisation of ordinary and hostile image files, through the pure functions."""

import io
import struct
import zipfile
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image, TiffImagePlugin

from schemas import reasons
from schemas.config.normalise import NormaliseConfig
from schemas.records.ledger import RejectItem
from tests.helpers import jpeg_bytes, make_photo
from transforms.normalise import encode, normalise_image

CONFIG = NormaliseConfig(max_side=256, min_side=16, max_pixels=10_000_000)


def _png(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def _reason(data: bytes, config: NormaliseConfig = CONFIG) -> str:
    with pytest.raises(RejectItem) as caught:
        normalise_image(data, config)
    return caught.value.reason


def test_rejects_zero_byte_file_as_empty():
    assert _reason(b"") == reasons.EMPTY_FILE


def test_rejects_text_file_named_jpg_as_not_an_image():
    assert _reason(b"operator notes: line 3 stopped at 14:00\n") == reasons.NOT_AN_IMAGE


def _parquet(columns: dict) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return buffer.getvalue()


def _zipped(name: str, payload: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, payload)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n", "PDF document"),
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10"/>', "SVG vector drawing"),
        (b"<svg width='4' height='4'></svg>", "SVG vector drawing"),
        (b"operator notes\n", "a text file, not an image"),
        ("Größe,Gewicht\n3 mm,12 g\n".encode(), "named metadata.csv (or .jsonl, .parquet) with a file_name column"),
        ("notes".encode("utf-16"), "a text file, not an image"),
        (b"\x01\x02\x03 binary", "convert it to JPEG or PNG"),
        (b"path,label\nscratches/a.jpg,scratch\n", "(--input FILE, a manifest), or name it metadata.csv"),
        (b'{"file_name": "a.jpg", "text": "a dent"}\n', "a table whose column 'file_name' names files"),
        (b"sku;Filename;price\n1;a.jpg;2\n", 'path_column = "Filename" in its config entry), or rename that column'),
        (_parquet({"file_name": ["a.jpg"], "text": ["a dent"]}), "a Parquet table, not an image"),
        (b'{\n  "info": {},\n  "images": [{"id": 1, "file_name": "a.jpg"}],\n  "annotations": []}', "COCO annotation"),
        # RFC 1740's header: magic 0x00051607, version 2, the filler a Mac writes, then its entries.
        (b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        \x00\x02" + bytes(40), "macOS AppleDouble file"),
        (b"\x00\x00\x00\x01Bud1\x00\x00\x10\x00" + bytes(24), "macOS .DS_Store"),
        (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41" + bytes(32), "a video (MP4, MOV or 3GP)"),
        (b"\x00\x00\x00\x14ftypqt  \x20\x05\x03\x00qt  " + bytes(32), "a video (MP4, MOV or 3GP)"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01webm" + bytes(32), "a video (Matroska, WebM or AVI)"),
        (_zipped("[Content_Types].xml", b"<Types/>"), "an Office document (.xlsx, .docx, .pptx)"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504), "Thumbs.db thumbnail cache"),
    ],
)
def test_a_file_that_is_not_an_image_says_what_it_is_and_what_to_do(data, named):
    with pytest.raises(RejectItem) as caught:
        normalise_image(data, CONFIG)
    assert caught.value.reason == reasons.NOT_AN_IMAGE
    assert named in caught.value.detail["message"]


@pytest.mark.parametrize(
    ("format", "named"),
    [("PNG", "PNG"), ("GIF", "GIF"), ("TIFF", "TIFF"), ("BMP", "BMP"), ("WEBP", "WebP"), ("ICO", "ICO")],
)
def test_a_damaged_image_pillow_cannot_identify_is_an_unsupported_image_of_its_format_not_a_non_image(format, named):
    # Pillow writes the file; its first 12 bytes alone keep the signature and lose the header Pillow needs.
    buffer = io.BytesIO()
    make_photo(64, 48).save(buffer, format=format)
    with pytest.raises(RejectItem) as caught:
        normalise_image(buffer.getvalue()[:12], CONFIG)
    assert caught.value.reason == reasons.UNSUPPORTED_IMAGE
    assert caught.value.detail["format"] == named
    assert f"starts like a {named} image" in caught.value.detail["message"]
    assert "damaged" in caught.value.detail["message"]


def test_a_netpbm_header_without_the_space_after_its_magic_is_a_damaged_image_not_a_text_file():
    with pytest.raises(RejectItem) as caught:
        normalise_image(b"P632 35888888863 2!\n", CONFIG)  # Pillow's fuzzing corpus: negative_size.ppm
    assert caught.value.reason == reasons.UNSUPPORTED_IMAGE
    assert caught.value.detail["format"] == "Netpbm (PBM/PGM/PPM)"


@pytest.mark.parametrize(
    "head",
    [b"\xff\x0a\xff\x07\x08\x83\x04\x0c\x00\x4b\x12", b"\x00\x00\x00\x0cJXL \r\n\x87\n\x00\x00\x00\x14ftypjxl "],
)
def test_a_jpeg_xl_image_is_unsupported_and_the_detail_says_how_to_convert_it(head):
    # The first bytes of a JPEG XL codestream and of its ISO box container (ISO/IEC 18181-2), as cjxl writes them.
    with pytest.raises(RejectItem) as caught:
        normalise_image(head + bytes(64), CONFIG)
    assert caught.value.reason == reasons.UNSUPPORTED_IMAGE
    assert caught.value.detail["format"] == "JPEG XL"
    assert "convert it to PNG or JPEG" in caught.value.detail["message"]


def test_an_eps_without_ghostscript_says_to_install_it_or_export_the_file(monkeypatch):
    from PIL import EpsImagePlugin

    monkeypatch.setattr(EpsImagePlugin, "gs_binary", False)  # as on a worker without Ghostscript
    buffer = io.BytesIO()
    make_photo(64, 48).save(buffer, format="EPS")
    with pytest.raises(RejectItem) as caught:
        normalise_image(buffer.getvalue(), CONFIG)
    assert caught.value.reason == reasons.UNSUPPORTED_IMAGE
    assert "install Ghostscript" in caught.value.detail["message"]


def test_a_tiff_whose_pixels_cannot_be_decoded_says_how_to_save_it_again():
    buffer = io.BytesIO()
    make_photo(64, 48).save(buffer, format="TIFF", compression="tiff_adobe_deflate")
    data = bytearray(buffer.getvalue())
    data[200:400] = bytes(value ^ 0x5A for value in data[200:400])  # scramble the compressed strip
    with pytest.raises(RejectItem) as caught:
        normalise_image(bytes(data), CONFIG)
    assert caught.value.reason == reasons.UNSUPPORTED_IMAGE
    assert "decoding failed" in caught.value.detail["message"]
    assert "save it again as an uncompressed or LZW TIFF, or as PNG" in caught.value.detail["message"]


def test_rejects_truncated_jpeg_with_reason():
    data = jpeg_bytes(make_photo(400, 300))
    assert _reason(data[: len(data) // 2]) == reasons.TRUNCATED


def test_rejects_truncated_png_with_reason():
    """Cut mid-stream, Pillow says "image file is truncated"; ending in a chunk header whose data is missing (as
    Pillow's own truncated_end_chunk.png does), "Truncated File Read": both are truncation, not an unsupported
    image."""
    data = _png(make_photo(400, 300))
    cut_short = data[: data.rindex(b"IEND") - 4] + b"\x00\x00\x10\x00IDAT"  # 4,096 bytes claimed, none there
    assert _reason(data[: len(data) // 2]) == reasons.TRUNCATED
    assert _reason(cut_short) == reasons.TRUNCATED


def test_rejects_decompression_bomb_from_its_header_without_decoding(monkeypatch):
    """Pillow's own check (a warning above its limit, an error above twice that) was quoted: "exceeds limit of
    500000000 pixels" beside normalise.max_pixels=250000000, with the advice to raise the limit to 200000000."""
    messages = []
    for width, height, pillow_limit in ((100_000, 100_000, CONFIG.max_pixels), (4_000, 3_000, CONFIG.max_pixels)):
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pillow_limit)  # as normalise's setup sets it
        with pytest.raises(RejectItem) as caught:
            normalise_image(_claiming(width, height), CONFIG)  # a valid 1x1 PNG whose header claims this size
        assert caught.value.reason == reasons.DECOMPRESSION_BOMB
        messages.append(str(caught.value))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # Pillow's check off: only the config's
    with pytest.raises(RejectItem) as caught:
        normalise_image(_claiming(100_000, 100_000), CONFIG)
    messages.append(str(caught.value))
    claims = ("claims 10000000000 pixels", "claims 12000000 pixels", "claims 100000x100000 = 10000000000 pixels")
    limits = ("10100000000", "100000000", "10100000000")  # the next 100 million above each claim
    for message, claim, limit in zip(messages, claims, limits, strict=True):
        assert claim in message and "above normalise.max_pixels=10000000:" in message
        assert f"if it is a genuine image, raise the limit (--set normalise.max_pixels={limit})" in message
        assert "500000000" not in message and "exceeds limit" not in message


def test_the_default_limit_takes_a_full_frame_camera_photo_and_still_refuses_a_gigapixel_header():
    """50 MP was the default: every photo of a 61 MP camera (a common product-photo body) was called a bomb."""
    camera = make_photo(9504 // 8, 6336 // 8, seed=7).resize((9504, 6336), Image.Resampling.BILINEAR)
    image, _, _ = normalise_image(jpeg_bytes(camera, quality=85), NormaliseConfig())
    assert image.size == (1024, 683)
    with pytest.raises(RejectItem) as caught:
        normalise_image(_claiming(40_000, 40_000), NormaliseConfig())  # 1.6 gigapixels claimed
    assert caught.value.reason == reasons.DECOMPRESSION_BOMB


def _claiming(width: int, height: int) -> bytes:
    """A valid PNG with one pixel of data whose header claims ``width`` x ``height``."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 4)) + chunk(b"IEND", b"")
    )


def test_rejects_images_below_min_side():
    assert _reason(jpeg_bytes(make_photo(64, 8))) == reasons.TOO_SMALL


def test_rejects_a_banner_the_resize_would_leave_thinner_than_min_side():
    """A 4000x60 banner was kept at 1024x15: only the file's sides met min_side."""
    config = NormaliseConfig(max_side=1024, min_side=32)
    with pytest.raises(RejectItem) as caught:
        normalise_image(jpeg_bytes(make_photo(4000, 60)), config)
    assert caught.value.reason == reasons.TOO_SMALL
    assert "would be 1024x15 after resizing to normalise.max_side=1024" in str(caught.value)
    image, _, _ = normalise_image(jpeg_bytes(make_photo(4000, 128)), config)
    assert image.size == (1024, 33)


def test_converts_cmyk_jpeg_to_srgb():
    rgb = make_photo(200, 150, seed=3)
    image, original, _ = normalise_image(jpeg_bytes(rgb.convert("CMYK"), quality=95), CONFIG)
    assert original.mode == "CMYK" and image.mode == "RGB"
    difference = np.abs(np.asarray(image, np.int16) - np.asarray(rgb, np.int16)).mean()
    assert difference < 20


def test_scales_16_bit_png_by_its_depth_instead_of_clipping():
    ramp = (np.linspace(0, 65535, 256, dtype=np.float64)[None, :].repeat(64, axis=0)).astype(np.uint16)
    image, original, notes = normalise_image(_png(Image.fromarray(ramp)), CONFIG)
    values = np.asarray(image)[..., 0]
    assert original.mode.startswith("I")
    assert values.min() == 0 and values.max() == 255
    assert len(np.unique(values)) > 200
    assert "scaled high bit depth to 8 bits as 16-bit data (largest value 65535)" in notes


def test_scales_16_bit_tiff():
    ramp = (np.linspace(0, 65535, 128, dtype=np.float64)[None, :].repeat(40, axis=0)).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(ramp).save(buffer, format="TIFF")
    image, _, _ = normalise_image(buffer.getvalue(), CONFIG)
    assert np.asarray(image).max() == 255


def test_scales_12_bit_data_in_a_16_bit_png_by_12_bits_and_keeps_a_full_range_dark_photo_dark():
    """A 12-bit camera frame saved as I;16 PNG (0-4080) was divided by 65535: nearly black, rejected underexposed."""
    frame = np.linspace(0, 4080, 256)[None, :].repeat(64, axis=0).astype(np.uint16)
    image, _, notes = normalise_image(_png(Image.fromarray(frame)), CONFIG)
    values = np.asarray(image)[..., 0]
    assert values.max() == 254 and 120 < values.mean() < 135
    assert "scaled high bit depth to 8 bits as 12-bit data (largest value 4080)" in notes
    dark = np.full((64, 256), 2000, np.uint16)
    dark[:4, :4] = 65000  # a lamp: the photo uses the whole 16-bit range and stays dark
    image, _, notes = normalise_image(_png(Image.fromarray(dark)), CONFIG)
    assert np.asarray(image)[32, 128, 0] == 8
    assert "scaled high bit depth to 8 bits as 16-bit data (largest value 65000)" in notes


def _tiff_12_bit(values: np.ndarray) -> bytes:
    """An uncompressed grey TIFF with ``BitsPerSample`` 12 (two samples in three bytes), which Pillow cannot write."""
    height, width = values.shape
    high, low = values[:, 0::2].astype(np.uint32), values[:, 1::2].astype(np.uint32)
    packed = np.stack([high >> 4, ((high & 15) << 4) | (low >> 8), low & 255], axis=-1).astype(np.uint8).tobytes()
    data_at = 8 + 2 + 12 * 9 + 4  # header, entry count, nine 12-byte entries, next-IFD offset
    short = [(256, width), (257, height), (258, 12), (259, 1), (262, 1), (277, 1), (278, height)]
    long = [(273, data_at), (279, len(packed))]
    entries = sorted([(tag, struct.pack("<HHIHH", tag, 3, 1, value, 0)) for tag, value in short])
    entries += [(tag, struct.pack("<HHII", tag, 4, 1, value)) for tag, value in long]
    ifd = struct.pack("<H", 9) + b"".join(entry for _, entry in sorted(entries))
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00" * 4 + packed


def test_scales_a_12_bit_tiff_by_its_bits_per_sample():
    values = np.linspace(0, 1000, 64)[None, :].repeat(32, axis=0).astype(np.uint16)
    image, original, notes = normalise_image(_tiff_12_bit(values), CONFIG)
    assert original.mode == "I;16"
    assert np.asarray(image)[0, -1, 0] == 62  # 1000 / 4095 of 255, not 1000 / 1023 (the smallest depth holding it)
    assert "scaled high bit depth to 8 bits as 12-bit data (largest value 1000)" in notes


def test_float_tiff_in_unit_range_maps_to_full_8_bits():
    array = np.linspace(0.0, 1.0, 100, dtype=np.float32)[None, :].repeat(30, axis=0)
    buffer = io.BytesIO()
    Image.fromarray(array, "F").save(buffer, format="TIFF")
    image, _, _ = normalise_image(buffer.getvalue(), CONFIG)
    assert np.asarray(image).min() == 0 and np.asarray(image).max() == 255


def test_composites_palette_transparency_on_the_background():
    palette = Image.new("P", (40, 40), 0)
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.paste(1, (0, 0, 20, 40))
    image, _, notes = normalise_image(
        _png(palette, transparency=0), NormaliseConfig(min_side=16, background=(0, 255, 0))
    )
    assert image.getpixel((30, 20)) == (0, 255, 0)
    assert image.getpixel((5, 20)) == (0, 0, 255)
    assert "alpha composited on background" in notes


@pytest.mark.parametrize("format_", ["GIF", "WEBP"])
def test_takes_the_first_frame_of_animations_and_says_so(format_):
    frames = [Image.new("RGB", (64, 64), colour) for colour in ((250, 0, 0), (0, 250, 0), (0, 0, 250))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format=format_, save_all=True, append_images=frames[1:], duration=100, loop=0)
    image, original, notes = normalise_image(buffer.getvalue(), NormaliseConfig(min_side=16))
    assert original.frames == 3
    assert "first frame of 3" in notes
    red, green, blue = image.getpixel((32, 32))
    assert red > 200 and green < 60 and blue < 60


def test_applies_exif_orientation_then_strips_all_metadata():
    upright = Image.new("RGB", (120, 60), (255, 255, 255))
    upright.paste((255, 0, 0), (0, 0, 20, 60))  # a red band on the left when upright
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: viewers rotate 90 degrees clockwise to display
    exif[0x8825] = {1: "N"}  # a GPS block that must not survive
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    image, original, notes = normalise_image(jpeg_bytes(stored, exif=exif, quality=95), NormaliseConfig(min_side=16))
    assert (original.width, original.height) == (60, 120)
    assert image.size == (120, 60)
    assert image.getpixel((5, 30))[0] > 200 and image.getpixel((5, 30))[1] < 80
    assert "applied EXIF orientation 6" in notes
    output = Image.open(io.BytesIO(encode(image, NormaliseConfig())))
    assert not output.getexif()
    assert "exif" not in output.info and "xmp" not in output.info and "icc_profile" not in output.info


def test_resizes_longer_side_and_never_upscales():
    big, _, _ = normalise_image(jpeg_bytes(make_photo(1000, 500)), CONFIG)
    small, _, _ = normalise_image(jpeg_bytes(make_photo(100, 50)), CONFIG)
    assert max(big.size) == 256 and big.size == (256, 128)
    assert small.size == (100, 50)


def test_converts_lab_tiff_to_rgb():
    lab = Image.new("LAB", (32, 32), (128, 128, 128))  # Pillow stores a* and b* offset by 128
    buffer = io.BytesIO()
    lab.save(buffer, format="TIFF")
    image, original, _ = normalise_image(buffer.getvalue(), NormaliseConfig(min_side=16))
    assert original.mode == "LAB" and image.mode == "RGB"
    red, green, blue = image.getpixel((10, 10))
    assert abs(red - green) < 8 and abs(green - blue) < 8 and 100 < red < 140  # mid grey


def _heic(image: Image.Image) -> bytes:
    import pillow_heif

    buffer = io.BytesIO()
    pillow_heif.from_pillow(image).save(buffer, quality=90)
    return buffer.getvalue()


def test_reads_a_heic_photo_when_the_heif_extra_is_installed():
    photo = make_photo(400, 300)
    image, original, _ = normalise_image(_heic(photo), CONFIG)
    assert (original.format, original.width, original.height) == ("HEIF", 400, 300)
    decoded = np.asarray(image.convert("RGB"), np.float32)
    expected = np.asarray(photo.convert("RGB").resize((256, 192), Image.Resampling.LANCZOS), np.float32)
    assert decoded.shape == expected.shape
    assert np.abs(decoded - expected).mean() < 8.0


def test_a_heic_photo_without_the_heif_extra_is_unsupported_and_the_detail_says_how_to_read_it(monkeypatch):
    data = _heic(make_photo(200, 150))
    monkeypatch.setattr(Image, "ID", [name for name in Image.ID if name != "HEIF"])
    with pytest.raises(RejectItem) as caught:
        normalise_image(data, CONFIG)
    assert caught.value.reason == reasons.UNSUPPORTED_IMAGE
    assert "unishard[heif]" in str(caught.value) and "HEIC" in str(caught.value)


def test_a_rotated_heic_photo_comes_out_upright_like_the_same_jpeg():
    photo = make_photo(300, 200)
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    photo.save(buffer, format="HEIF", quality=90, exif=exif.tobytes())
    upright, _, _ = normalise_image(buffer.getvalue(), CONFIG)
    as_jpeg, _, _ = normalise_image(jpeg_bytes(photo, exif=exif.tobytes()), CONFIG)
    assert upright.size == as_jpeg.size == (171, 256)
    assert np.abs(np.asarray(upright, np.float32) - np.asarray(as_jpeg, np.float32)).mean() < 8.0


def _sharpness(image: Image.Image) -> float:
    grey = np.asarray(image.convert("L"), np.float32)
    laplacian = grey[1:-1, :-2] + grey[1:-1, 2:] + grey[:-2, 1:-1] + grey[2:, 1:-1] - 4 * grey[1:-1, 1:-1]
    return float(laplacian.var())


def _natural(width: int, height: int, seed: int = 0) -> Image.Image:
    """Random colour noise with the 1/f amplitude spectrum of natural photographs: detail at every scale."""
    rng = np.random.default_rng(seed)
    fy, fx = np.meshgrid(np.fft.fftfreq(height), np.fft.rfftfreq(width), indexing="ij")
    frequency = np.hypot(fx, fy)
    frequency[0, 0] = 1.0
    channels = []
    for _ in range(3):
        field = np.fft.irfft2((rng.normal(size=frequency.shape) + 1j * rng.normal(size=frequency.shape)) / frequency)
        channels.append((field - field.mean()) / field.std() * 50 + 128)
    return Image.fromarray(np.clip(np.stack(channels, -1), 0, 255).astype(np.uint8))


def test_draft_decoding_keeps_the_sharpness_of_the_whole_decode_resized():
    # A 3:2 photo: asking the draft for the longer side alone (up to 8x8 pixels per DCT block) kept 0.81 of the
    # Laplacian variance of the whole decode resized; at least max_side on both sides keeps 0.95.
    data = jpeg_bytes(_natural(3000, 2000), quality=95)
    drafted, _, _ = normalise_image(data, NormaliseConfig(max_side=512))
    whole, _, _ = normalise_image(data, NormaliseConfig(max_side=512, draft=False))
    assert drafted.size == whole.size == (512, 341)
    assert _sharpness(drafted) >= 0.9 * _sharpness(whole)


def test_min_side_judges_the_files_size_not_its_draft_decoding():
    # 1400x1300 decodes at 350x325 for a 256-pixel image; the file's shorter side, 1300, is above min_side 600.
    config = NormaliseConfig(max_side=256, min_side=600)
    image, original, _ = normalise_image(jpeg_bytes(make_photo(1400, 1300)), config)
    assert (original.width, original.height) == (1400, 1300)
    assert image.size == (256, 238)


def _tiff(image: Image.Image, tags: dict) -> bytes:
    info = TiffImagePlugin.ImageFileDirectory_v2()
    for tag, value in tags.items():
        info[tag] = value
    buffer = io.BytesIO()
    image.save(buffer, "TIFF", tiffinfo=info)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("tags", "named"),
    [
        # A DNG's first page: a 256x171 preview (NewSubfileType 1) before the raw sensor data in a SubIFD.
        ({254: 1, 271: "Canon", 50706: bytes([1, 4, 0, 0])}, "a DNG raw file (Canon)"),
        # A NEF's or ARW's first page: the same kind of preview, without a DNG version.
        ({254: 1, 271: "NIKON CORPORATION\x00"}, "a camera raw file or a multi-resolution TIFF (NIKON CORPORATION)"),
    ],
)
def test_a_raw_files_preview_is_not_taken_for_the_photo(tags, named):
    with pytest.raises(RejectItem) as caught:
        normalise_image(_tiff(make_photo(256, 171), tags), CONFIG)
    assert caught.value.reason == reasons.UNSUPPORTED_IMAGE
    assert str(caught.value).startswith(named) and "256x171 preview" in str(caught.value)
    assert "raw developer" in str(caught.value)


def test_a_tiff_whose_first_page_is_the_full_image_is_read():
    image, original, _ = normalise_image(_tiff(make_photo(256, 171), {254: 0, 271: "NIKON CORPORATION"}), CONFIG)
    assert image.size == (256, 171) and original.format == "TIFF"


@pytest.mark.parametrize(
    ("head", "named"),
    [
        (b"II*\x00\x10\x00\x00\x00CR\x02\x00", "Canon CR2"),  # a TIFF header, then "CR" and the raw IFD's offset
        (b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01", "Canon CR3"),
        (b"FUJIFILMCCD-RAW 0201FF383501", "Fujifilm RAF"),
        (b"IIRO\x08\x00\x00\x00", "Olympus ORF"),
        (b"IIU\x00\x08\x00\x00\x00", "Panasonic RW2"),
    ],
)
def test_a_camera_raw_file_is_unsupported_and_the_detail_names_it_and_what_to_do(head, named):
    with pytest.raises(RejectItem) as caught:
        normalise_image(head + bytes(4096), CONFIG)
    assert caught.value.reason == reasons.UNSUPPORTED_IMAGE
    assert str(caught.value).startswith(f"a {named} camera raw file") and "raw developer" in str(caught.value)
