"""Measure the per-image costs that size a large run (``docs/scaling.md`` is derived from this script's output).

Inputs are N images taken as they are from ``--corpus`` folders (spread evenly over them), or N distinct generated
~1 MP photos. It reports, as JSON lines:

* ``stage_cpu``: CPU seconds per image of the per-item stages run in this process (read, normalise, text,
  fingerprint), against the yardstick of a plain PIL read, draft decode, orient, resize and re-encode of the same
  files to the same size, measured in the same run;
* ``shuffle``: elements and bytes entering every GroupByKey of the real pipeline (Beam's sampled PCollection byte
  sizes from an in-process FnApiRunner run), per input image;
* ``output``: bytes per kept sample of shards and Parquet sidecars, and per input of the ledger;
* ``end_to_end``: ``unishard run --profile direct-multiprocess`` on 10 images (the fixed cost of imports, worker
  processes and models) and on all N: marginal CPU seconds per image (whole process tree), marginal images/s, peak
  resident memory. Model stages run the small random CLIP (``clip.smoke``) here;
* ``model``: the CLIP ViT-B-32 image and text towers (random weights: the same compute, nothing downloaded) in CPU
  seconds per image and per caption on one torch thread (or GPU wall seconds with ``--device cuda``), GFLOPs per
  image, and weight size.

    python benchmarks/bench_scaling.py --images 400 --workers 2 \
        --corpus ../shared/corpora/marketing --corpus ../shared/corpora/factory
    python benchmarks/bench_scaling.py --parts model --device cuda --model-batches 20    # on a GPU worker
"""

import argparse
import io
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._measure import run_measured  # noqa: E402

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
SMALL_RUN = 10


