"""Near-duplicate benchmark: precision and recall per transform kind against imagededup's pHash, split leaks, CPU
per image, and scaling.

Quality. Base images are real: product photos (every colour and view of each product) and promo banners from
``../shared/corpora/marketing``, steel surfaces (NEU) and magnetic tiles from ``../shared/corpora/factory``, and the
photos and textures scikit-image ships. Each base gets one copy per transform kind: ``jpeg`` (quality 30-95),
``resize`` (0.3-0.9x), ``crop`` (5-30% off each side, drawn per side), ``brightness`` and ``contrast`` (+-5 to 15%),
``overlay`` (a price tag and a watermark), ``logo`` (a coloured badge with letters, 12-22% of the shorter side, in a
corner), ``format`` (PNG or lossless WebP) and ``blur`` (Gaussian, radius 0.5-1.5). Distinct images that must not
match are mixed in, the hard ones included: the same product in another colour (wsh10 shorts differ only in the liner
colour) or from another view, other crops of the same steel class, two non-overlapping crops of one skimage texture.
Every image goes through unishard's own normalise and hashes, then the real ``NearDeduplicate`` transform on the
DirectRunner (with the normalised images, for its keypoint verification) for several ``max_distance`` values with the
geometric path on (``subwindow_max_distance = 8``; it is off by default in the pipeline) and with it off
(``subwindow_max_distance`` unset: the stage as it was), and imagededup's ``PHash.find_duplicates`` at its default
threshold (10) on the same files when imagededup is installed. A pair is predicted duplicate by unishard when both
images end in one removal group (same survivor), by imagededup when it lists them.
Precision counts pairs; recall is per transform copy: was it matched to its base.

Splits. The geometric configuration runs once more in ``report_only`` mode with its clusters linked into the real
``AssignSplits`` (``fractions = {train = 0.5, validation = 0.25, test = 0.25}``, grouped by nothing else): a true group
(a base and its copies) whose members land in two splits is a leak.

CPU per image. Process CPU time of the near-dup work per image: the hashes it needs in normalise (``phash`` and
``colour`` before; plus ``subwindow`` after) and the ``NearDeduplicate`` pipeline (the keypoint verification, which
reads and features the candidates' images, included), both measured in this process.

Scale. Synthetic fingerprints (random pHash, 10% planted near copies within 4 bits, random colour signatures, 45
window hashes each, half of them kept by each planted copy) run through ``NearDeduplicate`` in a fresh process per
size: the pHash bands, the window buckets, their pair counting and the candidate joins, which grow with N (no
images: every candidate ends unverifiable, so keypoint extraction and matching, a cost per candidate pair measured
above, are not in it); wall time and peak RSS of the process tree are measured and their ratio between sizes
reported (near-linear means a time ratio close to the size ratio).

Run (imagededup is installed for this benchmark only, it is not a unishard dependency)::

    .venv/bin/pip install imagededup   # optional: the comparison row is skipped without it
    .venv/bin/python benchmarks/bench_near_dedup.py [--per-source 40] [--distances 6,8,10,12] [--scale 10000,100000]
"""

