"""Assemble the demo data set in ``examples/data/`` from photos scikit-image ships plus generated images.

Run it before ``unishard run examples/demo.toml``. Everything is created offline: ``skimage.data`` reads the photos
from its wheel, and the rest is drawn with Pillow. The set has both domains (marketing product shots, factory surface
inspections), several images per product page (plus text rows, manifest rows without an image path holding the
page's title and description, so each page is an interleaved document), and planted problems: an exact copy, a
lossless re-encode, a truncated JPEG, an empty file, a text file named ``.jpg``, a manifest row pointing at a
missing file, and one escaping the data folder.
"""

import csv
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

HERE = Path(__file__).resolve().parent

MARKETING = [
    # (skimage name, sku, title, category, colour, description)
    (
        "astronaut",
        "POSTER-01",
        "Astronaut portrait poster",
        "posters",
        "multicolour",
        "A framed poster of an astronaut in a white suit in front of the American flag.",
    ),
    (
        "coffee",
        "MUG-01",
        "Morning coffee cup",
        "kitchen",
        "white",
        "A white ceramic cup of black coffee on a saucer with a spoon.",
    ),
    (
        "chelsea",
        "PRINT-01",
        "Tabby cat art print",
        "posters",
        "orange",
        "An art print of an orange tabby cat looking to the side.",
    ),
    (
        "rocket",
        "MODEL-01",
        "Rocket on the launch pad model kit",
        "toys",
        "white",
        "A scale model kit of a rocket standing on its launch pad.",
    ),
    (
        "stereo_motorcycle",
        "BIKE-01",
        "Red sport motorcycle",
        "vehicles",
        "red",
        "A red sport motorcycle parked indoors, seen from the side.",
    ),
    (
        "hubble_deep_field",
        "POSTER-02",
        "Deep space galaxies poster",
        "posters",
        "black",
        "A poster of hundreds of distant galaxies on a black sky, from the Hubble deep field.",
    ),
    (
        "logo",
        "STICKER-01",
        "Logo sticker",
        "stationery",
        "multicolour",
        "A die-cut sticker of a colourful logo on white.",
    ),
]

TEXTURES = [
    # (skimage name, defect class, line, camera)
    ("brick", "none", "line-1", "cam-a"),
    ("gravel", "pitted_surface", "line-1", "cam-b"),
    ("grass", "scratches", "line-2", "cam-a"),
]

SHIRT_COLOURS = {"black": (20, 20, 24), "green": (40, 140, 60), "navy": (25, 35, 90)}


def _skimage(name: str) -> Image.Image:
    import skimage.data

    array = getattr(skimage.data, name)()
    if name == "stereo_motorcycle":
        array = array[0]
    if array.dtype != np.uint8:
        array = (255 * (array - array.min()) / max(1e-9, float(array.max() - array.min()))).astype(np.uint8)
    image = Image.fromarray(array)
    return image.convert("RGB")


def _shirt(colour: tuple[int, int, int], view: str) -> Image.Image:
    image = Image.new("RGB", (480, 560), (236, 236, 232))
    draw = ImageDraw.Draw(image)
    body = [
        (140, 120),
        (340, 120),
        (420, 200),
        (370, 240),
        (350, 220),
        (350, 500),
        (130, 500),
        (130, 220),
        (110, 240),
        (60, 200),
    ]
    if view == "back":
        body = [(x, y + 10) for x, y in body]
    draw.polygon(body, fill=colour)
    if view == "front":
        draw.ellipse((205, 105, 275, 150), fill=(236, 236, 232))
    else:
        draw.rectangle((200, 110, 280, 130), fill=tuple(min(255, c + 40) for c in colour))
    return image


def _save(image: Image.Image, path: Path, **options) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)


