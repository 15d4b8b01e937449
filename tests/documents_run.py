"""One real pipeline run shared by the document, view and loading tests (a run costs tens of seconds).

The data: a product manifest whose rows (images and text rows) are listed out of order, with an exact duplicate, a
broken image, a text-only document, a row with neither image nor document, and two mugs in two colours (an ``edit``
pair); an MMC4 import with one local image, one that only exists as a URL, and a line that is not JSON; a product
page whose images have no position (placed by CLIP similarity); and factory inspection tiles grouped into a record
by a ``documents.groups`` rule, each with its note.
"""

import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path

from tests.helpers import Output, make_photo, run_job, write_sidecar

MANIFEST = [
    "path,doc_id,position,text,title,sku,category,color,image_role",
    "p2.jpg,SKU-A,4,,Red mug,SKU-A,mug,red,detail",
    ",SKU-A,5,Dishwasher safe.,,,,,",
    "dup.jpg,SKU-A,3,,Red mug,SKU-A,mug,red,main",
    "p0.jpg,SKU-A,2,,Red mug,SKU-A,mug,red,main",
    ",SKU-A,1,Red mug,,,,,",
    "broken.jpg,SKU-B,1,,Blue bowl,SKU-B,bowl,blue,main",
    ",SKU-B,0,Blue bowl,,,,,",
    "p3.jpg,SKU-C,1,,Blue mug,SKU-C,mug,blue,main",
    ",SKU-C,0,Blue mug for tea.,,,,,",
    ",TEXT-ONLY,0,No picture here.,,,,,",
    ",PAGE-1,0,A garden in spring. Tulips in a row. A shed at the back.,,,,,",
    "g1.jpg,PAGE-1,,,Garden,PAGE-1,garden,green,photo",
    "g2.jpg,PAGE-1,,,Garden,PAGE-1,garden,green,photo",
    ",,,A row with neither an image nor a document.,,,,,",
]


MMC4_DOC = "mmc4.jsonl#http://example.com/car.html"  # the MMC4 line's document id: its file's name and its url


def source_name(source: str) -> str:
    """A source without its folders: ``products.csv#4``, ``tile10.jpg``, ``mmc4.jsonl#http://...:image0001``."""
    path, mark, item = source.partition("#")
    return Path(path).name + mark + item


def _mmc4_line() -> dict:
    return {
        "image_info": [
            {"image_name": "m1.jpg", "matched_text_index": 1, "matched_sim": 0.31, "raw_url": "http://x/m1.jpg"},
            {"image_name": "gone.jpg", "matched_text_index": 0, "matched_sim": 0.28, "raw_url": "http://x/gone.jpg"},
        ],
        "text_list": ["Open the hood.", "Check the oil level."],
        "url": "http://example.com/car.html",
    }


def write_data(root: Path) -> list[dict]:
    """Write the inputs under ``root``; return the input specs."""
    (root / "factory").mkdir(parents=True)
    for seed in (0, 2, 3, 5, 6, 7):
        name = {0: "p0", 2: "p2", 3: "p3", 5: "g1", 6: "g2", 7: "m1"}[seed]
        make_photo(seed=seed).save(root / f"{name}.jpg", quality=90)
    (root / "dup.jpg").write_bytes((root / "p0.jpg").read_bytes())
    (root / "broken.jpg").write_bytes(b"not an image")
    (root / "products.csv").write_text("\n".join(MANIFEST) + "\n", encoding="utf-8")
    (root / "mmc4.jsonl").write_text(json.dumps(_mmc4_line()) + "\n{not a document\n", encoding="utf-8")
    for seed in (10, 11):
        path = root / "factory" / f"tile{seed}.jpg"
        make_photo(seed=seed).save(path, quality=90)
        write_sidecar(path, label="scratch", record="R-1", position=seed - 9, inspection_note=f"Camera {seed - 9}.")
    return [
        {"path": str(root / "products.csv"), "domain": "marketing"},
        {"path": str(root / "mmc4.jsonl"), "kind": "mmc4", "domain": "web"},
        {"path": str(root / "factory"), "kind": "files", "domain": "factory"},
    ]


SECTIONS = {
    "documents": {
        "groups": [{"fields": ["record"], "prefix": "inspection:"}],
        "image_text_fields": ["inspection_note"],
        "placement": {"min_similarity": -1.0},
    },
    "views": {
        "loader_workers": 2,
        "edit": {
            "rules": [
                {
                    "name": "recolour",
                    "domain": "marketing",
                    "match": ["category", "image_role"],
                    "differ": "color",
                    "instruction": "Make the {source.category} {target.color} instead of {source.color}",
                }
            ]
        },
    },
    "split": {"fractions": {"train": 1.0}, "group_by": ["doc_id", "record"]},
    # Stages these tests do not look at are off, to keep the shared run short.
    "near_dedup": {"enabled": False},
    "semantic_dedup": {"enabled": False},
    "faces": {"enabled": False},
    "safety": {"image_check": False},
    "audit": {"enabled": False},
    "eval_set": {"enabled": False},
}


@functools.cache
def documents_run() -> Output:
    """Run the pipeline once per test session on the data above; the folder is removed at exit."""
    root = Path(tempfile.mkdtemp(prefix="unishard-documents-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return run_job(write_data(root / "data"), root / "out", **SECTIONS)
