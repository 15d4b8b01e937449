"""COCO annotation files as manifests: one row per entry of ``images``, its annotations joined in.

What annotation tools export (CVAT, Label Studio, Roboflow, the COCO captions and instances files): ``images``
(``id``, ``file_name``, sizes), ``annotations`` (``image_id`` with a ``caption``, or a ``category_id`` and a
``bbox``) and ``categories`` (``id``, ``name``). Each image becomes a row holding ``file_name``, the image's other
fields (``id`` as ``coco_id``), ``caption`` (its first caption by annotation id) and ``captions`` (all of them, when
more than one), ``label`` (the names of its categories, in category id order) and ``objects`` (each box as
``{"label", "bbox"}``, ``bbox`` ``[x, y, width, height]`` as shares of the image when its entry gives ``width`` and
``height``, so they hold through normalise's resize, else ``bbox_pixels``, which normalise turns into shares of
the decoded image; normalise clips each box to the image, ``transforms._annotation_files.boxes_in_image``). A
category's name is text in both. Annotations whose ``image_id`` names no image (or is missing or null) are one
error row per such id, so text that reaches no image is in the ledger; an entry with no ``id``, or an ``id`` an
earlier entry has, is an error row in its place (annotations could not tell it from another image); annotations
whose ``bbox`` is not 4 numbers are one error row naming their ids, their images read without those boxes, as an
unknown ``category_id``'s boxes are left out and named.
"""

import math
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from schemas.records.values import BOXES_FROM

_SHOWN = 5  # annotation ids an error row names before "..."


def is_coco(loaded: Any) -> bool:
    """Whether a loaded ``.json`` file is a COCO annotation file: an object with ``images`` and ``annotations``."""
    if not isinstance(loaded, dict):
        return False
    return isinstance(loaded.get("images"), list) and isinstance(loaded.get("annotations"), list)


def coco_rows(loaded: dict[str, Any], path: str = "") -> Iterator[dict[str, Any]]:
    """The manifest rows of a COCO file (at ``path``), in ``images`` order, an ``__error__`` row in place of an entry
    with no file name, no ``id`` or an ``id`` an earlier entry has; then one ``__error__`` row per unknown
    ``image_id`` (a missing or null one included), per unknown ``category_id``, and one naming the annotations whose
    ``bbox`` is not 4 numbers (their boxes are left out)."""
    categories = {
        _key(category.get("id")): _name(category.get("name"))
        for category in loaded.get("categories") or []
        if isinstance(category, dict)
    }
    by_image: dict[Any, list[dict]] = defaultdict(list)
    unnamed: dict[Any, int] = defaultdict(int)
    unboxed: list[Any] = []
    for annotation in loaded["annotations"]:
        if isinstance(annotation, dict):
            by_image[_key(annotation.get("image_id"))].append(annotation)
            if "category_id" in annotation and _key(annotation["category_id"]) not in categories:
                unnamed[_key(annotation["category_id"])] += 1
            if annotation.get("bbox") not in (None, []) and not _is_box(annotation["bbox"]):
                unboxed.append(annotation.get("id"))
    first: dict[Any, tuple[int, str]] = {}  # image id -> the number and file name of the entry that has it
    for number, image in enumerate(loaded["images"]):
        if not isinstance(image, dict) or not image.get("file_name"):
            yield {"__error__": f"images[{number}] has no file_name, so no image is read for it"}
            continue
        entry = f"images[{number}] ({image['file_name']!r})"
        image_id = _key(image.get("id"))
        if image_id is None:
            yield {
                "__error__": f"{entry} has no id, so no annotation can name it (an annotation's image_id is its "
                "image's id): give the entry the id its annotations name"
            }
            continue
        if image_id in first:
            earlier, name = first[image_id]
            yield {
                "__error__": f"{entry} has id {image_id!r}, as images[{earlier}] ({name!r}) has: the annotations "
                f"naming image_id {image_id!r} cannot tell the two apart and are given to images[{earlier}] only "
                "(files merged from two exports?); give each entry its own id and its annotations that image_id"
            }
            continue
        first[image_id] = (number, image["file_name"])
        annotations = sorted(by_image.get(image_id, []), key=lambda item: _order(item.get("id")))
        yield _row(image, annotations, categories, path)
    for image_id in sorted(by_image.keys() - first.keys(), key=_order):
        count = len(by_image[image_id])
        if image_id is None:
            why = "have no image_id (missing or null): their text reaches no image; give each its image's id"
        else:
            why = f"name image_id {image_id!r}, which no entry of images has: their text reaches no image; add the "
            why += "image's entry"
        yield {"__error__": f"{count} annotation(s) {why} or remove them"}
    for category_id in sorted(unnamed, key=_order):
        yield {
            "__error__": f"{unnamed[category_id]} annotation(s) name category_id {category_id!r}, which no entry of "
            "categories has: their images get no label from them; add the category or fix the annotations"
        }
    if unboxed:
        ids = ", ".join(repr(value) for value in unboxed[:_SHOWN]) + (", ..." if len(unboxed) > _SHOWN else "")
        named = f"id {ids}" if len(unboxed) == 1 else f"ids {ids}"
        yield {
            "__error__": f"{len(unboxed)} annotation(s) ({named}) have a bbox that is not 4 numbers [x, y, width, "
            "height] in pixels: their images are read without those boxes; fix the bbox values"
        }


