"""The loaders of docs/loading.md: every view read back through webdataset and a torch DataLoader with 2 workers."""

import io
import json
from pathlib import Path

import pytest
import torch
import webdataset as wds
from PIL import Image

from schemas.documents import parse_document
from tests.documents_run import documents_run


@pytest.fixture(scope="module")
def out():
    return documents_run()


def shard_list(folder: Path) -> tuple[list[str], int]:
    index = json.loads((folder / "index.json").read_text())
    urls = [str(folder / entry["url"]) for entry in index["shardlist"]]
    return urls, sum(entry["nsamples"] for entry in index["shardlist"])


def test_every_split_s_index_is_read_by_wids_as_its_shards_hold(out, tmp_path):
    """The index lacked wids_version, so wids, the reader whose format it claims, refused it."""
    import wids

    for folder in sorted(path.parent for path in (out.path / "shards").glob("*/*/index.json")):
        urls, count = shard_list(folder)
        cache = tmp_path / folder.relative_to(out.path)  # wids caches shards by file name: one folder each
        dataset = wids.ShardListDataset(str(folder / "index.json"), cache_dir=str(cache))
        keys = [dataset[i]["__key__"] for i in range(len(dataset))]
        in_tars = [sample["__key__"] for sample in wds.WebDataset(urls, shardshuffle=False)]
        assert len(dataset) == count and keys == in_tars, folder


def interleaved(sample: dict) -> dict:
    """One document as its sequence: text strings and RGB images, in reading order (as in docs/loading.md)."""
    record = parse_document(json.loads(sample["json"]))
    sequence = [
        value if kind == "text" else Image.open(io.BytesIO(sample[value])).convert("RGB")
        for kind, value in record.sequence()
    ]
    return {"key": record.key, "doc_id": record.doc_id, "sequence": sequence}


def _loader(dataset, **options) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=2, **options)


def test_docs_rebuild_the_interleaved_sequence_through_a_dataloader_with_two_workers(out):
    urls, count = shard_list(out.path / "shards" / "docs" / "train")
    assert len(urls) >= 2
    dataset = wds.WebDataset(
        urls, shardshuffle=False, nodesplitter=wds.split_by_node, workersplitter=wds.split_by_worker, empty_check=False
    ).map(interleaved)
    documents = {document["doc_id"]: document for document in _loader(dataset)}
    assert len(documents) == count == 5
    sequence = documents["SKU-A"]["sequence"]
    assert [type(step).__name__ for step in sequence] == ["str", "Image", "Image", "str"]
    assert sequence[0] == "Red mug" and sequence[-1] == "Dishwasher safe."
    assert all(step.mode == "RGB" for step in sequence if isinstance(step, Image.Image))
    pairs = {json.loads(s["json"])["key"]: s for s in out.samples()}
    direct = {json.loads(s["json"])["doc_id"]: parse_document(json.loads(s["json"])) for s in out.samples("docs")}
    for doc_id, document in documents.items():
        images = [step for step in document["sequence"] if isinstance(step, Image.Image)]
        keys = [meta.key for meta in direct[doc_id].image_metadata if meta]
        # The same picture as the pairs view holds under the same key.
        assert [image.size for image in images] == [Image.open(io.BytesIO(pairs[k]["jpg"])).size for k in keys]


def test_pairs_read_the_way_open_clip_trains_with_two_workers(out):
    urls, count = shard_list(out.path / "shards" / "pairs" / "train")

    def preprocess(image: Image.Image) -> torch.Tensor:
        resized = image.resize((32, 32))
        return torch.frombuffer(bytearray(resized.tobytes()), dtype=torch.uint8).view(32, 32, 3).permute(2, 0, 1)

    def tokenizer(texts: list[str] | str) -> torch.Tensor:
        texts = [texts] if isinstance(texts, str) else texts
        return torch.tensor([[len(text), sum(map(ord, text)) % 997] for text in texts])

    pipeline = wds.DataPipeline(
        wds.SimpleShardList(urls),
        wds.split_by_node,
        wds.split_by_worker,
        wds.tarfile_to_samples(),
        wds.select(lambda s: "txt" in s and any(ext in s for ext in ("jpg", "png", "jpeg", "webp"))),
        wds.decode("pilrgb"),
        wds.rename(image="jpg;png;jpeg;webp", text="txt"),
        wds.map_dict(image=preprocess, text=lambda text: tokenizer(text)[0]),
        wds.to_tuple("image", "text"),
        wds.batched(2, partial=True),
    )
    batches = list(wds.WebLoader(pipeline, batch_size=None, shuffle=False, num_workers=2))
    assert sum(images.shape[0] for images, _ in batches) == count == 8
    assert all(images.shape[1:] == (3, 32, 32) and texts.shape[1] == 2 for images, texts in batches)


def test_edit_pairs_load_as_source_target_and_instruction_with_two_workers(out):
    urls, count = shard_list(out.path / "shards" / "edit" / "train")
    dataset = (
        wds.WebDataset(urls, shardshuffle=False, workersplitter=wds.split_by_worker, empty_check=False)
        .decode("pilrgb")
        .to_tuple("source.jpg", "target.jpg", "txt")
    )
    items = list(_loader(dataset, collate_fn=None))
    assert len(items) == count == 2
    for source, target, instruction in items:
        assert isinstance(source, Image.Image) and isinstance(target, Image.Image)
        assert instruction.startswith("Make the mug ")
