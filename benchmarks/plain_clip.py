"""A plain loop doing the per-image work of ``unishard run`` with a CLIP model: the yardstick for the model path.

Per image, in ``WORKERS`` processes (each loads the model once and runs torch on ``THREADS`` thread, as a unishard
worker does with ``clip.threads``' default): read the file, SHA-256, decode (JPEG draft), EXIF transpose, RGB,
resize to at most 512 px, pHash, re-encode JPEG quality 90; then, per batch of ``BATCH`` images, one CLIP image
encode of the batch and one text encode of the caption candidates unishard encoded for those images (``TEXTS``: a
JSON object mapping file name to its list of candidate texts, read from a unishard output by
``benchmarks/bench_pipeline.py --vit``). Results go into tar shards like ``../shared/bench/plain_shards.py``.
Prints one JSON line with images/s.

    python benchmarks/plain_clip.py OUT WORKERS BATCH WEIGHTS TEXTS @listfile
"""

import hashlib
import io
import json
import os
import sys
import tarfile
import time
from multiprocessing import Pool

import imagehash
from PIL import Image, ImageOps

MAX_SIDE = 512
THREADS = 1  # clip.threads' default: unishard's worker processes each run torch on one thread
_MODEL: dict = {}


def _load(weights: str, texts: str) -> None:
    import open_clip
    import torch

    torch.set_num_threads(THREADS)

    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=weights)
    _MODEL.update(
        model=model.eval(),
        preprocess=preprocess,
        tokenizer=open_clip.get_tokenizer("ViT-B-32"),
        texts=json.loads(open(texts, encoding="utf-8").read()),
    )


def _image(path: str) -> tuple[str, str, bytes, Image.Image, str]:
    data = open(path, "rb").read()
    image = Image.open(io.BytesIO(data))
    if image.format == "JPEG":
        image.draft("RGB", (MAX_SIDE, MAX_SIDE))
    image = ImageOps.exif_transpose(image).convert("RGB")
    image.thumbnail((MAX_SIDE, MAX_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return hashlib.sha256(data).hexdigest(), str(imagehash.phash(image)), buffer.getvalue(), image, path


def _batch(paths: list[str]) -> list[tuple[str, bytes, bytes]]:
    import torch

    done = [_image(path) for path in paths]
    texts = [text for *_, path in done for text in _MODEL["texts"].get(os.path.basename(path), [])]
    with torch.inference_mode():
        pixels = torch.stack([_MODEL["preprocess"](image) for *_, image, _ in done])
        images = _MODEL["model"].encode_image(pixels)
        if texts:
            _MODEL["model"].encode_text(_MODEL["tokenizer"](texts))
    rows = []
    for (sha, phash, jpeg, _, path), embedding in zip(done, images, strict=True):
        meta = {"sha256": sha, "phash": phash, "source": path, "embedding": embedding[:4].tolist()}
        rows.append((sha, jpeg, json.dumps(meta).encode()))
    return rows


def main() -> None:
    out, workers, batch, weights, texts, listing = sys.argv[1:7]
    files = [line.strip() for line in open(listing[1:], encoding="utf-8") if line.strip()]
    os.makedirs(out, exist_ok=True)
    started = time.time()
    batches = [files[start : start + int(batch)] for start in range(0, len(files), int(batch))]
    count = 0
    with (
        Pool(int(workers), initializer=_load, initargs=(weights, texts)) as pool,
        tarfile.open(os.path.join(out, "00000.tar"), "w") as shard,
    ):
        for rows in pool.imap(_batch, batches):
            for sha, jpeg, meta in rows:
                for suffix, payload in (("jpg", jpeg), ("json", meta)):
                    info = tarfile.TarInfo(f"{sha[:16]}.{suffix}")
                    info.size, info.mtime = len(payload), 0
                    shard.addfile(info, io.BytesIO(payload))
                count += 1
    seconds = time.time() - started
    print(json.dumps({"images": count, "seconds": round(seconds, 2), "images_per_s": round(count / seconds, 2)}))


if __name__ == "__main__":
    main()
