"""Helpers for tests: image generation, running a job, and reading everything a run wrote."""

import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from pipeline.launch import RunSummary, run
from schemas.config.unishard import UnishardConfig


def make_photo(width: int = 320, height: int = 240, seed: int = 0) -> Image.Image:
    """A random picture with structure (gradients plus blobs) and a camera's fine grain, distinct per seed, stable.

    The grain (grey, standard deviation 4 levels) is what makes it measure as in focus, as a photograph does: a
    perfectly smooth field has no detail at all and the quality stage calls it blurry.
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = []
    for _ in range(3):
        field = np.zeros((height, width), np.float32)
        for _ in range(6):
            cx, cy, radius = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(20, 120)
            field += rng.uniform(-1, 1) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * radius**2))
        field += rng.uniform(-0.5, 0.5) * x / width + rng.uniform(-0.5, 0.5) * y / height
        channels.append(field)
    array = np.stack(channels, axis=-1)
    array = (array - array.min()) / max(1e-6, float(array.max() - array.min()))
    grain = rng.normal(0.0, 4.0, (height, width, 1)).astype(np.float32)
    return Image.fromarray(np.clip(array * 255 + grain, 0, 255).astype(np.uint8), "RGB")


def noise_images(folder: Path, count: int, size: tuple[int, int] = (256, 192), suffix: str = "jpg", seed: int = 0):
    """Write ``count`` random-noise pictures into ``folder`` (created); return their paths.

    Noise makes every picture distinct by every duplicate test, and any 48-byte slice of one file unique to it.
    """
    folder.mkdir(parents=True)
    paths = []
    for index in range(count):
        pixels = np.random.default_rng(seed + index).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        path = folder / f"img{index:05d}.{suffix}"
        Image.fromarray(pixels).save(path, **({"quality": 90} if suffix == "jpg" else {}))
        paths.append(path)
    return paths


def jpeg_bytes(image: Image.Image, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", **options)
    return buffer.getvalue()


def write_sidecar(image_path: Path, **metadata: Any) -> None:
    image_path.with_suffix(".json").write_text(json.dumps(metadata), encoding="utf-8")


RUN_SPECIFIC = ("_run/run.json", "_run/config.json", "report/")


@dataclasses.dataclass
class Output:
    """Everything one run wrote, loaded for assertions."""

    path: Path
    summary: RunSummary

    @property
    def ledger(self) -> list[dict]:
        return sorted(pq.read_table(self.path / "ledger").to_pylist(), key=lambda row: row["source"])

    def ledger_by_name(self) -> dict[str, dict]:
        """Ledger rows keyed by the file name (or ``manifest#row``) of their source."""
        return {Path(row["source"]).name: row for row in self.ledger}

    def shard_paths(self, view: str = "pairs") -> list[Path]:
        return sorted((self.path / "shards" / view).rglob("*.tar"))

    def samples(self, view: str = "pairs") -> list[dict]:
        """Every sample of a view, read back with ``webdataset``."""
        import webdataset as wds

        urls = [str(path) for path in self.shard_paths(view)]
        if not urls:
            return []
        return list(wds.WebDataset(urls, shardshuffle=False, empty_check=False))

    def samples_by_name(self, view: str = "pairs") -> dict[str, dict]:
        """Every sample of a view keyed by the file name (or ``manifest#row``, ``tar#key``) of its source."""
        return {json.loads(sample["json"])["source"].rsplit("/", 1)[-1]: sample for sample in self.samples(view)}

    def texts_by_name(self, view: str = "pairs") -> dict[str, str]:
        """Every sample's caption (its ``txt`` member) keyed as ``samples_by_name``."""
        return {name: sample["txt"].decode() for name, sample in self.samples_by_name(view).items()}

    def file_bytes(self) -> dict[str, bytes]:
        """Every output file by relative path, except those that record where and how the run happened.

        ``_run/run.json`` holds wall time and arguments, ``_run/config.json`` the output path, ``report/`` the run's
        wall time; everything else must be byte-identical between runs of the same input and config.
        """
        return {
            str(path.relative_to(self.path)): path.read_bytes()
            for path in sorted(self.path.rglob("*"))
            if path.is_file() and not str(path.relative_to(self.path)).startswith(RUN_SPECIFIC)
        }


def run_job(inputs: list, output: Path, beam_args: list[str] = (), rebuild: bool = False, **sections: dict) -> Output:
    """Run the real pipeline on ``inputs`` (paths or ``InputSpec`` dicts) with config sections as keyword dicts."""
    specs = [spec if isinstance(spec, dict) else {"path": str(spec)} for spec in inputs]
    data: dict[str, Any] = {key: dict(value) for key, value in sections.items()}
    data.setdefault("ingest", {})["inputs"] = specs
    data.setdefault("run", {})["output"] = str(output)
    data.setdefault("clip", {}).setdefault("smoke", True)  # offline: random small CLIP, never downloads
    config = UnishardConfig.model_validate(data)
    summary = run(config, list(beam_args) or ["--runner=DirectRunner"], rebuild=rebuild)
    return Output(path=Path(output), summary=summary)