def _row(image: dict[str, Any], annotations: list[dict], categories: dict[Any, Any], path: str) -> dict[str, Any]:
    row = {key: value for key, value in image.items() if key != "id"}
    if "id" in image:
        row["coco_id"] = image["id"]
    captions = [item["caption"] for item in annotations if isinstance(item.get("caption"), str) and item["caption"]]
    if captions:
        row["caption"] = captions[0]
        if len(captions) > 1:
            row["captions"] = captions
    used = {_key(item.get("category_id")) for item in annotations} & categories.keys()
    used = sorted(used, key=_order)
    names = [categories[category] for category in used if categories[category] is not None]
    if names:
        row["label"] = names
    size = [image.get("width"), image.get("height")]
    shares = all(isinstance(value, int | float) and value > 0 for value in size)
    objects = [
        {"label": categories.get(_key(item.get("category_id"))), **_box(item["bbox"], size if shares else None)}
        for item in annotations
        if _is_box(item.get("bbox"))
        # an unknown category's box is left out, and named by coco_rows' error row
        and ("category_id" not in item or _key(item["category_id"]) in categories)
    ]
    if objects:
        row["objects"] = objects
        row[BOXES_FROM] = path  # normalise clips them to the image, noting it
    return row


def _box(pixels: list, size: list | None) -> dict[str, list]:
    """A COCO box as shares of the image (``bbox``) when its size is known, else in pixels (``bbox_pixels``)."""
    if size is None:
        return {"bbox_pixels": pixels}
    scales = (size[0], size[1], size[0], size[1])
    return {"bbox": [round(value / scale, 6) for value, scale in zip(pixels, scales, strict=True)]}


def _is_box(value: Any) -> bool:
    """Whether ``value`` is a COCO ``bbox``: 4 finite numbers."""
    return (
        isinstance(value, list)
        and len(value) == 4
        and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    )


def _name(value: Any) -> str | None:
    """A category's name as text (a name exported as a number, ``7``, is ``"7"`` in ``label`` and ``objects``)."""
    return None if value is None else str(value)


def _key(value: Any) -> Any:
    """An id as a dict key: ids are numbers or strings, and a list (never an id) would not hash."""
    return value if isinstance(value, int | float | str) or value is None else repr(value)


def _order(value: Any) -> tuple[int, Any]:
    """Sort key for ids that may mix numbers, strings and None."""
    if isinstance(value, bool) or value is None:
        return (2, str(value))
    return (0, value) if isinstance(value, int | float) else (1, str(value))
