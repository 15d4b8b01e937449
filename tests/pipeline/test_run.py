"""End to end: a real DirectRunner run accounts for every input in the ledger and writes readable shards."""

import io
import json

import numpy as np
import pillow_heif
from PIL import Image, TiffImagePlugin

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


def test_an_iphone_heic_photo_is_read_and_shipped_like_a_jpeg(tmp_path, run, photo):
    images = tmp_path / "images"
    images.mkdir()
    source = photo(320, 240, seed=3)
    pillow_heif.from_pillow(source).save(images / "IMG_0042.HEIC", quality=90)
    write_sidecar(images / "IMG_0042.HEIC", title="a phone photo of the line", domain="factory")
    out = run([images])

    row = out.ledger_by_name()["IMG_0042.HEIC"]
    assert row["status"] == "kept", row
    (sample,) = out.samples()
    shipped = np.asarray(Image.open(io.BytesIO(sample["jpg"])).convert("RGB"), np.float32)
    assert shipped.shape == (240, 320, 3)
    assert np.abs(shipped - np.asarray(source.convert("RGB"), np.float32)).mean() < 8.0
    assert json.loads(sample["json"])["original"]["format"] == "HEIF"


def test_a_camera_raw_beside_its_jpeg_is_rejected_saying_so_and_its_preview_never_ships(tmp_path, run, photo):
    # A camera's RAW+JPEG pair: the NEF's first TIFF page is a 256x171 preview of the raw data (NewSubfileType 1).
    images = tmp_path / "images"
    images.mkdir()
    photo(640, 427, seed=4).save(images / "DSC_0001.JPG", quality=90)
    info = TiffImagePlugin.ImageFileDirectory_v2()
    info[254], info[271] = 1, "NIKON CORPORATION"
    photo(256, 171, seed=4).save(images / "DSC_0001.NEF", "TIFF", tiffinfo=info)
    write_sidecar(images / "DSC_0001.JPG", title="a press on line 3", domain="factory")
    out = run([images])

    rows = out.ledger_by_name()
    assert rows["DSC_0001.JPG"]["status"] == "kept", rows
    assert (rows["DSC_0001.NEF"]["status"], rows["DSC_0001.NEF"]["reason"]) == ("rejected", "unsupported_image")
    assert "256x171 preview" in rows["DSC_0001.NEF"]["detail"] and "raw developer" in rows["DSC_0001.NEF"]["detail"]
    (sample,) = out.samples()
    assert Image.open(io.BytesIO(sample["jpg"])).size == (640, 427)


def test_a_title_embedded_in_the_photo_is_its_text_unless_a_sidecar_gives_one(tmp_path, run, photo):
    # Explorer's Title field (EXIF XPTitle, UTF-16): what a person types in a photo's Properties on Windows.
    images = tmp_path / "images"
    images.mkdir()
    for name, title in (("pump.jpg", "Pump housing, line 3"), ("valve.jpg", "Valve body")):
        exif = Image.Exif()
        exif[0x9C9B] = title.encode("utf-16-le") + b"\x00\x00"
        photo(320, 240, seed=len(name)).save(images / name, quality=90, exif=exif.tobytes())
    write_sidecar(images / "valve.jpg", title="Valve body, cast iron")
    out = run([images])

    rows = out.ledger_by_name()
    assert rows["pump.jpg"]["status"] == rows["valve.jpg"]["status"] == "kept", rows
    texts = {
        json.loads(sample["json"])["source"].rsplit("/", 1)[-1]: sample["txt"].decode() for sample in out.samples()
    }
    assert texts == {"pump.jpg": "Pump housing, line 3", "valve.jpg": "Valve body, cast iron"}


def _mixed_inputs(folder, photo):
    folder.mkdir()
    for seed in range(8):
        path = folder / f"photo{seed}.jpg"
        photo(200 + 10 * seed, 150, seed=seed).save(path, quality=90)
        write_sidecar(path, title=f"photo {seed}", domain="factory" if seed % 2 else "marketing")
    (folder / "photo0-copy.jpg").write_bytes((folder / "photo0.jpg").read_bytes())
    (folder / "photo0-copy.txt").write_text("a copy")
    (folder / "empty.jpg").write_bytes(b"")
    return folder


def test_an_unexpected_error_on_one_item_is_a_failed_row_and_the_run_goes_on(tmp_path, run, photo, monkeypatch):
    import transforms.text

    original = transforms.text.choose_text

    def explode_on_photo3(metadata, *rest):
        if metadata.get("title") == "photo 3":
            raise ZeroDivisionError("planted failure")
        return original(metadata, *rest)

    monkeypatch.setattr(transforms.text, "choose_text", explode_on_photo3)
    out = run([_mixed_inputs(tmp_path / "in", photo)], run={"max_failure_ratio": 0.5})
    row = out.ledger_by_name()["photo3.jpg"]
    assert (row["status"], row["stage"], row["reason"]) == ("failed", "text", "exception")
    assert json.loads(row["detail"]) == {"error": "planted failure", "error_type": "ZeroDivisionError"}
    assert len(out.samples()) == 7 - 1 + 1  # 8 photos, one failed; the copy is a duplicate
    assert out.summary.counts["by_status"] == {"failed": 1, "kept": 7, "rejected": 2}


def test_too_many_failures_fail_the_run_and_commit_nothing(tmp_path, run, photo, monkeypatch):
    import pytest

    import transforms.text
    from pipeline.launch import RunError

    def explode(metadata, fields, max_chars):
        raise RuntimeError("model server down")

    monkeypatch.setattr(transforms.text, "choose_text", explode)
    with pytest.raises(RunError, match="max_failure_ratio"):
        run([_mixed_inputs(tmp_path / "in", photo)], output=tmp_path / "out")
    assert not (tmp_path / "out" / "shards").exists()
    assert not (tmp_path / "out" / "ledger").exists()


def test_output_is_byte_identical_with_two_worker_processes(tmp_path, run, photo):
    inputs = [_mixed_inputs(tmp_path / "in", photo)]
    single = run(inputs, output=tmp_path / "single", shards={"samples_per_shard": 3})
    multi = run(
        inputs,
        output=tmp_path / "multi",
        shards={"samples_per_shard": 3},
        beam_args=["--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2"],
    )
    single_files, multi_files = single.file_bytes(), multi.file_bytes()
    assert sorted(single_files) == sorted(multi_files)
    assert len(single.shard_paths()) > 1
    different = [name for name in single_files if single_files[name] != multi_files[name]]
    assert different == []
