"""A shard tar's structure: members read in order, and bad keys, scattered samples and truncation named."""

import io
import tarfile

from pipeline.tar_members import read_members


def _tar(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _read(data: bytes) -> tuple[dict, list[str], int, list[str]]:
    samples: dict = {}
    order: list[str] = []
    size, problems = read_members(io.BytesIO(data), samples, order)
    return samples, order, size, problems


def test_a_sound_tar_reads_every_sample_in_order():
    data = _tar([("0a.json", b"{}"), ("0a.jpg", b"x"), ("0b.json", b"{}"), ("0b.jpg", b"y")])
    samples, order, size, problems = _read(data)
    assert (order, problems, size) == (["0a", "0b"], [], len(data))
    assert samples["0b"] == {"json": b"{}", "jpg": b"y"}


def test_bad_keys_folders_missing_extensions_and_scattered_samples_are_named():
    data = _tar([("0A.json", b"{}"), ("dir/0b.json", b"{}"), ("0c", b""), ("0d.json", b"{}"), ("0e.json", b"{}")])
    data_scattered = _tar([("0d.json", b"{}"), ("0e.json", b"{}"), ("0d.jpg", b"x"), ("0e.json", b"{}")])
    _, _, _, problems = _read(data)
    assert problems == [
        "member '0A.json': key '0A' is not lowercase hex",
        "member 'dir/0b.json' is inside a folder",
        "member '0c' has no extension",
    ]
    _, _, _, problems = _read(data_scattered)
    assert "members of 0d are not adjacent (webdataset would split the sample)" in problems
    assert "member '0e.json' appears twice" in problems


def test_a_truncated_tar_is_caught_mid_member_and_at_a_member_boundary():
    data = _tar([("0a.json", b"{}" * 400), ("0b.json", b"{}")])
    _, _, _, problems = _read(data[:700])
    assert problems[-1].startswith("truncated or corrupted after")
    _, order, _, problems = _read(data[:1536])
    assert order == ["0a"] and problems[-1].startswith("truncated or corrupted: no clean end-of-archive marker")
