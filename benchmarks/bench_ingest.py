"""Benchmark the non-model path of ``unishard run`` against a plain multiprocessing script doing the same work.

The non-model path is unishard's own stages from ingest to the ledger (ingest, normalise, text, exact dedup, the
duplicate join, shard writing, ledger) assembled as in ``pipeline/assemble.py`` and run by Beam with the same options
``unishard run`` passes; the model, audit, document and split stages are left out. Both sides get the same ~1 MP
JPEGs (generated, or ``--corpus DIR`` for real photos) and the same worker count.
Per image both read the file, hash it, decode with JPEG draft mode, apply EXIF orientation, resize, re-encode and
write it into tar shards. Reported: images/s of each and their ratio (target >= 0.8), and unishard's peak resident
memory (whole process tree) at N and 10 N images (target growth < 1.3x).

    python benchmarks/bench_ingest.py --images 200 --workers 2
"""

import argparse
import hashlib
import io
import json
import multiprocessing
import os
import random
import sys
import tarfile
import tempfile
from pathlib import Path

from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._measure import run_measured  # noqa: E402

MAX_SIDE = 512


def make_inputs(folder: Path, count: int, corpus: Path | None) -> None:
    """Write ``count`` distinct ~1 MP JPEGs with a sidecar title each."""
    from tests.helpers import make_photo

    folder.mkdir(parents=True, exist_ok=True)
    bases = []
    if corpus:
        paths = sorted(p for p in corpus.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        bases = [Image.open(p).convert("RGB").resize((1200, 900)) for p in paths[:40]]
    bases = bases or [make_photo(1200, 900, seed=seed) for seed in range(16)]
    rng = random.Random(0)
    for index in range(count):
        base = bases[index % len(bases)]
        dx, dy = rng.randint(0, 40), rng.randint(0, 40)
        image = base.crop((dx, dy, dx + 1152, dy + 864))
        if index // len(bases) % 2:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        path = folder / f"img{index:06d}.jpg"
        image.save(path, quality=90)
        path.with_suffix(".json").write_text(json.dumps({"title": f"benchmark image {index}"}))


def _plain_one(path: str) -> tuple[str, bytes]:
    data = Path(path).read_bytes()
    key = hashlib.sha256(data).hexdigest()[:32]
    image = Image.open(io.BytesIO(data))
    image.draft("RGB", (MAX_SIDE, MAX_SIDE))
    image = ImageOps.exif_transpose(image.convert("RGB"))
    image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return key, buffer.getvalue()


def plain(inputs: str, output: str, workers: int) -> None:
    """The yardstick: the same per-image work with a multiprocessing pool, written into tars of 1000."""
    paths = sorted(str(p) for p in Path(inputs).glob("*.jpg"))
    os.makedirs(output, exist_ok=True)
    with multiprocessing.Pool(workers) as pool:
        results = sorted(pool.imap_unordered(_plain_one, paths, chunksize=8))
    for start in range(0, len(results), 1000):
        with tarfile.open(Path(output) / f"shard-{start // 1000:06d}.tar", "w") as tar:
            for key, data in results[start : start + 1000]:
                info = tarfile.TarInfo(f"{key}.jpg")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def unishard(inputs: str, output: str, workers: int) -> None:
    """unishard's non-model stages on the DirectRunner with ``workers`` worker processes."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from schemas.config.unishard import UnishardConfig
    from schemas.records.dedup import fingerprint
    from transforms.apply_rejections import DropRejected
    from transforms.exact_dedup import DeduplicateExact
    from transforms.ingest import ReadInputs
    from transforms.ledger import WriteLedger
    from transforms.normalise import Normalise
    from transforms.text import ChooseText
    from transforms.write_shards import WriteShards

    config = UnishardConfig.model_validate(
        {
            "ingest": {"inputs": [{"path": inputs, "kind": "files"}]},
            "normalise": {"max_side": MAX_SIDE},
            "text": {"fields": ["title"]},
        }
    )
    options = PipelineOptions(
        ["--runner=DirectRunner", "--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]
    )
    with beam.Pipeline(options=options) as pipeline:
        ingested = pipeline | "Ingest" >> ReadInputs(config.ingest)
        normalised = ingested.items | "Normalise" >> Normalise(config.normalise, config.near_dedup.hash_names())
        texted = normalised.samples | "Text" >> ChooseText(config.text)
        exact = (
            texted.samples
            | "Fingerprint" >> beam.Map(fingerprint)
            | "ExactDedup" >> DeduplicateExact(config.exact_dedup)
        )
        unique = texted.samples | "DropDuplicates" >> DropRejected(exact.rejected)
        written = unique | "WriteShards" >> WriteShards(config.shards, output)
        ledger = (
            ingested.rejected,
            normalised.rejected,
            texted.rejected,
            exact.rejected,
            written.kept,
        ) | beam.Flatten()
        _ = ledger | "WriteLedger" >> WriteLedger(output, config.shards.ledger_rows_per_part)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200, help="N; memory is also measured at 10 N")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--corpus", type=Path, help="a folder of real photos to derive the inputs from")
    parser.add_argument("--skip-memory", action="store_true", help="skip the 10 N run")
    args = parser.parse_args()

    python = sys.executable
    results = {}
    with tempfile.TemporaryDirectory(prefix="unishard-bench-") as tmp:
        root = Path(tmp)
        sizes = [args.images] if args.skip_memory else [args.images, args.images * 10]
        for count in sizes:
            inputs = root / f"in{count}"
            make_inputs(inputs, count, args.corpus)
            plain_s, plain_rss, _ = run_measured(
                [python, __file__, "--plain", str(inputs), str(root / f"plain{count}"), str(args.workers)]
            )
            command = [python, __file__, "--unishard", str(inputs), str(root / f"out{count}"), str(args.workers)]
            ours_s, ours_rss, _ = run_measured(command, env={**os.environ, "HF_HUB_OFFLINE": "1"})
            results[count] = {
                "plain_images_per_s": round(count / plain_s, 2),
                "unishard_images_per_s": round(count / ours_s, 2),
                "speed_ratio": round(plain_s / ours_s, 3),
                "plain_peak_rss_mb": round(plain_rss / 2**20, 1),
                "unishard_peak_rss_mb": round(ours_rss / 2**20, 1),
            }
            print(json.dumps({"images": count, **results[count]}), flush=True)
    if len(sizes) == 2:
        growth = results[sizes[1]]["unishard_peak_rss_mb"] / results[sizes[0]]["unishard_peak_rss_mb"]
        print(json.dumps({"rss_growth_for_10x_images": round(growth, 3)}))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] in ("--plain", "--unishard"):
        (plain if sys.argv[1] == "--plain" else unishard)(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        main()
