"""Annotation files paired with their images: YOLO label files and Pascal VOC XML, as labelling tools export them.

- **YOLO** (Ultralytics, Roboflow, CVAT exports): each image under a folder named ``images`` has its label file at
  the same place under the twin folder ``labels`` (``train/images/a.jpg`` and ``train/labels/a.txt``, as Ultralytics
  pairs them), or beside it (``d.jpg`` and ``d.txt`` with ``classes.txt``, as LabelImg saves in its YOLO mode: a
  same-stem ``.txt`` of box lines only, in a folder holding one of ``NAME_FILES``), one line per object: ``CLASS X Y
  W H`` (the box's centre and size as shares of the image) or ``CLASS X1 Y1 X2 Y2 ...`` (a polygon). Class names
  come from the nearest names file, in the labels folder or up to three folders above it (``name_files`` says
  which, in one folder holding several): ``data.yaml``, ``dataset.yaml`` or any other YAML whose ``names`` lists
  them (a list, or ids mapped to names: Ultralytics' ``coco8.yaml``), else ``classes.txt`` or ``obj.names`` (a name
  per line), UTF-8 with or without a byte-order mark.
- **Pascal VOC** (LabelImg, CVAT, the VOC and NEU-DET datasets): ``NAME.xml`` beside ``NAME.jpg`` (LabelImg's
  default), or in a folder named ``Annotations`` whose sibling ``JPEGImages`` or ``images`` (any case) holds the
  image; an ``<annotation>`` of ``<object>`` elements, each a ``<name>`` and a ``<bndbox>`` in pixels.

A folder input pairs them in its listing (``annotation_of``: a twin-folder file keys to its image's stem, and a
same-stem ``.xml`` is one when it is an ``<annotation>``), so the file is no item of its own; ingest's read
(``read_annotation``) gives the image ``label`` (its classes' names: YOLO's in class order, VOC's as they first
appear) and ``objects`` (``{"label", "bbox"}``, ``bbox`` ``[x, y, width, height]`` of the box's top-left corner and
size as shares of the image, so they hold through normalise's resize; where a VOC file gives no size, normalise
turns its ``bbox_pixels`` into shares of the decoded image), where its sidecar or metadata row gives no such key,
and names the file (``BOXES_FROM``): normalise then clips each box to the image and drops one with no area inside
it, noting how many on the sample (``boxes_in_image``). An empty label file is an image with no object. A line or
object that is not a class and a box is ``malformed_sidecar``, naming it; an annotation file no image takes is
``orphan_sidecar``. A class-name file the label files reach (``is_class_names``) is no item.
"""

import math
import os
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from schemas import reasons
from schemas.records.ledger import RejectItem
from schemas.records.values import BOXES_FROM

LABELS, IMAGES = f"{os.sep}labels{os.sep}", f"{os.sep}images{os.sep}"
NAME_FILES = ("data.yaml", "dataset.yaml", "data.yml", "classes.txt", "obj.names")
YAML_SUFFIXES = (".yaml", ".yml")  # any such file whose names key lists classes is a names file too
VOC_FOLDER, VOC_TWINS = "annotations", ("jpegimages", "images")
ANNOTATION = "__annotation__"  # metadata key of an image's annotation file: ingest's read reads it
_LEVELS = 3  # folders above the labels folder searched for class names
_VOC_HEAD = 4096  # bytes of a same-stem .xml read to tell an <annotation>
_PEEK = 8  # non-empty .txt files of a folder looked at to tell LabelImg's YOLO label files from captions
_LINE = 256  # bytes of a line read to tell a YOLO box: one is far shorter
_YOLO_LINE = re.compile(rb"\s*\d+(\s+[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?){4}\s*$")
_EDGE = 1e-6  # shares are rounded to 6 places: a box this far past an edge lies inside


