"""Measure the per-image costs that size a large run (``docs/scaling.md`` is derived from this script's output).

On N generated ~1 MP JPEGs (or photos derived from ``--corpus DIR``) it reports, as JSON lines:

* ``stage_cpu``: CPU seconds per image of each per-item stage run in this process (read, normalise, text,
  fingerprint), against the yardstick of a plain PIL decode (draft mode), resize, re-encode of the same files
  measured in the same run;
* ``shuffle``: bytes and elements entering every GroupByKey of the real pipeline (Beam's sampled PCollection byte
  sizes from an in-process FnApiRunner run), per input image;
* ``output``: bytes per kept sample of shards, Parquet sidecars and ledger;
* ``end_to_end``: wall seconds, images/s and peak resident memory of ``unishard run --profile direct-multiprocess``;
* ``model``: the CLIP ViT-B-32 image and text towers (random weights: same compute, nothing downloaded) in CPU
  seconds per image and per caption with one torch thread, FLOPs per image, and weight bytes.

    python benchmarks/bench_scaling.py --images 200 --workers 2
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._measure import run_measured  # noqa: E402
from benchmarks.bench_ingest import _plain_one, make_inputs  # noqa: E402


def emit(kind: str, **values) -> None:
    print(json.dumps({"measure": kind, **values}), flush=True)


def stage_cpu(inputs: Path) -> None:
    """CPU seconds per image of each per-item stage, one process, against a plain PIL yardstick."""
    from schemas.config import UnishardConfig
    from schemas.records import InputItem, fingerprint
    from transforms.ingest import _ReadFn
    from transforms.normalise import _NormaliseFn
    from transforms.text import _ChooseTextFn

    config = UnishardConfig.model_validate({"text": {"fields": ["title"]}})
    read, text = _ReadFn(config.ingest), _ChooseTextFn(config.text)
    normalise = _NormaliseFn(config.normalise, config.near_dedup.hash_names())
    normalise.setup()
    paths = sorted(inputs.glob("*.jpg"))
    spent = dict.fromkeys(("read", "normalise", "text", "fingerprint", "yardstick_plain_pil"), 0.0)
    input_bytes = 0
    for path in paths:
        item = InputItem(str(path), str(path), "unknown", sidecar=str(path.with_suffix("")))
        clock = time.process_time()
        (item,) = read.apply(item)
        spent["read"] += time.process_time() - clock
        input_bytes += len(item.data)
        clock = time.process_time()
        (sample,) = normalise.apply(item)
        spent["normalise"] += time.process_time() - clock
        clock = time.process_time()
        (sample,) = text.apply(sample)
        spent["text"] += time.process_time() - clock
        clock = time.process_time()
        fingerprint(sample)
        spent["fingerprint"] += time.process_time() - clock
        clock = time.process_time()
        _plain_one(str(path))
        spent["yardstick_plain_pil"] += time.process_time() - clock
    per_image = {name: round(seconds / len(paths), 5) for name, seconds in spent.items()}
    ours = per_image["read"] + per_image["normalise"] + per_image["text"] + per_image["fingerprint"]
    emit(
        "stage_cpu",
        images=len(paths),
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
    from schemas.config import UnishardConfig

    images = len(list(inputs.glob("*.jpg")))
    output = work / "shuffle-out"
    config = UnishardConfig.model_validate(
        {
            "ingest": {"inputs": [{"path": str(inputs)}]},
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
    components = pipeline.to_runner_api().components
    total = 0.0
    for transform in sorted(components.transforms.values(), key=lambda t: t.unique_name):
        if transform.spec.urn != common_urns.primitives.GROUP_BY_KEY.urn:
            continue
        (pcoll,) = transform.inputs.values()
        elements = counts.get(pcoll, 0)
        volume = elements * (sizes.get(pcoll) or 0)
        total += volume
        emit(
            "shuffle",
            step=transform.unique_name,
            elements=elements,
            bytes_per_element=round(sizes.get(pcoll) or 0),
            bytes_per_input_image=round(volume / images),
        )
    emit("shuffle_total", images=images, bytes_per_input_image=round(total / images), in_process_wall_s=round(wall, 2))
    tars = list(output.rglob("*.tar"))
    kept = sum(pq.read_metadata(path.with_suffix(".parquet")).num_rows for path in tars)
    ledger = list((output / "ledger").glob("*.parquet"))
    emit(
        "output",
        kept=kept,
        shard_bytes_per_sample=round(sum(p.stat().st_size for p in tars) / kept),
        sidecar_bytes_per_sample=round(sum(p.with_suffix(".parquet").stat().st_size for p in tars) / kept),
        ledger_bytes_per_row=round(sum(p.stat().st_size for p in ledger) / images),
    )


def end_to_end(inputs: Path, work: Path, workers: int) -> None:
    command = [sys.executable, "-m", "pipeline", "run", "--input", f"files:{inputs}", "--output", str(work / "e2e")]
    command += [
        "--set",
        "text.fields=['title']",
        "--set",
        "clip.smoke=true",
        "--profile",
        "direct-multiprocess",
        f"--direct_num_workers={workers}",
    ]
    seconds, peak, _ = run_measured(command, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    images = len(list(inputs.glob("*.jpg")))
    emit(
        "end_to_end",
        images=images,
        workers=workers,
        wall_s=round(seconds, 2),
        images_per_s=round(images / seconds, 2),
        peak_rss_mb=round(peak / 2**20),
    )


def model(batches: int) -> None:
    """CLIP ViT-B-32 towers with random weights: CPU seconds per image and per caption on one thread."""
    import open_clip
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_num_threads(1)
    torch.manual_seed(0)
    clip = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    images = torch.rand(16, 3, 224, 224)
    texts = tokenizer([f"a photo of product number {i} on a white background" for i in range(64)])
    with torch.inference_mode():
        clip.encode_image(images[:2])
        with FlopCounterMode(display=False) as flops:
            clip.encode_image(images[:1])
        image_flops = flops.get_total_flops()
        clock = time.process_time()
        for _ in range(batches):
            clip.encode_image(images)
        per_image = (time.process_time() - clock) / (16 * batches)
        clock = time.process_time()
        clip.encode_text(texts)
        per_caption = (time.process_time() - clock) / 64
    weights = sum(p.numel() * p.element_size() for p in clip.parameters())
    emit(
        "model",
        model="ViT-B-32 (random weights)",
        batch=16,
        torch_threads=1,
        cpu_s_per_image=round(per_image, 4),
        cpu_s_per_caption=round(per_caption, 4),
        gflops_per_image=round(image_flops / 1e9, 2),
        weight_mb_fp32=round(weights / 2**20),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--corpus", type=Path, help="a folder of real photos to derive the inputs from")
    parser.add_argument("--model-batches", type=int, default=4, help="batches of 16 for the model timing; 0 skips")
    args = parser.parse_args()
    emit("machine", cpus=os.cpu_count(), load_average_1m=round(os.getloadavg()[0], 2))
    with tempfile.TemporaryDirectory(prefix="unishard-scaling-") as tmp:
        work = Path(tmp)
        inputs = work / "inputs"
        make_inputs(inputs, args.images, args.corpus)
        stage_cpu(inputs)
        shuffle_and_output(inputs, work)
        end_to_end(inputs, work, args.workers)
    if args.model_batches:
        model(args.model_batches)


if __name__ == "__main__":
    main()
