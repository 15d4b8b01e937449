"""End to end: a real DirectRunner run accounts for every input in the ledger and writes readable shards."""

import json

from tests.helpers import write_sidecar


def test_every_input_has_one_ledger_row_and_kept_rows_are_the_shard_samples(tmp_path, run, photo):
    images = tmp_path / "images"
    images.mkdir()
    for seed in range(5):
        path = images / f"photo{seed}.jpg"
        photo(seed=seed).save(path, quality=90)
        write_sidecar(path, title=f"photo number {seed}", domain="marketing")
    (images / "broken.jpg").write_bytes(b"not an image at all")
    out = run([images])

    ledger = out.ledger
    assert sorted(row["source"].rsplit("/", 1)[-1] for row in ledger) == sorted(
        [f"photo{seed}.jpg" for seed in range(5)] + ["broken.jpg"]
    )
    by_name = out.ledger_by_name()
    assert by_name["broken.jpg"]["status"] == "rejected"
    assert by_name["broken.jpg"]["reason"] == "not_an_image"
    samples = out.samples()
    kept = {row["key"] for row in ledger if row["status"] == "kept"}
    assert {sample["__key__"] for sample in samples} == kept
    assert len(kept) == 5
    record = json.loads(samples[0]["json"])
    assert record["domain"] == "marketing"
    assert samples[0]["txt"].decode().startswith("photo number")
