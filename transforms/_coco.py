"""COCO annotation files as manifests: one row per entry of ``images``, its annotations joined in.

What annotation tools export (CVAT, Label Studio, Roboflow, the COCO captions and instances files): ``images``
(``id``, ``file_name``, sizes), ``annotations`` (``image_id`` with a ``caption``, or a ``category_id`` and a
``bbox``) and ``categories`` (``id``, ``name``). Each image becomes a row holding ``file_name``, the image's other
fields (``id`` as ``coco_id``), ``caption`` (its first caption by annotation id) and ``captions`` (all of them, when
more than one), ``label`` (the names of its categories, in category id order) and ``objects`` (each box as
``{"label", "bbox"}``, ``bbox`` ``[x, y, width, height]`` as shares of the image when its entry gives ``width`` and
``height``, so they hold through normalise's resize, else ``bbox_pixels``, which normalise turns into shares of
the decoded image). Annotations whose ``image_id`` names no
image are one error row per such id, so text that reaches no image is in the ledger.
"""

from collections import defaultdict
from collections.abc import Iterator
from typing import Any


def is_coco(loaded: Any) -> bool:
    """Whether a loaded ``.json`` file is a COCO annotation file: an object with ``images`` and ``annotations``."""
    if not isinstance(loaded, dict):
        return False
    return isinstance(loaded.get("images"), list) and isinstance(loaded.get("annotations"), list)


def coco_rows(loaded: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The manifest rows of a COCO file, in ``images`` order, then one ``__error__`` row per unknown ``image_id`` and
    per unknown ``category_id``."""
    categories = {
        _key(category.get("id")): category.get("name")
        for category in loaded.get("categories") or []
        if isinstance(category, dict)
    }
    by_image: dict[Any, list[dict]] = defaultdict(list)
    unnamed: dict[Any, int] = defaultdict(int)
    for annotation in loaded["annotations"]:
        if isinstance(annotation, dict):
            by_image[_key(annotation.get("image_id"))].append(annotation)
            if "category_id" in annotation and _key(annotation["category_id"]) not in categories:
                unnamed[_key(annotation["category_id"])] += 1
    known = set()
    for number, image in enumerate(loaded["images"]):
        if not isinstance(image, dict) or not image.get("file_name"):
            yield {"__error__": f"images[{number}] has no file_name, so no image is read for it"}
            continue
        known.add(_key(image.get("id")))
        annotations = sorted(by_image.get(_key(image.get("id")), []), key=lambda item: _order(item.get("id")))
        yield _row(image, annotations, categories)
    for image_id in sorted(by_image.keys() - known, key=_order):
        count = len(by_image[image_id])
        yield {
            "__error__": f"{count} annotation(s) name image_id {image_id!r}, which no entry of images has: their text "
            "reaches no image; add the image's entry or remove them"
        }
    for category_id in sorted(unnamed, key=_order):
        yield {
            "__error__": f"{unnamed[category_id]} annotation(s) name category_id {category_id!r}, which no entry of "
            "categories has: their images get no label from them; add the category or fix the annotations"
        }


def _row(image: dict[str, Any], annotations: list[dict], categories: dict[Any, Any]) -> dict[str, Any]:
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
    names = [str(categories[category]) for category in used if categories[category] is not None]
    if names:
        row["label"] = names
    size = [image.get("width"), image.get("height")]
    shares = all(isinstance(value, int | float) and value > 0 for value in size)
    objects = [
        {"label": categories.get(_key(item.get("category_id"))), **_box(item["bbox"], size if shares else None)}
        for item in annotations
        if isinstance(item.get("bbox"), list)
        and len(item["bbox"]) == 4
        # an unknown category's box is left out, and named by coco_rows' error row
        and ("category_id" not in item or _key(item["category_id"]) in categories)
    ]
    if objects:
        row["objects"] = objects
    return row


def _box(pixels: list, size: list | None) -> dict[str, list]:
    """A COCO box as shares of the image (``bbox``) when its size is known, else in pixels (``bbox_pixels``)."""
    if size is None or not all(isinstance(value, int | float) for value in pixels):
        return {"bbox_pixels": pixels}
    scales = (size[0], size[1], size[0], size[1])
    return {"bbox": [round(value / scale, 6) for value, scale in zip(pixels, scales, strict=True)]}


def _key(value: Any) -> Any:
    """An id as a dict key: ids are numbers or strings, and a list (never an id) would not hash."""
    return value if isinstance(value, int | float | str) or value is None else repr(value)


def _order(value: Any) -> tuple[int, Any]:
    """Sort key for ids that may mix numbers, strings and None."""
    if isinstance(value, bool) or value is None:
        return (2, str(value))
    return (0, value) if isinstance(value, int | float) else (1, str(value))