def build(target: Path) -> Path:
    """Write the demo data set under ``target`` and return the folder."""
    if target.exists():
        shutil.rmtree(target)
    rows: list[dict] = []
    for name, sku, title, category, colour, description in MARKETING:
        photo = _skimage(name)
        _save(photo, target / "marketing" / f"{sku.lower()}-main.jpg", quality=92)
        crop = photo.crop((photo.width // 8, photo.height // 8, photo.width * 7 // 8, photo.height * 7 // 8))
        _save(crop, target / "marketing" / f"{sku.lower()}-detail.jpg", quality=90)
        for position, role in enumerate(("main", "detail")):
            rows.append(
                {
                    "path": f"marketing/{sku.lower()}-{role}.jpg",
                    "domain": "marketing",
                    "sku": sku,
                    "title": title,
                    "category": category,
                    "color": colour,
                    "description": description,
                    "doc_id": sku,
                    "position": position + 1,
                    "image_role": role,
                }
            )
        # The product page's text rows (no image path): the title before the photos, the description after them.
        rows += [
            {"path": "", "domain": "marketing", "doc_id": sku, "position": 0, "text": title},
            {"path": "", "domain": "marketing", "doc_id": sku, "position": 3, "text": description},
        ]
    for colour, rgb in SHIRT_COLOURS.items():
        for position, view in enumerate(("front", "back")):
            path = f"marketing/shirt-{colour}-{view}.png"
            _save(_shirt(rgb, view), target / path)
            rows.append(
                {
                    "path": path,
                    "domain": "marketing",
                    "sku": f"SHIRT-{colour.upper()}",
                    "title": f"Classic cotton t-shirt in {colour}",
                    "category": "apparel",
                    "color": colour,
                    "description": f"A {colour} crew-neck cotton t-shirt, {view} view, on a plain background.",
                    "doc_id": f"SHIRT-{colour.upper()}",
                    "position": position + 1,
                    "image_role": view,
                    "model": "TSHIRT-CLASSIC",
                }
            )
        rows += [
            {
                "path": "",
                "domain": "marketing",
                "doc_id": f"SHIRT-{colour.upper()}",
                "position": 0,
                "text": f"Classic cotton t-shirt in {colour}",
            },
            {
                "path": "",
                "domain": "marketing",
                "doc_id": f"SHIRT-{colour.upper()}",
                "position": 3,
                "text": "Crew neck, regular fit, 100% cotton. Machine wash at 30 degrees.",
            },
        ]
    # Planted marketing problems: an exact copy, a lossless re-encode, a missing file and a root escape.
    shutil.copy(target / "marketing" / "mug-01-main.jpg", target / "marketing" / "mug-01-copy.jpg")
    _save(
        Image.open(target / "marketing" / "shirt-green-front.png"),
        target / "marketing" / "shirt-green-front.webp",
        lossless=True,
    )
    # A near duplicate: the poster re-exported for the web, smaller and more compressed (near_dedup removes it).
    poster = Image.open(target / "marketing" / "poster-01-main.jpg")
    _save(
        poster.resize((poster.width * 3 // 5, poster.height * 3 // 5)),
        target / "marketing" / "poster-01-web.jpg",
        quality=70,
    )
    rows += [
        {"path": "marketing/mug-01-copy.jpg", "domain": "marketing", "sku": "MUG-01", "title": "Morning coffee cup"},
        {
            "path": "marketing/shirt-green-front.webp",
            "domain": "marketing",
            "sku": "SHIRT-GREEN",
            "title": "Classic cotton t-shirt in green",
        },
        {
            "path": "marketing/poster-01-web.jpg",
            "domain": "marketing",
            "sku": "POSTER-01",
            "title": "Astronaut portrait poster",
            "image_role": "main",
        },
        {"path": "marketing/discontinued.jpg", "domain": "marketing", "title": "A product whose photo was deleted"},
        {"path": "../../secrets/passwd.jpg", "domain": "marketing", "title": "A path escaping the data folder"},
    ]
    with open(target / "marketing.csv", "w", newline="", encoding="utf-8") as handle:
        fields = sorted({key for row in rows for key in row})
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)

    # Factory: surface inspections cut from textures, one sidecar JSON per image, a record id per inspection.
    for name, defect, line, camera in TEXTURES:
        texture = _skimage(name)
        for index in range(4):
            step = max(1, (texture.width - 256) // 4)
            tile = texture.crop((index * step, 0, index * step + 256, 256))
            tile = ImageEnhance.Brightness(tile).enhance(0.9 + 0.05 * index)
            stem = target / "factory" / f"{name}-{index}"
            _save(tile, stem.with_suffix(".jpg"), quality=88)
            label = defect if index % 2 else "none"
            sidecar = {
                "domain": "factory",
                "label": label,
                "material": "steel sheet",
                "line": line,
                "camera": camera,
                "doc_id": f"INSP-{name}-{index // 2}",
                "position": index % 2 + 1,
                "inspection_note": f"Surface patch from {camera} on {line}; defect class: {label}.",
            }
            stem.with_suffix(".json").write_text(json.dumps(sidecar, indent=1), encoding="utf-8")
    # Planted factory problems: a truncated JPEG, an empty file, a text file named .jpg, malformed sidecar JSON,
    # and an EXIF-rotated photo that must come out upright.
    good = io.BytesIO()
    _skimage("camera").save(good, format="JPEG", quality=90)
    (target / "factory" / "camera-truncated.jpg").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    (target / "factory" / "camera-truncated.json").write_text('{"domain": "factory", "label": "none"}')
    (target / "factory" / "empty.jpg").write_bytes(b"")
    (target / "factory" / "notes.jpg").write_bytes(b"shift notes: nothing to report\n")
    _save(_skimage("coins"), target / "factory" / "coins-badmeta.jpg")
    (target / "factory" / "coins-badmeta.json").write_text('{"domain": "factory", "label": ')
    rotated = _skimage("clock")
    exif = Image.Exif()
    exif[0x0112] = 6
    _save(rotated.transpose(Image.Transpose.ROTATE_90), target / "factory" / "clock-rotated.jpg", exif=exif)
    (target / "factory" / "clock-rotated.json").write_text(
        json.dumps(
            {
                "domain": "factory",
                "label": "none",
                "line": "line-2",
                "camera": "cam-c",
                "inspection_note": "Gauge photo from the line-2 handheld camera.",
            }
        )
    )
    # A holdout evaluation image outside the inputs; its copy in the pool (gravel-2) is rejected by decontamination.
    _save(Image.open(target / "factory" / "gravel-2.jpg"), target / "eval" / "holdout-gravel-2.jpg", quality=75)
    return target


if __name__ == "__main__":
    folder = build(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "data")
    print(f"demo data written to {folder}")
