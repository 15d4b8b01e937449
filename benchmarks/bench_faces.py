"""Face recall against cost: what a cheaper Haar setting would lose, on real and planted faces.

Runs ``transforms.faces.detect_faces`` with the default ``FacesConfig`` and with each variant given, on:

- every photo under ``--people`` (real faces; the marketing corpus shows models wearing the products), normalised as
  a run would (``normalise_image``, ``--max-side``); a variant's boxes are matched to the default's (IoU > 0.3);
- ``--planted`` backgrounds from ``--backgrounds`` (inspection images, no faces), each with the astronaut's head from
  ``skimage.data`` pasted at a random place and size (8 to 40% of the short side, seeded): a planted face is found
  when a box covers its centre. Every background without a face counts false positives.

The cascade's boxes move with the grid it scans, so a second line gives the default's own spread: its faces on each
people photo shifted by one pixel, matched to the unshifted ones. A variant that matches as many of the default's
faces loses none that the default finds reliably.

Prints one JSON line per setting: faces found, the default's faces matched, planted faces found, false positives
and milliseconds per image (one OpenCV thread, as the stage runs). Compare milliseconds within one run only: on a
shared machine they move with the load.

    python benchmarks/bench_faces.py --people ../shared/corpora/marketing --backgrounds ../shared/corpora/factory \
        --variant '{"detect_side": 320}' --variant '{"detect_side": 320, "min_neighbors": 3}'
"""

import argparse
import json
import random
import sys
import time
from pathlib import Path

import cv2
import skimage.data
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from schemas.config.faces import FacesConfig  # noqa: E402
from schemas.config.normalise import NormaliseConfig  # noqa: E402
from transforms.faces import detect_faces, load_detector  # noqa: E402
from transforms.normalise import normalise_image  # noqa: E402

SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
HEAD = (165, 45, 285, 175)  # the astronaut's head in skimage's 512x512 picture, a little wider than the face box


def normalised(folder: Path, max_side: int) -> list[Image.Image]:
    config, images = NormaliseConfig(max_side=max_side), []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES):
        try:
            images.append(normalise_image(path.read_bytes(), config)[0])
        except Exception:  # noqa: BLE001 - an unreadable file is no face either way
            continue
    return images


def plant(backgrounds: list[Image.Image], seed: int) -> list[tuple[Image.Image, tuple[float, float]]]:
    rng, head = random.Random(seed), Image.fromarray(skimage.data.astronaut()).crop(HEAD)
    planted = []
    for background in backgrounds:
        image, side = background.copy(), int(min(background.size) * rng.uniform(0.08, 0.4))
        face = head.resize((side, int(side * head.height / head.width)))
        x, y = rng.randint(0, image.width - face.width), rng.randint(0, max(0, image.height - face.height))
        image.paste(face, (x, y))
        planted.append((image, (x + face.width / 2, y + face.height / 2)))
    return planted


def overlap(a: tuple, b: tuple) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    inter = max(0, min(ax + aw, bx + bw) - max(ax, bx)) * max(0, min(ay + ah, by + bh) - max(ay, by))
    return inter / (aw * ah + bw * bh - inter)


def shifted(image: Image.Image, pixels: int) -> Image.Image:
    """``image`` less its first ``pixels`` columns and rows: the same faces on another grid of the cascade's."""
    return image.crop((pixels, pixels, image.width, image.height))


def matched(theirs: list[list], mine: list[list]) -> int:
    """How many of ``theirs`` boxes (per image) a box of ``mine`` overlaps (IoU > 0.3)."""
    pairs = zip(theirs, mine, strict=True)
    return sum(any(overlap(a, b) > 0.3 for b in found) for boxes, found in pairs for a in boxes)


def measure(config: FacesConfig, people: list, planted: list, backgrounds: list) -> dict:
    detector = load_detector()
    started = time.perf_counter()
    boxes = [detect_faces(image, detector, config) for image in people]
    found = 0
    for image, (cx, cy) in planted:
        found += any(x < cx < x + w and y < cy < y + h for x, y, w, h in detect_faces(image, detector, config))
    seconds = time.perf_counter() - started
    false = sum(len(detect_faces(image, detector, config)) for image in backgrounds)
    return {
        "faces": sum(map(len, boxes)),
        "planted_found": found,
        "planted": len(planted),
        "false_positives": false,
        "ms_per_image": round(seconds / (len(people) + len(planted)) * 1000, 1),
        "boxes": boxes,
    }


def measure_boxes(config: FacesConfig, people: list) -> list[list]:
    detector = load_detector()
    return [detect_faces(shifted(image, 1), detector, config) for image in people]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=Path, required=True)
    parser.add_argument("--backgrounds", type=Path, required=True)
    parser.add_argument("--planted", type=int, default=60)
    parser.add_argument("--max-side", type=int, default=512)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--variant", action="append", default=[], help="FacesConfig fields as JSON (repeatable)")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    people = normalised(args.people, args.max_side)
    backgrounds = normalised(args.backgrounds, args.max_side)
    planted = plant(backgrounds[:: max(1, len(backgrounds) // args.planted)][: args.planted], args.seed)
    base = measure(FacesConfig(), people, planted, backgrounds)
    print(
        json.dumps(
            {
                "setting": "default",
                "people_images": len(people),
                "background_images": len(backgrounds),
                **{k: base[k] for k in base if k != "boxes"},
            }
        )
    )
    # The yardstick of "the same faces": the default itself, each people photo shifted by one pixel.
    moved = [[(x + 1, y + 1, w, h) for x, y, w, h in boxes] for boxes in measure_boxes(FacesConfig(), people)]
    found = matched(base["boxes"], moved)
    print(json.dumps({"setting": "default, frames shifted 1 px", "default_faces_matched": found}))
    for text in args.variant:
        result = measure(FacesConfig(**json.loads(text)), people, planted, backgrounds)
        found = matched(base["boxes"], result.pop("boxes"))
        print(json.dumps({"setting": json.loads(text), "default_faces_matched": found, **result}))


if __name__ == "__main__":
    main()
