"""Benchmark the quality stage: degraded images caught, clean images spared, and its CPU cost beside normalise.

Corpus (built in a temporary folder; nothing is copied into the repository): per domain up to ``--per-domain``
images, factory from ``/work/shared/corpora/factory`` (999 magnetic tiles, NEU steel and DeepPCB scans;
``labels.csv``; the metadata field ``camera`` names the dataset, since each is one acquisition setup) and marketing
from the 17 photos scikit-image ships (``skimage.data``) and ``/work/shared/corpora/marketing`` (324 product photos
and banners, so at most 341).
In each domain a seeded quarter of the images is degraded instead of kept clean (so every degraded image is a copy of
an image that is not in the clean set), the five kinds in turn: Gaussian blur (radius 1% of the longer side),
brightness x2.5, brightness x0.2, contrast x0.15, and a text banner: a band over 40% of the frame filled with two
lines of bold capitals (Pillow's built-in font). Degraded copies are written as JPEG quality 90.

The corpus goes through the real ``unishard run`` (``--smoke-models``; the quality stage switched on, its thresholds
left at their defaults; deduplication, faces, safety, audit, documents and the eval set switched off) and the
figures are read from the run's ledger: the share of each kind rejected by the ``quality`` stage, and the share of
clean images it rejected, per domain. A degraded copy whose analysed pixels differ from its original's by less than
one level on average (the largest channel difference) is not degraded (brightness x2.5 leaves a binarised PCB scan
as it was): it is listed and left out of the detection rates.

Cost: on ``--cost-images`` photos resized to ~1 MP (1224x816 JPEG, quality 90), each round times, per image, the
normalise stage's work made of its public functions (SHA-256 key, decode, convert, orient, resize, encode, pixel
hash, perceptual hashes; the image-store write left out), then the quality measurement as a run does it (normalise
measures the normalised pixels it holds: ``analysis_copy``, ``measure``), then the quality stage's fallback for a
sample that comes unmeasured (decoding the stored bytes: ``analysis_pixels``, ``measure``), interleaved; reported is
the median over rounds of quality CPU / normalise CPU for each (target <= 0.10 for the run's path).

    python benchmarks/bench_quality.py --per-domain 200
    python benchmarks/bench_quality.py --per-domain 200 --measures measures.csv   # report_only: every measure
"""

import argparse
import csv
import hashlib
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CORPORA = Path("/work/shared/corpora")
KINDS = ("blur", "bright", "dark", "flat", "banner")
PHOTOS = (
    "astronaut", "brick", "camera", "cat", "chelsea", "clock", "coffee", "coins", "grass", "gravel",
    "hubble_deep_field", "immunohistochemistry", "moon", "rocket", "retina", "cell", "stereo_motorcycle",
)  # fmt: skip
WORDS = (
    "SUMMER", "SALE", "UP", "TO", "50%", "OFF", "NEW", "COLLECTION", "FREE", "SHIPPING", "BUY", "NOW", "LIMITED",
    "OFFER", "SHOP", "THE", "LOOK", "ALL", "SIZES", "TODAY", "ONLY", "BEST", "SELLER", "ORDER", "ONLINE", "SAVE",
    "30%", "WINTER", "DEALS", "CLEARANCE",
)  # fmt: skip
UNCHANGED = 1.0
SET = (
    "quality.enabled=true", "exact_dedup.enabled=false", "near_dedup.enabled=false", "semantic_dedup.enabled=false",
    "faces.enabled=false", "safety.image_check=false", "safety.text_check=false", "audit.enabled=false",
    "documents.enabled=false", "eval_set.enabled=false", "text.required=false", "caption.required=false",
)  # fmt: skip


def degrade(image: Image.Image, kind: str, rng: random.Random) -> Image.Image:
    """One degradation of an RGB image."""
    if kind == "blur":
        return image.filter(ImageFilter.GaussianBlur(0.01 * max(image.size)))
    if kind == "bright":
        return ImageEnhance.Brightness(image).enhance(2.5)
    if kind == "dark":
        return ImageEnhance.Brightness(image).enhance(0.2)
    if kind == "flat":
        return ImageEnhance.Contrast(image).enhance(0.15)
    return banner(image, rng)