def twin_stem(path: str) -> str | None:
    """The stem of the image a local annotation file in a twin folder describes, when that folder exists: YOLO's
    ``labels/.../NAME.txt`` (``images/.../NAME``) or VOC's ``Annotations/NAME.xml`` (``JPEGImages/NAME``); else
    ``None``."""
    stem, ext = os.path.splitext(path)
    if "://" in path:
        return None
    if ext.lower() == ".txt" and LABELS in stem and os.path.basename(path) not in NAME_FILES:
        head, _, tail = stem.rpartition(LABELS)
        twin = f"{head}{IMAGES}{tail}"
        return twin if os.path.isdir(os.path.dirname(twin)) else None
    folder = os.path.dirname(stem)
    if ext.lower() == ".xml" and os.path.basename(folder).lower() == VOC_FOLDER:
        parent = os.path.dirname(folder)
        try:
            names = sorted(os.listdir(parent or "."))
        except OSError:
            return None
        twins = [name for name in names if name.lower() in VOC_TWINS and os.path.isdir(os.path.join(parent, name))]
        return os.path.join(parent, twins[0], os.path.basename(stem)) if twins else None
    return None


def boxes_in_image(metadata: Mapping[str, Any], width: int, height: int) -> tuple[dict[str, Any], list[str]]:
    """``metadata`` whose ``objects`` given in pixels (``bbox_pixels``: a COCO entry or VOC file that gives no image
    size) hold their box as shares of the ``width`` x ``height`` image instead (``bbox``), as every other box is;
    and, where an annotation file gave the objects (``BOXES_FROM``, dropped here), each box clipped to the image,
    a box with no area inside it (wholly outside, inverted, or empty) dropped, as Ultralytics does when it loads
    labels. Returns the metadata and a note naming the file and how many boxes were clipped or dropped."""
    source = metadata.get(BOXES_FROM)
    metadata = {key: value for key, value in metadata.items() if key != BOXES_FROM}
    objects = metadata.get("objects")
    if not isinstance(objects, list):
        return metadata, []
    converted, clipped, dropped = [], 0, 0
    for entry in objects:
        pixels = entry.get("bbox_pixels") if isinstance(entry, dict) and "bbox" not in entry else None
        if _numbers(pixels) and width * height:
            rest = {key: value for key, value in entry.items() if key != "bbox_pixels"}
            scales = (width, height, width, height)
            entry = {**rest, "bbox": [round(value / scale, 6) for value, scale in zip(pixels, scales, strict=True)]}
        if source is not None and isinstance(entry, dict) and _numbers(entry.get("bbox")):
            box = clip_box(entry["bbox"])
            if box is None:
                dropped += 1
                continue
            clipped += box != entry["bbox"]
            entry = {**entry, "bbox": box}
        converted.append(entry)
    metadata = {**metadata, "objects": converted}
    if not (clipped or dropped):
        return metadata, []
    counts = [f"{clipped} box(es) clipped to the image"] if clipped else []
    if dropped:
        counts.append(f"{dropped} box(es) dropped (outside the image or inverted: no area in it)")
    return metadata, [f"objects of {source}: {', '.join(counts)}"]


def clip_box(box: list[float]) -> list[float] | None:
    """A box ``[x, y, width, height]`` in shares of the image cut to the image (unchanged when it lies inside), or
    ``None`` when no area of it lies inside: wholly outside, or a width or height not above 0 (an inverted box)."""
    x, y, width, height = box
    left, top, right, bottom = max(x, 0.0), max(y, 0.0), min(x + width, 1.0), min(y + height, 1.0)
    if width <= 0 or height <= 0 or right - left <= _EDGE or bottom - top <= _EDGE:
        return None
    if x >= -_EDGE and y >= -_EDGE and x + width <= 1 + _EDGE and y + height <= 1 + _EDGE:
        return box  # inside, but for the rounding of shares to 6 places
    return [round(value, 6) for value in (left, top, right - left, bottom - top)]


def _numbers(values: Any) -> bool:
    """Whether ``values`` is a box: a list of 4 finite numbers."""
    return (
        isinstance(values, list)
        and len(values) == 4
        and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values)
    )


def is_class_names(path: str) -> bool:
    """Whether ``path`` is a YOLO dataset's class-name file that its label files read: a names file (``NAME_FILES``,
    or any YAML whose ``names`` lists classes, as Ultralytics' ``coco8.yaml``) where a folder named ``labels`` holds
    it, or lies beside or below it, at most ``_LEVELS`` folders down, or (one of ``NAME_FILES``) beside label files
    saved next to their images (``labels_beside``: LabelImg's YOLO mode). Such a file is the dataset's own
    description, as a folder's metadata.csv is, and no item."""
    name = os.path.basename(path)
    if "://" in path or not (name in NAME_FILES or name.lower().endswith(YAML_SUFFIXES)):
        return False
    if name.lower().endswith(YAML_SUFFIXES) and not _names(path):
        return False  # a YAML without class names names no class: an item, so the ledger shows it
    folder = os.path.dirname(path)
    if os.path.basename(folder) == "labels" or (name in NAME_FILES and labels_beside(folder)):
        return True
    depth = folder.count(os.sep)
    for top, folders, _ in os.walk(folder):
        if "labels" in folders:
            return True
        if top.count(os.sep) - depth >= _LEVELS:
            folders.clear()
    return False


