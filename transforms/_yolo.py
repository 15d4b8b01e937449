"""YOLO datasets (Ultralytics, Roboflow, CVAT and LabelImg exports): ``labels/NAME.txt`` beside ``images/NAME.jpg``.

Each image under a folder named ``images`` has its label file at the same place under the twin folder ``labels``
(``train/images/a.jpg`` and ``train/labels/a.txt``, as Ultralytics pairs them), one line per object: ``CLASS X Y W
H`` (the box's centre and size as shares of the image) or ``CLASS X1 Y1 X2 Y2 ...`` (a polygon). Class names come
from the nearest ``data.yaml`` or ``dataset.yaml`` (``names``: a list, or ids mapped to names), else ``classes.txt``
or ``obj.names`` (a name per line), in the labels folder or up to three folders above it.

A folder input pairs them in its listing (``twin_stem``: a ``.txt`` below ``labels`` keys to its image's stem when
the twin ``images`` folder exists), and ingest's read (``read_labels``) gives the image ``label`` (its classes'
names, in class order) and ``objects`` (``{"label", "bbox"}``, ``bbox`` ``[x, y, width, height]`` of the box's
top-left corner and size as shares of the image, so they hold through normalise's resize), where its sidecar or
metadata row gives no such key. An empty label file is an image with no object. A line that is not a class and
numbers is ``malformed_sidecar``, naming the line; a label file no image takes is ``orphan_sidecar``.
"""

import os
from typing import Any

from schemas import reasons
from schemas.records.ledger import RejectItem

LABELS, IMAGES = f"{os.sep}labels{os.sep}", f"{os.sep}images{os.sep}"
NAME_FILES = ("data.yaml", "dataset.yaml", "data.yml", "classes.txt", "obj.names")
LABEL = "__yolo_label__"  # metadata key of an image's YOLO label file: ingest's read reads it
_LEVELS = 3  # folders above the labels folder searched for class names


def twin_stem(path: str) -> str | None:
    """The stem of the image a local ``labels/.../NAME.txt`` describes (``images/.../NAME``), when the twin
    ``images`` folder exists; else ``None``."""
    stem, ext = os.path.splitext(path)
    if "://" in path or ext.lower() != ".txt" or LABELS not in stem:
        return None
    head, _, tail = stem.rpartition(LABELS)
    twin = f"{head}{IMAGES}{tail}"
    return twin if os.path.isdir(os.path.dirname(twin)) and os.path.basename(path) not in NAME_FILES else None


def is_label_of(path: str, stem: str) -> bool:
    """Whether ``path`` is the YOLO label file of the images whose stem is ``stem``."""
    return os.path.splitext(path)[0] != stem and twin_stem(path) == stem


def read_labels(path: str, data: bytes, cache: dict[str, dict[int, str]]) -> dict[str, Any]:
    """``label`` and ``objects`` of a label file's ``data``; ``cache`` keeps the class names found per folder.

    Raises:
        RejectItem: ``malformed_sidecar`` for a line that is not a class followed by 4 or an even number of shares.
    """
    folder = os.path.dirname(path)
    if folder not in cache:
        cache[folder] = class_names(folder)
    names = cache[folder]
    objects = []
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            objects.append(_object(line.split(), names))
        except ValueError:
            raise RejectItem(
                reasons.MALFORMED_SIDECAR,
                f"YOLO label file {path} line {number} ({line.strip()[:60]!r}) is not a class id followed by a box "
                "(x y width height) or a polygon (x1 y1 x2 y2 ...) as shares of the image; fix or remove the line",
                sidecar=path,
            ) from None
    used = sorted({item["class"] for item in objects})
    labels = [names[index] for index in used if index in names]
    shown = [{"label": names.get(item["class"], item["class"]), "bbox": item["bbox"]} for item in objects]
    result: dict[str, Any] = {"objects": shown}
    if labels:
        result["label"] = labels
    return result


def _object(fields: list[str], names: dict[int, str]) -> dict[str, Any]:
    index = int(fields[0])
    values = [float(value) for value in fields[1:]]
    if index < 0 or len(values) < 4 or (len(values) > 4 and len(values) % 2):
        raise ValueError
    if len(values) == 4:
        x, y, width, height = values
        left, top = x - width / 2, y - height / 2
    else:
        xs, ys = values[0::2], values[1::2]
        left, top, width, height = min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)
    return {"class": index, "bbox": [round(value, 6) for value in (left, top, width, height)]}


def class_names(folder: str) -> dict[int, str]:
    """Class id to name from the nearest name file in ``folder`` or up to three folders above it ({} without)."""
    for _ in range(_LEVELS + 1):
        for name in NAME_FILES:
            candidate = os.path.join(folder, name)
            if os.path.isfile(candidate):
                found = _names(candidate)
                if found:
                    return found
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return {}


def _names(path: str) -> dict[int, str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return {}
    if not path.endswith((".yaml", ".yml")):
        return {index: line.strip() for index, line in enumerate(text.splitlines()) if line.strip()}
    import yaml

    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    names = loaded.get("names") if isinstance(loaded, dict) else None
    if isinstance(names, list):
        return {index: str(name) for index, name in enumerate(names)}
    if isinstance(names, dict):
        return {int(key): str(value) for key, value in names.items() if str(key).lstrip("-").isdigit()}
    return {}