def banner(image: Image.Image, rng: random.Random, share: float = 0.4, lines: int = 2) -> Image.Image:
    """A promotional band over ``share`` of the frame, filled with ``lines`` lines of bold capitals."""
    width, height = image.size
    band = round(height * share)
    top = rng.randint(0, height - band)
    fill = rng.choice([(200, 20, 30), (20, 20, 20), (250, 250, 250), (30, 60, 160), (240, 200, 0)])
    ink = (255, 255, 255) if sum(fill) < 400 else (10, 10, 10)
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    draw.rectangle((0, top, width, top + band), fill=fill + (235,))
    size = max(8, round(band / lines * 0.62))
    font = ImageFont.load_default(size=size)
    shortest = min(draw.textlength(word, font=font) for word in WORDS)
    if shortest > 0.9 * width:
        size = max(8, int(size * 0.9 * width / shortest))
        font = ImageFont.load_default(size=size)
    fitting = [word for word in WORDS if draw.textlength(word, font=font) <= 0.9 * width]
    stroke, pitch = max(1, size // 18), band / lines
    for index in range(lines):
        words = [rng.choice(fitting)]
        for _ in range(12):
            longer = words + [rng.choice(fitting)]
            if draw.textlength(" ".join(longer), font=font) > 0.9 * width:
                break
            words = longer
        text = " ".join(words)
        left, upper, right, lower = draw.textbbox((0, 0), text, font=font, stroke_width=stroke)
        x = (width - (right - left)) / 2 - left
        y = top + pitch * index + (pitch - (lower - upper)) / 2 - upper
        draw.text((x, y), text, font=font, fill=ink + (255,), stroke_width=stroke, stroke_fill=ink + (255,))
    return Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB")


def _photo(name: str) -> Image.Image:
    import skimage.data

    array = getattr(skimage.data, name)()
    return Image.fromarray(array[0] if isinstance(array, tuple) else array).convert("RGB")


def candidates(per_domain: int, rng: random.Random) -> list[dict]:
    """The chosen originals: ``per_domain`` factory images and ``per_domain`` marketing images and photos."""
    with open(CORPORA / "factory" / "labels.csv", newline="", encoding="utf-8") as handle:
        labels = list(csv.DictReader(handle))
    factory = [
        {"domain": "factory", "source": row["path"].split("/", 1)[0], "path": str(CORPORA / "factory" / row["path"]),
         "title": row["label"].replace("_", " ")}
        for row in rng.sample(labels, min(per_domain, len(labels)))
    ]  # fmt: skip
    files = sorted(p for p in (CORPORA / "marketing").rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    photos = [{"domain": "marketing", "source": "skimage", "path": name, "title": name} for name in PHOTOS]
    marketing = photos + [
        {"domain": "marketing", "source": path.relative_to(CORPORA / "marketing").parts[0], "path": str(path),
         "title": path.stem.replace("-", " ")}
        for path in rng.sample(files, max(0, min(per_domain - len(photos), len(files))))
    ]  # fmt: skip
    return factory + marketing


def build(folder: Path, per_domain: int, seed: int) -> list[dict]:
    """Write the degraded copies and the manifest; return one row per input (with its ground truth)."""
    from transforms.quality_measures import analysis_pixels

    rng = random.Random(seed)
    everything = candidates(per_domain, rng)
    rows = []
    for domain in ("factory", "marketing"):
        chosen = [item for item in everything if item["domain"] == domain]
        rng.shuffle(chosen)
        degraded = len(chosen) // 4
        for index, item in enumerate(chosen):
            kind = KINDS[index % len(KINDS)] if index < degraded else "clean"
            row = {**item, "kind": kind, "camera": item["source"] if domain == "factory" else ""}
            if kind != "clean" or item["source"] == "skimage":
                original = _photo(item["path"]) if item["source"] == "skimage" else Image.open(item["path"])
                original = original.convert("RGB")
                image = original if kind == "clean" else degrade(original, kind, random.Random(f"{seed}-{index}"))
                path = folder / "images" / f"{domain}-{index:04d}-{kind}.{'png' if kind == 'clean' else 'jpg'}"
                path.parent.mkdir(parents=True, exist_ok=True)
                image.save(path, **({} if kind == "clean" else {"quality": 90}))
                if kind != "clean":
                    before = analysis_pixels(_jpeg(original), 256).astype(np.int16)
                    after = analysis_pixels(path.read_bytes(), 256).astype(np.int16)
                    row["changed"] = float(np.mean(np.abs(after - before).max(axis=2)))
                row["path"] = str(path)
            rows.append(row)
    with open(folder / "manifest.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "domain", "camera", "title"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return rows


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def run_unishard(folder: Path, report_only: bool) -> Path:
    """Run the real CLI on the manifest; return the output folder."""
    config = folder / "bench.toml"
    roots = json.dumps([str(CORPORA), str(folder)])
    config.write_text(f'[[ingest.inputs]]\npath = "manifest.csv"\nkind = "manifest"\nroots = {roots}\n')
    output = folder / "out"
    sets = [*SET, *(["quality.report_only=true"] if report_only else [])]
    command = [sys.executable, "-m", "pipeline", "run", str(config), "--output", str(output), "--smoke-models"]
    command += ["--no-report", "--no-progress", *(arg for item in sets for arg in ("--set", item))]
    started = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    print(json.dumps({"unishard_run_s": round(time.perf_counter() - started, 1)}), file=sys.stderr)
    return output


def outcomes(output: Path, manifest: Path) -> tuple[dict[int, dict], dict[int, dict]]:
    """Quality ledger rows and kept samples' quality scores and flags, by manifest row number (1-based)."""
    rows = {}
    for row in pq.read_table(output / "ledger").to_pylist():
        number = int(row["source"].rsplit("#", 1)[1])
        rows[number] = row
    measures = {}
    for path in sorted((output / "shards").rglob("*.tar")):
        with tarfile.open(path) as tar:
            for member in tar:
                if member.name.endswith(".json"):
                    record = json.loads(tar.extractfile(member).read())
                    number = int(record["source"].rsplit("#", 1)[1])
                    scores = {k: v for k, v in record["scores"].items() if k.startswith("quality_")}
                    measures[number] = {**scores, "flags": record["annotations"].get("quality", {}).get("flags", [])}
    return rows, measures


def figures(truth: list[dict], ledger: dict[int, dict], measures: dict[int, dict], report_only: bool) -> dict:
    """Detection per kind (overall, per domain, per source) and false rejections of clean images per domain."""

    def caught(number: int) -> str | None:
        if report_only:
            flags = measures.get(number, {}).get("flags", [])
            return flags[0] if flags else None
        row = ledger.get(number, {})
        return row.get("reason") if row.get("stage") == "quality" and row.get("status") == "rejected" else None

    result: dict = {"detection": {}, "false_rejection": {}, "not_degraded": [], "reasons": {}}
    by_kind = defaultdict(list)
    for number, item in enumerate(truth, start=1):
        if item["kind"] != "clean" and item.get("changed", 1.0) < UNCHANGED:
            result["not_degraded"].append(
                f"{item['kind']} {item['source']} (mean change {item['changed']:.2f} levels)"
            )
            continue
        by_kind[item["kind"]].append((item, caught(number)))
    for kind in KINDS:
        pairs = by_kind[kind]
        entry = {"rate": _rate(pairs), "n": len(pairs)}
        for field in ("domain", "source"):
            for value in sorted({item[field] for item, _ in pairs}):
                group = [pair for pair in pairs if pair[0][field] == value]
                entry[value] = f"{sum(r is not None for _, r in group)}/{len(group)}"
        entry["reasons"] = dict(Counter(r for _, r in pairs if r))
        result["detection"][kind] = entry
    degraded = [pair for kind in KINDS for pair in by_kind[kind]]
    result["detection"]["all"] = {"rate": _rate(degraded), "n": len(degraded)}
    clean = by_kind["clean"]
    for domain in ("factory", "marketing"):
        group = [pair for pair in clean if pair[0]["domain"] == domain]
        wrong = Counter((item["source"], reason) for item, reason in group if reason)
        result["false_rejection"][domain] = {
            "rate": _rate(group),
            "n": len(group),
            "by_source_reason": {f"{s}:{r}": n for (s, r), n in sorted(wrong.items())},
        }
    return result


def _rate(pairs: list) -> float:
    return round(sum(reason is not None for _, reason in pairs) / len(pairs), 4) if pairs else float("nan")


def write_measures(path: Path, truth: list[dict], measures: dict[int, dict]) -> None:
    names = sorted({name for scores in measures.values() for name in scores if name != "flags"})
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "domain", "source", "kind", "changed", *names, "flags"])
        for number, item in enumerate(truth, start=1):
            scores = measures.get(number, {})
            values = [scores.get(name, "") for name in names]
            flags = " ".join(scores.get("flags", []))
            writer.writerow(
                [number, item["domain"], item["source"], item["kind"], item.get("changed", ""), *values, flags]
            )


def cost(count: int, rounds: int, seed: int) -> dict:
    """Median over rounds of (quality CPU) / (normalise + hashing CPU) per image, on ~1 MP JPEGs."""
    import cv2

    from schemas.config.near_dedup import NearDedupConfig
    from schemas.config.normalise import NormaliseConfig
    from schemas.config.quality import QualityConfig
    from transforms.hashing import perceptual_hashes
    from transforms.normalise import content_key, encode, normalise_image
    from transforms.quality_measures import analysis_copy, analysis_pixels, measure

    cv2.setNumThreads(1)
    rng = random.Random(seed)
    products = sorted((CORPORA / "marketing" / "products").rglob("*.jpg"))
    sources = [_photo(name) for name in PHOTOS[: count // 2]]
    sources += [Image.open(path).convert("RGB") for path in rng.sample(products, count - len(sources))]
    inputs = []
    for image in sources:
        buffer = io.BytesIO()
        image.resize((1224, 816), Image.Resampling.LANCZOS).save(buffer, format="JPEG", quality=90)
        inputs.append(buffer.getvalue())
    normalise, hashes, side = NormaliseConfig(), NearDedupConfig().hash_names(), QualityConfig().side

    def normalise_work(data: bytes) -> tuple[Image.Image, bytes]:
        content_key(data)
        image, _, _ = normalise_image(data, normalise)
        encoded = encode(image, normalise)
        hashlib.sha256(f"{image.width}x{image.height}:".encode() + image.tobytes()).hexdigest()
        perceptual_hashes(image, hashes)
        return image, encoded

    parts = ("normalise", "quality", "quality_from_bytes")
    ratios, spent = defaultdict(list), dict.fromkeys(parts, 0.0)
    for _ in range(rounds):
        totals = dict.fromkeys(parts, 0.0)
        for data in inputs:
            started = time.process_time()
            image, encoded = normalise_work(data)
            normalised = time.process_time()
            measure(analysis_copy(image, side))
            measured = time.process_time()
            measure(analysis_pixels(encoded, side))
            totals["normalise"] += normalised - started
            totals["quality"] += measured - normalised
            totals["quality_from_bytes"] += time.process_time() - measured
        for name in parts[1:]:
            ratios[name].append(totals[name] / totals["normalise"])
        for name in parts:
            spent[name] += totals[name]
    images = count * rounds
    result = {"images": count, "rounds": rounds}
    for name in parts[1:]:
        result[f"{name}_to_normalise_cpu"] = round(statistics.median(ratios[name]), 4)
        result[f"{name}_round_ratios"] = [round(r, 4) for r in ratios[name]]
    result.update({f"{name}_ms_per_image": round(spent[name] / images * 1000, 2) for name in parts})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-domain", type=int, default=200, help="images per domain (a quarter degraded)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cost-images", type=int, default=24, help="~1 MP photos timed per round (0: skip)")
    parser.add_argument("--cost-rounds", type=int, default=5)
    parser.add_argument("--measures", type=Path, help="run with quality.report_only and write every measure here")
    parser.add_argument("--keep", type=Path, help="build the corpus and run here instead of a temporary folder")
    args = parser.parse_args()

    results = {}
    if args.cost_images:
        results["cost"] = cost(args.cost_images, args.cost_rounds, args.seed)
        print(json.dumps({"cost": results["cost"]}), flush=True)
    if args.per_domain:
        with tempfile.TemporaryDirectory(prefix="unishard-quality-") as tmp:
            folder = args.keep or Path(tmp)
            folder.mkdir(parents=True, exist_ok=True)
            truth = build(folder, args.per_domain, args.seed)
            output = run_unishard(folder, report_only=args.measures is not None)
            ledger, measures = outcomes(output, folder / "manifest.csv")
            if args.measures:
                write_measures(args.measures, truth, measures)
            results["quality"] = figures(truth, ledger, measures, report_only=args.measures is not None)
            print(json.dumps({"quality": results["quality"]}, indent=1), flush=True)


if __name__ == "__main__":
    main()
