"""The command a user runs against a plain script: whole-pipeline throughput and memory, as ratios.

Times ``unishard run`` (the whole default pipeline: every stage, the report, ``--smoke-models``, 2 worker
processes, ``--set normalise.max_side=512``) and, alternating with it in the same run, the plain multiprocessing
yardstick ``../shared/bench/plain_shards.py`` (read, hash, draft-decode, orient, resize, pHash, encode, tar) on the
same files with the same worker count. Reports, as JSON lines, each pair's images/s ratio
(unishard / yardstick), their median, and the peak resident memory of unishard's whole process tree. Each pair
also gives the CPU seconds (user + system) of each command's whole process tree and their ratio, which a machine
shared with other work changes less than the wall-clock ratio.

Inputs: N photos taken from ``--corpus`` folders (real images; when N exceeds what the folders hold, mirrored and
rotated copies are added, which the default duplicate tests do not merge; with ``near_dedup.subwindow_max_distance``
set, keypoints match the rotated ones), or with ``--distinct`` the generated ~1 MP photos of
``../shared/bench/make_distinct.py``.

    python benchmarks/bench_pipeline.py --images 3000 --pairs 3 \
        --corpus ../shared/corpora/factory --corpus ../shared/corpora/marketing
    python benchmarks/bench_pipeline.py --distinct --images 2000 --pairs 1 --memory-only
    python benchmarks/bench_pipeline.py --ready /tmp/distinct --images 20000 --pairs 1 --memory-only --workers 0
    python benchmarks/bench_pipeline.py --repo /tmp/old-main ...     # the same measurement of an older checkout
    python benchmarks/bench_pipeline.py --vit --images 600 --pairs 2 --corpus ../shared/corpora/marketing

With ``--vit`` the model path is measured instead: unishard runs a real-size ViT-B-32 (random weights saved with
open_clip, passed as ``--set clip.checkpoint=PATH``; semantic dedup and the zero-shot image safety check are off,
since random weights make every photo a semantic duplicate and most of them unsafe), and the yardstick is
``benchmarks/plain_clip.py``: the same per-image work in a plain multiprocessing loop with the same model, worker
count, torch threads and batch size (``embed.batch_size``), including the image encode and the text encodes of the
caption candidates unishard encoded (read from its output). The copies then carry their corpus rows' titles,
descriptions or labels as sidecars (``--text``), so unishard keeps them and has captions to encode; a run that keeps
no image stops the benchmark instead of timing rejections.
"""

import argparse
import csv
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._measure import run_measured  # noqa: E402

SHARED = ROOT.parent / "shared"
YARDSTICK = SHARED / "bench" / "plain_shards.py"
PLAIN_CLIP = ROOT / "benchmarks" / "plain_clip.py"
EMBED_BATCH = 16  # embed.batch_size's default; --vit passes it to both sides
VIT_SET = ("semantic_dedup.enabled=false", "safety.image_check=false", f"embed.batch_size={EMBED_BATCH}")
SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
TEXT_FIELDS = ("title", "description", "label")
VARIANTS = (None, Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_270)


def emit(kind: str, **values) -> None:
    print(json.dumps({"kind": kind, **values}), flush=True)


def corpus_text(corpora: list[Path]) -> dict[Path, dict[str, str]]:
    """The text fields (``TEXT_FIELDS``) of each corpus image that a CSV file at a corpus's top has a row for (a
    ``path`` column relative to the corpus: ``marketing/metadata.csv``, ``factory/labels.csv``)."""
    found = {}
    for corpus in corpora:
        for table in sorted(corpus.glob("*.csv")):
            with table.open(newline="", encoding="utf-8") as handle:
                for row in csv.DictReader(handle):
                    fields = {name: row[name] for name in TEXT_FIELDS if row.get(name)}
                    if row.get("path") and fields:
                        found[(corpus / row["path"]).resolve()] = fields
    return found