import argparse
import csv
import dataclasses
import hashlib
import io
import itertools
import json
import os
import pickle
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CORPORA = ROOT.parent / "shared" / "corpora"
KINDS = ("jpeg", "resize", "crop", "brightness", "contrast", "overlay", "logo", "format", "blur")
NON_CROP = tuple(kind for kind in KINDS if kind != "crop")
DEFAULT_K = 8
# The crop and overlay path (off by default in the pipeline) as this benchmark measures it.
GEOMETRIC = {"subwindow_max_distance": 8}
SYNTHETIC_WINDOWS = 45
SPLIT_FRACTIONS = {"train": 0.5, "validation": 0.25, "test": 0.25}
# Bases that are the same object although their files differ, found by looking at the pairs the methods agreed on,
# and confirmed outside the code under test: OpenCV's ORB matched with a ratio test and RANSAC
# (``estimateAffinePartial2D``) finds a pure shift at scale 1.000 with nearly every match an inlier. The magnetic-tile
# set photographs one tile at several exposures (``expN``) and framings; NEU cuts overlapping 200x200 windows out of
# one strip (crazing 231 and 233: shifted by 45 and 67 pixels, 139 of 139 inliers, phase correlation peak 0.44).
# The two "performance" banners are windows of one beach photo: SIFT, ratio test 0.75, gives 79 of 81 matches as
# inliers of a pure shift (scale 1.000, 92 and 46 pixels); the crop path found them once the 1280x200 banner had
# windows.
# Each pair is one ground-truth group: a split that puts its two files apart leaks.
SAME_OBJECT = (
    ("factory/magnetic_tile/MT_Uneven/exp2_num_542.jpg", "factory/magnetic_tile/MT_Uneven/exp4_num_573.jpg"),
    ("factory/magnetic_tile/MT_Uneven/exp2_num_542.jpg", "factory/magnetic_tile/MT_Uneven/exp5_num_592.jpg"),
    ("factory/magnetic_tile/MT_Uneven/exp1_num_274094.jpg", "factory/magnetic_tile/MT_Uneven/exp5_num_274174.jpg"),
    ("factory/magnetic_tile/MT_Crack/exp3_num_339854.jpg", "factory/magnetic_tile/MT_Crack/exp4_num_339867.jpg"),
    ("factory/neu_det/crazing/crazing_231.jpg", "factory/neu_det/crazing/crazing_233.jpg"),
    ("marketing/banners/new/new-performance.jpg", "marketing/banners/collection/collection-performance.jpg"),
)


@dataclasses.dataclass
class Item:
    name: str
    group: str
    kind: str
    data: bytes
    label: str = ""
    facts: dict = dataclasses.field(default_factory=dict)


def _encode(image: Image.Image, fmt: str = "JPEG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def transform(image: Image.Image, kind: str, rng: random.Random) -> bytes:
    """One copy of ``image`` changed as ``kind`` says, encoded."""
    w, h = image.size
    if kind == "jpeg":
        return _encode(image, quality=rng.randint(30, 95))
    if kind == "resize":
        scale = rng.uniform(0.3, 0.9)
        return _encode(image.resize((max(8, round(w * scale)), max(8, round(h * scale))), Image.Resampling.LANCZOS))
    if kind == "crop":
        left, top, right, bottom = (rng.uniform(0.05, 0.3) for _ in range(4))
        box = (round(w * left), round(h * top), round(w * (1 - right)), round(h * (1 - bottom)))
        return _encode(image.crop(box))
    if kind == "brightness":
        return _encode(ImageEnhance.Brightness(image).enhance(rng.choice([-1, 1]) * rng.uniform(0.05, 0.15) + 1))
    if kind == "contrast":
        return _encode(ImageEnhance.Contrast(image).enhance(rng.choice([-1, 1]) * rng.uniform(0.05, 0.15) + 1))
    if kind == "overlay":
        marked = image.copy()
        draw = ImageDraw.Draw(marked, "RGBA")
        size = max(10, h // 20)
        draw.text((w * 0.05, h * 0.05), f"NEW ${rng.randint(5, 99)}.99", fill=(0, 0, 0, 255), font=_font(size))
        draw.text((w * 0.5, h * 0.9), "(c) unishard", fill=(255, 255, 255, 140), font=_font(size))
        return _encode(marked)
    if kind == "logo":
        return _encode(with_logo(image, rng))
    if kind == "format":
        return _encode(image, "PNG") if rng.random() < 0.5 else _encode(image, "WEBP", lossless=True)
    if kind == "blur":
        return _encode(image.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5))))
    raise ValueError(kind)