def labels_beside(folder: str) -> bool:
    """Whether ``folder`` holds YOLO label files beside their images, as LabelImg saves them in its YOLO mode (with
    ``classes.txt``): one of the first ``_PEEK`` non-empty ``.txt`` files, in name order, is ``is_yolo_boxes``."""
    try:
        names = sorted(os.listdir(folder or "."))
    except OSError:
        return False
    texts = [name for name in names if name.lower().endswith(".txt") and name not in NAME_FILES]
    looked = 0
    for name in texts:
        path = os.path.join(folder, name)
        try:
            if not os.path.isfile(path) or not os.path.getsize(path):
                continue
        except OSError:
            continue
        if is_yolo_boxes(path):
            return True
        looked += 1
        if looked >= _PEEK:
            break
    return False


def is_yolo_boxes(path: str) -> bool:
    """Whether the text file ``path`` holds YOLO boxes only: at least one line, and every non-empty line ``CLASS X Y
    W H`` (an integer and 4 numbers). A caption's first line tells it apart, so that is as far as one is read."""
    found = False
    try:
        with open(path, "rb") as handle:
            for line in iter(lambda: handle.readline(_LINE), b""):
                if not line.strip():
                    continue
                if not _YOLO_LINE.match(line.removeprefix(b"\xef\xbb\xbf")):
                    return False
                found = True
    except OSError:
        return False
    return found


def annotation_of(path: str, stem: str) -> bool:
    """Whether ``path`` is an annotation file of the images whose stem is ``stem``: in a twin folder, or a
    same-stem ``.xml`` that is a Pascal VOC ``<annotation>``, or a same-stem ``.txt`` of YOLO boxes beside one of
    ``NAME_FILES`` that names classes (LabelImg's YOLO mode: ``d.jpg``, ``d.txt``, ``classes.txt``), which is then
    no caption."""
    own, ext = os.path.splitext(path)
    stem = unicodedata.normalize("NFC", stem)  # stems group in one Unicode form (transforms._listing.stem_key)
    if unicodedata.normalize("NFC", own) == stem and "://" not in path:
        if ext.lower() == ".xml":
            return _is_voc(path)
        return ext.lower() == ".txt" and _names_beside(os.path.dirname(path)) and is_yolo_boxes(path)
    twin = twin_stem(path)
    return twin is not None and unicodedata.normalize("NFC", twin) == stem


def _names_beside(folder: str) -> bool:
    """Whether ``folder`` holds one of ``NAME_FILES`` that names classes: a look by name, not a listing of a folder
    that may hold many thousand captions."""
    return any(_names(os.path.join(folder, name)) for name in NAME_FILES if os.path.isfile(os.path.join(folder, name)))