def make_inputs(folder: Path, count: int, corpora: list[Path]) -> None:
    """``count`` input images: files from the corpora as they are (spread evenly over them), or distinct ~1 MP
    synthetic photos (one seed each, so no two are near-duplicates) with a sidecar title."""
    folder.mkdir(parents=True)
    if corpora:
        per_corpus = -(-count // len(corpora))
        chosen = []
        for corpus in corpora:
            files = sorted(p for p in corpus.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            chosen += files[:: max(1, len(files) // per_corpus)][:per_corpus]
        for index, path in enumerate(chosen[:count]):
            (folder / f"img{index:06d}{path.suffix.lower()}").symlink_to(path.resolve())
            (folder / f"img{index:06d}.json").write_text(json.dumps({"title": f"{path.parent.name} {path.stem}"}))
        return
    from tests.helpers import make_photo

    for index in range(count):
        path = folder / f"img{index:06d}.jpg"
        make_photo(1152, 864, seed=index).save(path, quality=90)
        path.with_suffix(".json").write_text(json.dumps({"title": f"benchmark image {index}"}))


def plain_pil(path: str, max_side: int) -> bytes:
    """The yardstick: read, decode in draft mode, orient, resize, re-encode, with nothing else."""
    from PIL import Image, ImageOps

    with open(path, "rb") as handle:
        image = Image.open(io.BytesIO(handle.read()))
    image.draft("RGB", (max_side, max_side))
    image = ImageOps.exif_transpose(image.convert("RGB"))
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def image_paths(inputs: Path) -> list[Path]:
    return sorted(p for p in inputs.iterdir() if p.suffix in IMAGE_SUFFIXES)


def emit(kind: str, **values) -> None:
    print(json.dumps({"measure": kind, **values}), flush=True)


def stage_cpu(inputs: Path) -> None:
    """CPU seconds per image of each per-item stage, one process, against a plain PIL yardstick."""
    from schemas.config.unishard import UnishardConfig
    from schemas.records.dedup import fingerprint
    from schemas.records.inputs import InputItem
    from schemas.records.ledger import RejectItem
    from transforms._reading import read_bytes, read_sidecar
    from transforms.normalise import normalise_item
    from transforms.text import with_text

    config = UnishardConfig.model_validate({"text": {"fields": ["title"], "required": False}})
    hashes = config.near_dedup.hash_names()
    paths = image_paths(inputs)
    spent = dict.fromkeys(("read", "normalise", "text", "fingerprint", "yardstick_plain_pil"), 0.0)
    input_bytes = measured = 0
    for path in paths:
        clock = time.process_time()
        try:
            stem = str(path.with_suffix(""))
            # the sidecars a listing would find: read_sidecar reads the suffixes it is given, and a missing one is
            # the file's missing_file rejection
            found = tuple(suffix for suffix in config.ingest.sidecar_extensions if Path(stem + suffix).exists())
            metadata = read_sidecar(stem, found)
            data, _ = read_bytes(str(path))
        except RejectItem:
            continue
        item = InputItem(str(path), str(path), "unknown", metadata, data)
        spent["read"] += time.process_time() - clock
        input_bytes += len(item.data)
        clock = time.process_time()
        try:
            sample = normalise_item(item, config.normalise, hashes)
        except RejectItem:
            continue
        spent["normalise"] += time.process_time() - clock
        clock = time.process_time()
        sample = with_text(sample, config.text)
        spent["text"] += time.process_time() - clock
        clock = time.process_time()
        fingerprint(sample)
        spent["fingerprint"] += time.process_time() - clock
        clock = time.process_time()
        plain_pil(str(path), config.normalise.max_side)
        spent["yardstick_plain_pil"] += time.process_time() - clock
        measured += 1
    if not measured:
        raise SystemExit(f"stage_cpu: none of the {len(paths)} images could be read and normalised")
    per_image = {name: round(seconds / measured, 5) for name, seconds in spent.items()}
    ours = per_image["read"] + per_image["normalise"] + per_image["text"] + per_image["fingerprint"]
    emit(
        "stage_cpu",
        images=measured,
        max_side=config.normalise.max_side,
        cpu_s_per_image=per_image,
        per_item_stages_vs_yardstick=round(ours / per_image["yardstick_plain_pil"], 2),
        input_bytes_per_image=round(input_bytes / len(paths)),
    )


def shuffle_and_output(inputs: Path, work: Path) -> None:
    """Bytes entering every GroupByKey of the real pipeline, and output bytes per sample."""
    import apache_beam as beam
    import pyarrow.parquet as pq
    from apache_beam.metrics import monitoring_infos
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.portability import common_urns

    from pipeline.assemble import build
    from schemas.config.unishard import UnishardConfig

    images = len(image_paths(inputs))
    output = work / "shuffle-out"
    config = UnishardConfig.model_validate(
        {
            "ingest": {"inputs": [{"path": str(inputs)}], "follow_symlinks": True},  # inputs link to the corpora
            "text": {"fields": ["title"]},
            "run": {"output": str(output)},
            "clip": {"smoke": True},
        }
    )
    pipeline = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    build(pipeline, config, str(output))
    started = time.perf_counter()
    result = pipeline.run()
    result.wait_until_finish()
    wall = time.perf_counter() - started
    counts, sizes = {}, {}
    for info in result.monitoring_infos():
        pcoll = info.labels.get("PCOLLECTION")
        if info.urn == monitoring_infos.ELEMENT_COUNT_URN:
            counts[pcoll] = monitoring_infos.extract_metric_result_map_value(info)
        elif info.urn == monitoring_infos.SAMPLED_BYTE_SIZE_URN:
            sizes[pcoll] = monitoring_infos.extract_metric_result_map_value(info).mean
    tars = list(output.rglob("*.tar"))
    kept = sum(pq.read_metadata(path.with_suffix(".parquet")).num_rows for path in tars)
    components = pipeline.to_runner_api().components
    total = 0.0
    for transform in sorted(components.transforms.values(), key=lambda t: t.unique_name):
        if transform.spec.urn != common_urns.primitives.GROUP_BY_KEY.urn:
            continue
        (pcoll,) = transform.inputs.values()
        elements = counts.get(pcoll, 0)
        volume = elements * (sizes.get(pcoll) or 0)
        total += volume
        if elements:
            emit(
                "shuffle",
                step=transform.unique_name,
                elements=elements,
                bytes_per_element=round(sizes.get(pcoll) or 0),
                bytes_per_input_image=round(volume / images),
            )
    emit(
        "shuffle_total",
        images=images,
        kept=kept,
        bytes_per_input_image=round(total / images),
        in_process_wall_s=round(wall, 2),
    )
    ledger = list((output / "ledger").glob("*.parquet"))
    emit(
        "output",
        kept=kept,
        shard_bytes_per_sample=round(sum(p.stat().st_size for p in tars) / kept),
        sidecar_bytes_per_sample=round(sum(p.with_suffix(".parquet").stat().st_size for p in tars) / kept),
        ledger_bytes_per_row=round(sum(p.stat().st_size for p in ledger) / images),
    )


def _run_cli(inputs: Path, output: Path, workers: int) -> tuple[float, float, int]:
    command = [sys.executable, "-m", "pipeline", "run", "--input", f"files:{inputs}", "--output", str(output)]
    command += ["--set", "text.fields=['title']", "--set", "clip.smoke=true", "--no-progress", "--no-report"]
    command += ["--set", "ingest.follow_symlinks=true"]  # the inputs are links to the corpora and the full set
    command += ["--profile", "direct-multiprocess", f"--direct_num_workers={workers}"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds, peak, _ = run_measured(command, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), peak


def end_to_end(inputs: Path, work: Path, workers: int) -> None:
    """The CLI on a handful of images (the fixed cost: imports, workers, model) and on all; the difference is the
    marginal cost per image."""
    small = work / "inputs-small"
    small.mkdir()
    paths = image_paths(inputs)
    for path in paths[:SMALL_RUN]:
        (small / path.name).symlink_to(path.resolve())
        (small / path.with_suffix(".json").name).symlink_to(path.with_suffix(".json").resolve())
    small_s, small_cpu, small_peak = _run_cli(small, work / "e2e-small", workers)
    seconds, cpu, peak = _run_cli(inputs, work / "e2e", workers)
    extra = len(paths) - SMALL_RUN
    emit(
        "end_to_end",
        images=len(paths),
        workers=workers,
        wall_s=round(seconds, 2),
        cpu_s=round(cpu, 2),
        fixed_wall_s=round(small_s, 2),
        fixed_cpu_s=round(small_cpu, 2),
        marginal_cpu_s_per_image=round((cpu - small_cpu) / extra, 4),
        marginal_images_per_s=round(extra / max(1e-9, seconds - small_s), 2),
        peak_rss_mb=round(peak / 2**20),
        fixed_peak_rss_mb=round(small_peak / 2**20),
        marginal_peak_rss_kb_per_image=round((peak - small_peak) / extra / 1024),
    )


def model(batches: int, device: str) -> None:
    """CLIP ViT-B-32 towers with random weights: seconds per image and per caption, at batch 16.

    On CPU: CPU seconds on one torch thread (multiply by cores for a worker's throughput). On ``cuda``: wall seconds
    of one GPU, synchronised, at fp32 and bf16 autocast.
    """
    import open_clip
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    cpu = device == "cpu"
    if cpu:
        torch.set_num_threads(1)
    clip = open_clip.create_model("ViT-B-32", pretrained=None).eval().to(device)
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    batch = 16 if cpu else 256
    images = torch.rand(batch, 3, 224, 224, device=device)
    texts = tokenizer([f"a photo of product number {i} on a white background" for i in range(64)]).to(device)

    def clock() -> float:
        if not cpu:
            torch.cuda.synchronize()
        return time.process_time() if cpu else time.perf_counter()

    with torch.inference_mode():
        clip.encode_image(images[:2])
        with FlopCounterMode(display=False) as flops:
            clip.encode_image(images[:1])
        image_flops = flops.get_total_flops()
        with FlopCounterMode(display=False) as flops:
            clip.encode_text(texts[:1])
        text_flops = flops.get_total_flops()
        results = {}
        for precision in ["fp32"] if cpu else ["fp32", "bf16"]:
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
                clip.encode_image(images)
                started = clock()
                for _ in range(batches):
                    clip.encode_image(images)
                per_image = (clock() - started) / (batch * batches)
                started = clock()
                clip.encode_text(texts)
                per_caption = (clock() - started) / 64
            results[precision] = {"s_per_image": round(per_image, 6), "s_per_caption": round(per_caption, 6)}
    weights = sum(p.numel() * p.element_size() for p in clip.parameters())
    emit(
        "model",
        model="ViT-B-32 (random weights)",
        device=device if cpu else torch.cuda.get_device_name(),
        batch=batch,
        clock="CPU seconds, 1 torch thread" if cpu else "wall seconds, 1 GPU",
        results=results,
        gflops_per_image=round(image_flops / 1e9, 2),
        gflops_per_caption=round(text_flops / 1e9, 2),
        weight_mb_fp32=round(weights / 2**20),
        cpu_s_per_image_to_tensor=round(_preprocess_cost(open_clip, clip), 5),
    )


def _preprocess_cost(open_clip, clip, count: int = 32) -> float:
    """CPU seconds per image to turn a normalised 1024 px JPEG into the model's input tensor (decode, resize, crop,
    normalise): the work a GPU worker's CPUs do to feed the GPU."""
    from PIL import Image

    from tests.helpers import jpeg_bytes, make_photo

    preprocess = open_clip.image_transform(clip.visual.image_size, is_train=False)
    encoded = [jpeg_bytes(make_photo(1024, 768, seed=seed), quality=90) for seed in range(4)]
    started = time.process_time()
    for index in range(count):
        preprocess(Image.open(io.BytesIO(encoded[index % len(encoded)])).convert("RGB"))
    return (time.process_time() - started) / count


PARTS = ("stage_cpu", "shuffle", "end_to_end", "model")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument(
        "--corpus", type=Path, action="append", default=[], help="a folder of real images to use (repeatable)"
    )
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--model-batches", type=int, default=4, help="batches for the model timing")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda to time the model on a GPU worker")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    emit("machine", cpus=os.cpu_count(), load_average_1m=round(os.getloadavg()[0], 2))
    if parts - {"model"}:
        with tempfile.TemporaryDirectory(prefix="unishard-scaling-") as tmp:
            work = Path(tmp)
            inputs = work / "inputs"
            make_inputs(inputs, args.images, args.corpus)
            if "stage_cpu" in parts:
                stage_cpu(inputs)
            if "shuffle" in parts:
                shuffle_and_output(inputs, work)
            if "end_to_end" in parts:
                end_to_end(inputs, work, args.workers)
    if "model" in parts:
        model(args.model_batches, args.device)


if __name__ == "__main__":
    main()