def with_logo(image: Image.Image, rng: random.Random) -> Image.Image:
    """``image`` with a badge (a coloured disc or rounded box with two letters) pasted in a random corner."""
    w, h = image.size
    side = max(12, round(min(w, h) * rng.uniform(0.12, 0.22)))
    badge = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    draw = ImageDraw.Draw(badge)
    colour = (*(rng.randint(0, 255) for _ in range(3)), rng.randint(200, 255))
    if rng.random() < 0.5:
        draw.ellipse((0, 0, side - 1, side - 1), fill=colour)
    else:
        draw.rounded_rectangle((0, 0, side - 1, side - 1), radius=side // 5, fill=colour)
    letters = "".join(rng.choice("ABCDEFGHKMNPRSTUXZ") for _ in range(2))
    draw.text((side * 0.18, side * 0.25), letters, fill=(255, 255, 255, 255), font=_font(max(8, side // 2)))
    margin = round(min(w, h) * 0.03)
    x = margin if rng.random() < 0.5 else w - side - margin
    y = margin if rng.random() < 0.5 else h - side - margin
    marked = image.convert("RGBA")
    marked.alpha_composite(badge, (max(0, x), max(0, y)))
    return marked.convert("RGB")


def _skimage_bases() -> list[tuple[str, Image.Image, dict]]:
    import skimage.data

    bases = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "moon", "page", "text", "clock"):
        array = getattr(skimage.data, name)()
        bases.append((f"skimage/{name}", Image.fromarray(array).convert("RGB"), {"source": "skimage"}))
    for name in ("brick", "gravel", "grass"):
        texture = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
        half = texture.width // 2
        for index in range(2):
            crop = texture.crop((index * half, 0, index * half + half, texture.height // 2))
            bases.append((f"skimage/{name}-{index}", crop, {"texture": name, "source": "skimage"}))
    return bases


def corpus_bases(per_source: int, rng: random.Random) -> list[tuple[str, Image.Image, dict]]:
    """Real base images with the facts the hard-negative tallies need (sku, colour, view, steel class).

    Every colour of every product sold in several colours is in (the hardest negatives); other views for a sample.
    """
    bases = _skimage_bases()
    with open(CORPORA / "marketing" / "metadata.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    coloured = defaultdict(list)
    for row in rows:
        if row["kind"] == "product_photo" and row["color"]:
            coloured[row["sku"]].append(row)
    skus = sorted(sku for sku, found in coloured.items() if len({r["color"] for r in found}) > 1)
    chosen = set(rng.sample(skus, min(len(skus), per_source // 2)))
    for sku in skus:
        for row in coloured[sku]:
            view = row["path"].rsplit("_", 1)[-1].removesuffix(".jpg")
            if view != "main" and sku not in chosen:
                continue
            facts = {"sku": sku, "colour": row["color"], "view": view, "source": "products"}
            bases.append((f"marketing/{row['path']}", Image.open(CORPORA / "marketing" / row["path"]), facts))
    banners = sorted(row["path"] for row in rows if row["kind"] == "promo_banner")
    for path in rng.sample(banners, min(len(banners), per_source // 2)):
        bases.append((f"marketing/{path}", Image.open(CORPORA / "marketing" / path), {"source": "banners"}))
    with open(CORPORA / "factory" / "labels.csv", newline="", encoding="utf-8") as handle:
        labels = list(csv.DictReader(handle))
    for folder, count in (("neu_det", per_source), ("magnetic_tile", per_source // 2)):
        found = sorted((row["path"], row["label"]) for row in labels if row["path"].startswith(folder))
        for path, label in rng.sample(found, min(len(found), count)):
            facts = {"steel": label if folder == "neu_det" else "", "label": label, "source": folder}
            bases.append((f"factory/{path}", Image.open(CORPORA / "factory" / path), facts))
    return [(name, image.convert("RGB"), facts) for name, image, facts in bases]


def build_items(per_source: int, seed: int) -> list[Item]:
    rng = random.Random(seed)
    items: list[Item] = []
    groups: dict[bytes, str] = {}
    for name, image, facts in corpus_bases(per_source, rng):
        image.thumbnail((1024, 1024))
        data = _encode(image, quality=95)
        group = groups.setdefault(hashlib.sha256(np.asarray(image).tobytes()).digest(), name)
        label = facts.get("label", "")
        items.append(Item(name, group, "base", data, label, facts))
        for kind in KINDS:
            items.append(Item(f"{name}~{kind}", group, kind, transform(image, kind, rng), label, facts))
    return same_object_groups(items)


def same_object_groups(items: list[Item]) -> list[Item]:
    """``items`` with the groups of ``SAME_OBJECT`` bases joined (also on items read back from a ``--cache``)."""
    same = {b: a for a, b in SAME_OBJECT}
    return [dataclasses.replace(item, group=same.get(item.group, item.group)) for item in items]


def fingerprints(items: list[Item], store: Path) -> tuple[list, list, dict]:
    """Fingerprints and samples (normalised images written under ``store``) of every item, and the hashing CPU.

    Returns:
        Fingerprints, samples, and CPU seconds spent on the ``phash`` + ``colour`` hashes and what computing
        ``subwindow`` with them adds.
    """
    import dataclasses as dc

    from schemas.config.near_dedup import NearDedupConfig
    from schemas.config.normalise import NormaliseConfig
    from schemas.records.dedup import Fingerprint
    from schemas.records.samples import ImageInfo, Sample
    from transforms.hashing import perceptual_hashes
    from transforms.normalise import content_key, encode, normalise_image

    config = NormaliseConfig()
    found, samples, cpu = [], [], {"phash+colour": 0.0, "subwindow": 0.0}
    inline = "image_ref" not in {field.name for field in dc.fields(Sample)}
    for index, item in enumerate(items):
        key, sha = content_key(item.data)
        image, original, _ = normalise_image(item.data, config)
        started = time.process_time()
        hashes = perceptual_hashes(image, ["phash", "colour"])
        before = time.process_time() - started
        cpu["phash+colour"] += before
        # The hashes as normalise computes them for the default config (one call, sharing the grayscale copy).
        started = time.process_time()
        hashes = perceptual_hashes(image, NearDedupConfig(**GEOMETRIC).hash_names())
        cpu["subwindow"] += time.process_time() - started - before
        found.append(
            Fingerprint(
                key=key,
                source=item.name,
                sha256=sha,
                pixel_sha256=sha,
                pixels=original.width * original.height,
                file_size=len(item.data),
                richness=1,
                domain="bench",
                metadata={"label": item.label},
                hashes=hashes,
            )
        )
        encoded = encode(image, config)
        path = store / f"{index:06d}.jpg"
        path.write_bytes(encoded)
        info = ImageInfo(image.width, image.height, "JPEG", "RGB", len(encoded))
        stored = {"image": encoded} if inline else {"image": b"", "image_ref": str(path)}
        samples.append(
            Sample(
                key,
                item.name,
                "",
                "bench",
                {"label": item.label},
                image_ext="jpg",
                sha256=sha,
                pixel_sha256=sha,
                original=original,
                normalised=info,
                hashes=hashes,
                **stored,
            )
        )
    return found, samples, cpu


def unishard_run(fps: list, samples: list, splits: bool = False, **overrides) -> tuple[set[frozenset], dict]:
    """Pairs in one removal group after the real ``NearDeduplicate`` on the DirectRunner, and what else it measured.

    With ``splits``, the clusters (``report_only``) go into the real ``AssignSplits``; the extras then hold each
    source's split. The extras always hold the process CPU seconds of the run and the methods that matched.
    """
    import apache_beam as beam
    import pyarrow.parquet as pq

    from schemas.config.near_dedup import NearDedupConfig
    from schemas.config.split import SplitConfig
    from schemas.records.dedup import DuplicateCluster
    from transforms.near_dedup import NearDeduplicate
    from transforms.split import AssignSplits

    config = NearDedupConfig(**({"report_only": True} if splits else {}), **overrides)
    extras: dict = {}
    with tempfile.TemporaryDirectory() as out:
        started = time.process_time()
        with beam.Pipeline(runner="DirectRunner") as pipeline:
            fp_pcoll = pipeline | "Fingerprints" >> beam.Create(fps)
            sample_pcoll = pipeline | "Samples" >> beam.Create(samples)
            near = fp_pcoll | NearDeduplicate(config, out, samples=sample_pcoll)
            if splits:
                links = (near.clusters | beam.FlatMap(DuplicateCluster.links), near.related) | beam.Flatten()
                split_config = SplitConfig(fractions=SPLIT_FRACTIONS, group_by=[], min_groups=0)
                assigned = sample_pcoll | AssignSplits(split_config, out, links=links)
                _ = (
                    assigned.samples
                    | beam.Map(lambda sample: f"{sample.source}\t{sample.split}")
                    | beam.io.WriteToText(str(Path(out) / "splits" / "assigned"))
                )
        extras["cpu_seconds"] = time.process_time() - started
        rows = pq.read_table(Path(out) / "dedup" / "near_dedup.parquet").to_pylist()
        if splits:
            lines = [
                line for path in (Path(out) / "splits").glob("assigned*") for line in path.read_text().splitlines()
            ]
            extras["splits"] = dict(line.split("\t") for line in lines)
    extras["methods"] = dict(sorted(Counter(row["method"] for row in rows if row["method"]).items()))
    groups = defaultdict(list)
    for row in rows:
        groups[(row["cluster_id"], row["survivor_key"])].append(row["source"])
    pairs = {frozenset(pair) for members in groups.values() for pair in itertools.combinations(members, 2)}
    return pairs, extras


def split_leaks(items: list[Item], assigned: dict[str, str]) -> dict:
    """True groups (a base and its copies) whose members landed in more than one split."""
    splits_of = defaultdict(set)
    for item in items:
        splits_of[item.group].add(assigned[item.name])
    leaking = sorted(group for group, found in splits_of.items() if len(found) > 1)
    return {"groups": len(splits_of), "leaking_groups": len(leaking), "examples": leaking[:10]}


def imagededup_pairs(items: list[Item]) -> tuple[set[frozenset], float]:
    from imagededup.methods import PHash

    with tempfile.TemporaryDirectory() as folder:
        names = {}
        for index, item in enumerate(items):
            path = Path(folder) / f"{index:06d}.img"
            path.write_bytes(item.data)
            names[path.name] = item.name
        started = time.perf_counter()
        found = PHash(verbose=False).find_duplicates(image_dir=Path(folder), max_distance_threshold=10)
        seconds = time.perf_counter() - started
    pairs = {frozenset((names[a], names[b])) for a, others in found.items() for b in others if a != b}
    return pairs, seconds


def base_of(item: Item) -> str:
    """The base image a transformed copy was made from."""
    return item.name.rsplit("~", 1)[0]


def score(items: list[Item], pairs: set[frozenset]) -> dict:
    by_name = {item.name: item for item in items}
    true = sum(1 for pair in pairs if len({by_name[n].group for n in pair}) == 1)
    result = {"pairs": len(pairs), "precision": true / len(pairs) if pairs else 1.0}
    non_crop = [pair for pair in pairs if all(by_name[n].kind != "crop" for n in pair)]
    non_crop_true = sum(1 for pair in non_crop if len({by_name[n].group for n in pair}) == 1)
    result["precision_non_crop"] = non_crop_true / len(non_crop) if non_crop else 1.0
    for kind in KINDS:
        copies = [item for item in items if item.kind == kind]
        hits = sum(1 for item in copies if frozenset((item.name, base_of(item))) in pairs)
        involved = [pair for pair in pairs if any(by_name[n].kind == kind for n in pair)]
        correct = sum(1 for pair in involved if len({by_name[n].group for n in pair}) == 1)
        result[kind] = {"recall": hits / len(copies), "precision": correct / len(involved) if involved else 1.0}
    copies = [item for item in items if item.kind in NON_CROP]
    hits = sum(1 for item in copies if frozenset((item.name, base_of(item))) in pairs)
    result["recall_non_crop"] = hits / len(copies)
    copies = [item for item in items if item.kind in KINDS]
    result["recall"] = sum(1 for item in copies if frozenset((item.name, base_of(item))) in pairs) / len(copies)
    result["hard_negatives"] = hard_negatives(items, pairs)
    return result


def hard_negatives(items: list[Item], pairs: set[frozenset]) -> dict:
    """Distinct-but-similar base pairs merged: colour variants, other views, same steel class, texture crops."""
    bases = [item for item in items if item.kind == "base" and item.name == item.group]
    tallies = defaultdict(lambda: [0, 0])
    for a, b in itertools.combinations(bases, 2):
        fa, fb = a.facts, b.facts
        if fa.get("sku") and fa.get("sku") == fb.get("sku"):
            kind = "colour_variant" if fa["view"] == fb["view"] and fa["colour"] != fb["colour"] else "other_view"
        elif fa.get("steel") and fa.get("steel") == fb.get("steel"):
            kind = "same_steel_class"
        elif fa.get("texture") and fa.get("texture") == fb.get("texture"):
            kind = "texture_crop"
        else:
            continue
        tallies[kind][1] += 1
        tallies[kind][0] += frozenset((a.name, b.name)) in pairs
    return {kind: f"{merged}/{total}" for kind, (merged, total) in sorted(tallies.items())}


def explain(items: list[Item], fps: list, pairs: set[frozenset]) -> None:
    """Print the base pairs behind the false positives: pHash bits and colour distance, and how many pairs each."""
    from transforms.hashing import colour_distance, decode_colour

    group = {item.name: item.group for item in items}
    hashes = {fp.source: fp.hashes for fp in fps}
    wrong: dict[tuple, int] = defaultdict(int)
    for pair in pairs:
        a, b = sorted(pair)
        if group[a] != group[b]:
            wrong[tuple(sorted((a.rsplit("~", 1)[0], b.rsplit("~", 1)[0])))] += 1
    for (a, b), count in sorted(wrong.items(), key=lambda item: -item[1]):
        ha, hb = hashes[a], hashes[b]
        bits = (int(ha["phash"], 16) ^ int(hb["phash"], 16)).bit_count()
        colour = float(colour_distance(decode_colour(ha["colour"]), decode_colour(hb["colour"])))
        print(f"    {count:3d} pairs from {a} + {b}: {bits} bits, colour {colour:.1f}")


def synthetic(start: int, stop: int) -> list:
    """Fingerprints ``start`` to ``stop``: random pHash, colour and ``SYNTHETIC_WINDOWS`` window hashes (as many as
    a real photo has), every tenth a near copy (<= 4 bits) of the one before it that keeps half its windows. ``start``
    is a multiple of 10, so chunks generated apart agree with the whole."""
    from schemas.records.dedup import Fingerprint
    from transforms.hashing import COLOUR_GRID

    rng = np.random.default_rng(start)
    found, previous = [], (0, "", [])
    for index in range(start, stop):
        if index % 10 == 9:
            value, colour, windows = previous
            for bit in rng.choice(64, size=int(rng.integers(0, 5)), replace=False):
                value ^= 1 << int(bit)
            # A crop keeps some of its original's windows (each a few bits off) and has new ones at its edges.
            kept = [w ^ (1 << int(rng.integers(0, 64))) for w in windows[: SYNTHETIC_WINDOWS // 2]]
            windows = kept + [int(w) for w in rng.integers(0, 2**63, SYNTHETIC_WINDOWS - len(kept), dtype=np.int64)]
        else:
            value, colour = (
                int(rng.integers(0, 2**63)) * 2 + int(rng.integers(0, 2)),
                rng.bytes(3 * COLOUR_GRID**2).hex(),
            )
            windows = [int(w) for w in rng.integers(0, 2**63, SYNTHETIC_WINDOWS, dtype=np.int64)]
        previous = value, colour, windows
        found.append(
            Fingerprint(
                key=f"{index:032x}",
                source=f"s{index:09d}",
                sha256="",
                pixel_sha256="",
                pixels=1000 + index % 7,
                file_size=1000,
                richness=1,
                domain="bench",
                hashes={
                    "phash": f"{value:016x}",
                    "colour": colour,
                    "subwindow": "".join(f"{w:016x}" for w in windows),
                },
            )
        )
    return found


def scale_child(count: int) -> None:
    """Run ``NearDeduplicate`` over ``count`` synthetic fingerprints (in a fresh process: the parent measures it).

    The fingerprints are generated inside the pipeline, in chunks, as a real run reads them from files: the driver
    never holds them.
    """
    import apache_beam as beam

    from schemas.config.near_dedup import NearDedupConfig
    from transforms.near_dedup import NearDeduplicate

    chunk = 1000
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        with beam.Pipeline(runner="DirectRunner") as pipeline:
            no_images = pipeline | "NoImages" >> beam.Create([])
            _ = (
                pipeline
                | beam.Create(list(range(0, count, chunk)))
                | beam.Reshuffle()
                | beam.FlatMap(lambda first: synthetic(first, min(first + chunk, count)))
                | NearDeduplicate(NearDedupConfig(**GEOMETRIC), out, samples=no_images)
            )
        summary = json.loads((Path(out) / "dedup" / "near_dedup.json").read_text())
    print(json.dumps({"seconds_in_pipeline": time.perf_counter() - started, "removed": summary["images_removed"]}))


def run_scale(sizes: list[int]) -> list[dict]:
    from benchmarks._measure import run_measured

    results = []
    for count in sizes:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        seconds, peak, output = run_measured([sys.executable, __file__, "--scale-child", str(count)], env=env)
        inner = json.loads(output.strip().splitlines()[-1])
        results.append({"hashes": count, "seconds": round(seconds, 1), "peak_rss_mb": round(peak / 2**20), **inner})
    return results


def quality(args: argparse.Namespace) -> dict:
    """Precision, recall, split leaks and CPU of unishard (each ``max_distance``) and imagededup on one image set."""
    store = Path(args.store or tempfile.mkdtemp(prefix="bench-near-"))
    store.mkdir(parents=True, exist_ok=True)
    if args.cache and Path(args.cache).exists():
        items, fps, samples, hash_cpu = pickle.loads(Path(args.cache).read_bytes())
        items = same_object_groups(items)
    else:
        items = build_items(args.per_source, args.seed)
        fps, samples, hash_cpu = fingerprints(items, store)
        if args.cache:
            Path(args.cache).write_bytes(pickle.dumps((items, fps, samples, hash_cpu)))
    bases = sum(item.kind == "base" for item in items)
    print(f"{len(items)} images: {bases} bases x (1 + {len(KINDS)} transforms)")
    figures: dict = {"images": len(items), "bases": bases}
    methods, extras = {}, {}
    for k in [int(v) for v in args.distances.split(",") if v]:
        methods[f"unishard k={k}"], extras[f"unishard k={k}"] = unishard_run(fps, samples, max_distance=k, **GEOMETRIC)
    before = f"unishard k={DEFAULT_K} no geometry"
    methods[before], extras[before] = unishard_run(fps, samples, subwindow_max_distance=None)
    methods[f"unishard k={DEFAULT_K} no colour/geometry"], _ = unishard_run(
        fps, samples, max_colour_distance=None, subwindow_max_distance=None
    )
    try:
        methods["imagededup phash t=10"], _ = imagededup_pairs(items)
    except ImportError:
        print("imagededup is not installed: its row is skipped")
    header = f"{'method':28s} {'prec':>6s} {'rec':>6s} {'rec*':>6s} " + " ".join(f"{k[:6]:>13s}" for k in KINDS)
    print("\nrecall/precision per kind; * = over non-crop transforms")
    print(header)
    for name, pairs in methods.items():
        result = score(items, pairs)
        result.update({key: value for key, value in extras.get(name, {}).items() if key != "splits"})
        figures[name] = result
        cells = " ".join(f"{result[k]['recall']:.3f}/{result[k]['precision']:.3f}" for k in KINDS)
        print(
            f"{name:28s} {result['precision']:6.3f} {result['recall']:6.3f} {result['recall_non_crop']:6.3f} {cells}"
        )
    if args.explain:
        for name, pairs in methods.items():
            print(f"\nfalse positives of {name}:")
            explain(items, fps, pairs)
    print("\nhard negatives merged (pairs of distinct bases):")
    for name in methods:
        print(f"  {name:28s} {figures[name]['hard_negatives']}")
    print("\nmethods that matched (cluster members):")
    for name, found in extras.items():
        print(f"  {name:28s} {found['methods']}")
    leaks = {}
    for name, overrides in ((before, {"subwindow_max_distance": None}), (f"unishard k={DEFAULT_K}", GEOMETRIC)):
        _, found = unishard_run(fps, samples, splits=True, **overrides)
        leaks[name] = split_leaks(items, found["splits"])
    figures["split_leaks"] = leaks
    print(f"\nsplit leaks (report_only, fractions {SPLIT_FRACTIONS}):")
    for name, found in leaks.items():
        print(f"  {name:28s} {found['leaking_groups']} of {found['groups']} true groups in two splits")
    count = len(items)
    after = f"unishard k={DEFAULT_K}"
    cpu = {
        "before_ms_per_image": 1000 * (hash_cpu["phash+colour"] + extras[before]["cpu_seconds"]) / count,
        "after_ms_per_image": 1000
        * (hash_cpu["phash+colour"] + hash_cpu["subwindow"] + extras[after]["cpu_seconds"])
        / count,
        "hashes_before_ms": 1000 * hash_cpu["phash+colour"] / count,
        "subwindow_hash_ms": 1000 * hash_cpu["subwindow"] / count,
        "pipeline_before_ms": 1000 * extras[before]["cpu_seconds"] / count,
        "pipeline_after_ms": 1000 * extras[after]["cpu_seconds"] / count,
    }
    figures["cpu_per_image"] = {name: round(value, 1) for name, value in cpu.items()}
    print(f"\nnear-dup CPU per image (ms): {figures['cpu_per_image']}")
    print(f"  after / before: {cpu['after_ms_per_image'] / cpu['before_ms_per_image']:.2f}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-source", type=int, default=40, help="bases drawn per corpus folder")
    parser.add_argument("--distances", default="6,8,10,12", help="max_distance values to run")
    parser.add_argument("--scale", default="10000,100000", help="synthetic sizes; empty to skip")
    parser.add_argument("--scale-only", action="store_true", help="skip the quality part")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--cache", help="pickle of the images and fingerprints, reused when it exists")
    parser.add_argument("--store", help="folder for the normalised images (keep it with --cache); default: a temp dir")
    parser.add_argument("--explain", action="store_true", help="list the false-positive pairs of the default k")
    parser.add_argument("--scale-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scale_child:
        scale_child(args.scale_child)
        return
    figures = {} if args.scale_only else quality(args)
    sizes = [int(v) for v in args.scale.split(",") if v]
    if sizes:
        scale = run_scale(sizes)
        figures["scale"] = scale
        print("\nscale (synthetic hashes, DirectRunner, fresh process each):")
        for row in scale:
            print(f"  {row['hashes']:>8d} hashes: {row['seconds']:7.1f}s  peak RSS {row['peak_rss_mb']} MB")
        if len(scale) > 1:
            first, last = scale[0], scale[-1]
            print(
                f"  x{last['hashes'] / first['hashes']:.0f} hashes -> time x{last['seconds'] / first['seconds']:.2f}, "
                f"peak RSS x{last['peak_rss_mb'] / first['peak_rss_mb']:.2f}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
