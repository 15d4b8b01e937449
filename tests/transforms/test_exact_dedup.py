"""Exact deduplication by bytes and by decoded pixels, with a deterministic survivor."""

import json
import random
import shutil

from schemas import reasons
from schemas.records.dedup import Fingerprint
from transforms.exact_dedup import decide


def _fp(source: str, pixels: int, sha: str = "s", richness: int = 0) -> Fingerprint:
    return Fingerprint(source[-4:], source, sha, "p", pixels, 10, richness, "d")


def test_survivor_is_highest_resolution_then_smallest_source_whatever_the_order():
    members = [_fp("b.jpg", 100), _fp("a.jpg", 100), _fp("c.jpg", 400, sha="other")]
    for _ in range(5):
        random.shuffle(members)
        survivor, losers = decide(members)
        assert survivor.source == "c.jpg"
        assert [(fp.source, reason) for fp, reason in losers] == [
            ("a.jpg", reasons.PIXEL_DUPLICATE),
            ("b.jpg", reasons.PIXEL_DUPLICATE),
        ]


def test_richer_metadata_wins_over_a_bare_copy_of_equal_resolution():
    survivor, _ = decide([_fp("a-copy.jpg", 100), _fp("b-catalogued.jpg", 100, richness=5)])
    assert survivor.source == "b-catalogued.jpg"


def _copies(folder, photo, other: bool = True):
    """``folder`` with a picture, a copy of its file, a lossless re-encode of it and (``other``) another picture,
    each with a caption."""
    folder.mkdir()
    picture = photo(240, 180, seed=7)
    picture.save(folder / "a-original.png")
    shutil.copy(folder / "a-original.png", folder / "b-copy.png")
    picture.save(folder / "c-reencoded.webp", lossless=True)
    if other:
        photo(240, 180, seed=8).save(folder / "d-other.png")
    for path in folder.iterdir():
        (folder / f"{path.stem}.txt").write_text(f"picture {path.stem}")
    return folder


def test_copies_and_lossless_reencodes_are_rejected_naming_their_survivor(tmp_path, run, photo):
    out = run([_copies(tmp_path / "images", photo)])
    rows = out.ledger_by_name()
    assert rows["b-copy.png"]["reason"] == reasons.EXACT_DUPLICATE
    assert rows["a-original.png"]["status"] == "kept"
    assert rows["c-reencoded.webp"]["reason"] == reasons.PIXEL_DUPLICATE
    assert json.loads(rows["c-reencoded.webp"]["detail"])["survivor_key"] == rows["a-original.png"]["key"]
    assert rows["d-other.png"]["status"] == "kept"
    assert len(out.samples()) == 2


def test_with_the_stage_off_copies_of_one_file_are_still_one_sample_and_reencodes_are_kept(tmp_path, run, photo):
    """Two copies of one file were both kept: one key twice in a tar that webdataset refuses, committed with exit 0."""
    off = {"enabled": False}
    out = run([_copies(tmp_path / "images", photo, other=False)], exact_dedup=off, near_dedup=off, semantic_dedup=off)

    rows = out.ledger_by_name()
    assert {name: row["status"] for name, row in rows.items()} == {
        "a-original.png": "kept",
        "b-copy.png": "rejected",
        "c-reencoded.webp": "kept",
    }
    detail = json.loads(rows["b-copy.png"]["detail"])
    assert rows["b-copy.png"]["reason"] == reasons.EXACT_DUPLICATE and "enabled = false" in detail["message"]
    assert detail["survivor_source"].endswith("a-original.png")
    assert sorted(sample["__key__"] for sample in out.samples()) == sorted(
        rows[name]["key"] for name in ("a-original.png", "c-reencoded.webp")
    )