def make_inputs(
    folder: Path, count: int, corpora: list[Path], distinct: bool, ready: Path | None = None, text: bool = False
) -> list[Path]:
    folder.mkdir(parents=True)
    if ready is not None:
        found = sorted(p for p in ready.iterdir() if p.suffix.lower() in SUFFIXES)[:count]
        if len(found) < count:
            raise SystemExit(f"--ready {ready} holds {len(found)} images, fewer than --images {count}")
        for path in found:
            os.link(path, folder / path.name)  # hard links: the same files, no copies, no symbolic links to refuse
        return sorted(folder.iterdir())
    if distinct:
        subprocess.run(
            [sys.executable, str(SHARED / "bench" / "make_distinct.py"), str(folder), str(count)], check=True
        )
        return sorted(folder.glob("*.jpg"))
    found = sorted(p for corpus in corpora for p in corpus.rglob("*") if p.suffix.lower() in SUFFIXES)
    if not found:
        raise SystemExit("no images under --corpus; give a folder of photos or use --distinct")
    texts, paths = corpus_text(corpora) if text else {}, []
    for index in range(count):
        variant, source = VARIANTS[(index // len(found)) % len(VARIANTS)], found[index % len(found)]
        with Image.open(source) as image:
            image = ImageOps.exif_transpose(image).convert("RGB")
            if variant is not None:
                image = image.transpose(variant)
            path = folder / f"photo{index:06d}.jpg"
            image.save(path, quality=95)
        if source.resolve() in texts:
            path.with_suffix(".json").write_text(json.dumps(texts[source.resolve()]), encoding="utf-8")
        paths.append(path)
    return paths


def children_cpu() -> float:
    """CPU seconds (user + system) of every finished child process of this one, and their children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_yardstick(paths: list[Path], work: Path, workers: int) -> tuple[float, float]:
    listing = work / "files.txt"
    listing.write_text("\n".join(str(p) for p in paths) + "\n")
    out = work / "plain-out"
    started, cpu = time.perf_counter(), children_cpu()
    subprocess.run(
        [sys.executable, str(YARDSTICK), str(out), str(workers), f"@{listing}"], check=True, capture_output=True
    )
    seconds, cpu = time.perf_counter() - started, children_cpu() - cpu
    subprocess.run(["rm", "-rf", str(out)], check=True)
    return seconds, cpu


def run_plain_clip(paths: list[Path], work: Path, workers: int, weights: str, texts: Path) -> tuple[float, float]:
    listing = work / "files.txt"
    listing.write_text("\n".join(str(p) for p in paths) + "\n")
    out = work / "plain-out"
    batch = str(EMBED_BATCH)
    started, cpu = time.perf_counter(), children_cpu()
    command = [sys.executable, str(PLAIN_CLIP), str(out), str(workers), batch, weights, str(texts), f"@{listing}"]
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    seconds, cpu = time.perf_counter() - started, children_cpu() - cpu
    subprocess.run(["rm", "-rf", str(out)], check=True)
    return seconds, cpu


def caption_texts(output: Path) -> dict[str, list[str]]:
    """The caption candidates unishard encoded, by input file name, from the pairs view's Parquet sidecars."""
    import pyarrow.parquet as pq

    texts = {}
    for part in sorted((output / "shards" / "pairs").rglob("*.parquet")):
        for row in pq.read_table(part, columns=["source", "annotations"]).to_pylist():
            candidates = json.loads(row["annotations"] or "{}").get("caption", {}).get("candidates", [])
            texts[Path(row["source"]).name] = [candidate["text"] for candidate in candidates]
    return texts


def run_unishard(
    inputs: Path, work: Path, workers: int, extra: list[str], smoke: bool = True, texts: Path | None = None
) -> tuple[float, float, int, str]:
    """``unishard run`` with ``workers`` worker processes (0: the default profile, one per core from 500 inputs);
    with ``texts``, the caption candidates it encoded are written there as JSON."""
    out = work / "unishard-out"
    command = [sys.executable, "-m", "pipeline", "run", "--input", str(inputs), "--output", str(out)]
    command += [*(["--smoke-models"] if smoke else []), "--set", "normalise.max_side=512", "--no-progress", *extra]
    if workers:
        command += ["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]
    cpu = children_cpu()
    seconds, peak, output = run_measured(command, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    cpu = children_cpu() - cpu
    if "items:" not in output and "kept" not in output:
        print(output[-4000:], file=sys.stderr)
        raise SystemExit("unishard run failed (its output is above)")
    if texts is not None:
        texts.write_text(json.dumps(caption_texts(out)), encoding="utf-8")
    subprocess.run(["rm", "-rf", str(out)], check=True)
    summary = [line for line in output.splitlines() if line.startswith("unishard:") and " items:" in line]
    if summary and re.search(r" items: 0 kept,", summary[-1]):
        print(output[-4000:], file=sys.stderr)
        raise SystemExit(
            f"unishard kept none of the images ({summary[-1]}): the ratio would time rejections, not the pipeline. "
            "Give the photos text (--text, from the corpus's CSV) or pass --set text.required=false --set "
            "caption.required=false"
        )
    return seconds, cpu, peak, summary[-1] if summary else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="worker processes; 0 passes no Beam flags (the default: one process per core from 500 inputs)",
    )
    parser.add_argument("--corpus", type=Path, action="append", default=[])
    parser.add_argument("--distinct", action="store_true", help="generated ~1 MP photos instead of --corpus")
    parser.add_argument(
        "--ready", type=Path, help="take the first --images photos of this folder (same filesystem as the temp dir)"
    )
    parser.add_argument("--memory-only", action="store_true", help="skip the yardstick; report unishard's peak")
    parser.add_argument("--vit", action="store_true", help="a random real-size ViT-B-32 against plain_clip.py")
    parser.add_argument(
        "--text",
        action="store_true",
        help="give each copy a sidecar with its corpus row's title, description or label (from the CSV files at "
        "the corpus's top); always on with --vit, whose loop encodes the caption candidates unishard encoded",
    )
    parser.add_argument("--set", action="append", default=[], help="extra --set for unishard (repeatable)")
    parser.add_argument(
        "--repo", type=Path, default=ROOT, help="run unishard from this checkout (e.g. a worktree of an older commit)"
    )
    args = parser.parse_args()
    os.chdir(args.repo)
    extra = [flag for value in args.set for flag in ("--set", value)]
    emit("machine", cpus=os.cpu_count(), load_average_1m=round(os.getloadavg()[0], 2))
    with tempfile.TemporaryDirectory(prefix="unishard-bench-") as tmp:
        work = Path(tmp)
        paths = make_inputs(
            work / "inputs", args.images, args.corpus, args.distinct, args.ready, args.text or args.vit
        )
        if args.vit:
            from benchmarks.bench_model_stage import random_vit_b_32

            weights = random_vit_b_32(work)
            extra += [flag for value in (*VIT_SET, f"clip.checkpoint={weights}") for flag in ("--set", value)]
        ratios, peaks = [], []
        for index in range(args.pairs):
            if args.vit:  # unishard first: the yardstick encodes the caption candidates unishard encoded
                texts = work / "texts.json"
                seconds, cpu, peak, summary = run_unishard(work / "inputs", work, args.workers, extra, False, texts)
                plain, plain_cpu = run_plain_clip(paths, work, args.workers or 1, weights, texts)
            else:
                plain, plain_cpu = (None, None) if args.memory_only else run_yardstick(paths, work, args.workers or 1)
                seconds, cpu, peak, summary = run_unishard(work / "inputs", work, args.workers, extra)
            peaks.append(peak)
            ratio = None if plain is None else round(plain / seconds, 3)
            if ratio is not None:
                ratios.append(ratio)
            emit(
                "pair",
                index=index,
                images=len(paths),
                yardstick_s=None if plain is None else round(plain, 2),
                unishard_s=round(seconds, 2),
                ratio=ratio,
                yardstick_cpu_s=None if plain_cpu is None else round(plain_cpu, 1),
                unishard_cpu_s=round(cpu, 1),
                cpu_ratio=None if plain_cpu is None else round(plain_cpu / cpu, 3),
                peak_rss_mb=round(peak / 2**20),
                load_average_1m=round(os.getloadavg()[0], 2),
                summary=summary,
            )
        emit(
            "result",
            images=len(paths),
            workers=args.workers,
            yardstick="plain_clip.py (ViT-B-32)" if args.vit else "plain_shards.py",
            median_ratio=statistics.median(ratios) if ratios else None,
            peak_rss_mb=round(max(peaks) / 2**20),
        )


if __name__ == "__main__":
    main()