def _is_voc(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(_VOC_HEAD)
    except OSError:
        return False
    return b"<annotation" in head


def read_annotation(path: str, data: bytes, cache: dict[str, dict[int, str]]) -> dict[str, Any]:
    """``label`` and ``objects`` of an annotation file's ``data`` (VOC for ``.xml``, else YOLO)."""
    return read_voc(path, data) if path.lower().endswith(".xml") else read_labels(path, data, cache)


def read_labels(path: str, data: bytes, cache: dict[str, dict[int, str]]) -> dict[str, Any]:
    """``label`` and ``objects`` of a YOLO label file's ``data``; ``cache`` keeps the class names found per folder.

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
    if names and (unknown := [index for index in used if index not in names]):
        raise RejectItem(
            reasons.MALFORMED_SIDECAR,
            f"YOLO label file {path} uses class id {unknown[0]}, which the dataset's class names (data.yaml or "
            f"classes.txt: {len(names)} names, ids {min(names)} to {max(names)}) do not name; add the class's name "
            "there or fix the label file",
            sidecar=path,
        )
    labels = [names[index] for index in used if index in names]
    shown = [{"label": names.get(item["class"], item["class"]), "bbox": item["bbox"]} for item in objects]
    result: dict[str, Any] = {"objects": shown}
    if labels:
        result["label"] = labels
    return result


def _object(fields: list[str], names: dict[int, str]) -> dict[str, Any]:
    index = int(fields[0])
    values = [float(value) for value in fields[1:]]
    if index < 0 or len(values) < 4 or (len(values) > 4 and len(values) % 2) or not all(map(math.isfinite, values)):
        raise ValueError
    if len(values) == 4:
        x, y, width, height = values
        left, top = x - width / 2, y - height / 2
    else:
        xs, ys = values[0::2], values[1::2]
        left, top, width, height = min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)
    return {"class": index, "bbox": [round(value, 6) for value in (left, top, width, height)]}


def class_names(folder: str) -> dict[int, str]:
    """Class id to name from the nearest names file in ``folder`` or up to three folders above it ({} without); in
    one folder, the first of ``name_files`` that names classes."""
    for _ in range(_LEVELS + 1):
        for candidate in name_files(folder):
            found = _names(candidate)
            if found:
                return found
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return {}


def name_files(folder: str) -> list[str]:
    """The files of ``folder`` that may name a YOLO dataset's classes, in the order they are tried, so two that
    disagree always resolve the same way: ``data.yaml``, ``dataset.yaml``, ``data.yml``, any other ``.yaml`` or
    ``.yml`` file in name order (``coco8.yaml``, ``VOC.yaml``), then ``classes.txt``, then ``obj.names``."""
    try:
        present = sorted(os.listdir(folder or "."))
    except OSError:
        return []
    yamls = [name for name in present if name.lower().endswith(YAML_SUFFIXES) and name not in NAME_FILES]
    order = [name for name in NAME_FILES if name.endswith(YAML_SUFFIXES)] + yamls
    order += [name for name in NAME_FILES if not name.endswith(YAML_SUFFIXES)]
    paths = [os.path.join(folder, name) for name in order if name in present]
    return [path for path in paths if os.path.isfile(path)]


def _names(path: str) -> dict[int, str]:
    try:
        # utf-8-sig: Windows Notepad saves classes.txt with a byte-order mark, which is no part of the first name
        with open(path, encoding="utf-8-sig", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return {}
    if not path.lower().endswith(YAML_SUFFIXES):
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


def read_voc(path: str, data: bytes) -> dict[str, Any]:
    """``label`` and ``objects`` of a Pascal VOC annotation.

    Raises:
        RejectItem: ``malformed_sidecar`` for XML that is no ``<annotation>``, or an object whose box is not numbers.
    """
    from defusedxml import ElementTree
    from defusedxml.common import DefusedXmlException

    def malformed(why: str) -> RejectItem:
        return RejectItem(
            reasons.MALFORMED_SIDECAR, f"Pascal VOC annotation {path}: {why}; fix or remove the file", sidecar=path
        )

    try:
        root = ElementTree.fromstring(data)
    except (ElementTree.ParseError, DefusedXmlException) as error:
        raise malformed(f"not valid XML ({error})") from None
    if root.tag != "annotation":
        raise malformed(f"its root element is <{root.tag}>, not <annotation>")
    width, height = _number(root.findtext("size/width")), _number(root.findtext("size/height"))
    objects, labels = [], []
    for number, item in enumerate(root.iter("object"), start=1):
        name = (item.findtext("name") or "").strip()
        entry: dict[str, Any] = {"label": name}
        box = item.find("bndbox")
        if box is not None:
            corners = [_number(box.findtext(key)) for key in ("xmin", "ymin", "xmax", "ymax")]
            if any(value is None for value in corners):
                raise malformed(f"object {number} ({name!r}) has a bndbox whose corners are not all numbers")
            left, top, right, bottom = corners
            pixels = [left, top, right - left, bottom - top]
            if width and height:
                scales = (width, height, width, height)
                entry["bbox"] = [round(value / scale, 6) for value, scale in zip(pixels, scales, strict=True)]
            else:
                entry["bbox_pixels"] = pixels
        objects.append(entry)
        if name and name not in labels:
            labels.append(name)
    result: dict[str, Any] = {"objects": objects}
    if labels:
        result["label"] = labels
    return result


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and value == value and abs(value) != float("inf") else None
