"""Document ids: the id field first, then the first grouping rule whose domain matches and whose fields are set."""

from PIL import Image

from schemas.config.documents import DocumentsConfig, GroupRule
from tests.transforms.model_samples import make_sample
from transforms.document_ids import document_id, stamp


def test_document_ids_come_from_the_id_field_then_the_grouping_rules():
    config = DocumentsConfig(groups=[GroupRule(fields=["sku"], domain="marketing"), GroupRule(fields=["record"])])
    assert document_id({"doc_id": 7, "sku": "A"}, "marketing", config) == ("7", "doc_id")
    assert document_id({"sku": "A"}, "marketing", config) == ("A", "group:sku")
    assert document_id({"sku": "A"}, "factory", config) is None
    assert document_id({"record": "R1"}, "factory", config) == ("R1", "group:record")


def test_a_rule_needs_every_field_set_and_joins_values_after_its_prefix():
    config = DocumentsConfig(groups=[GroupRule(fields=["plant", "record"], prefix="inspection:")])
    assert document_id({"plant": "P1", "record": "R1"}, "factory", config) == (
        "inspection:P1+R1",
        "group:plant+record",
    )
    assert document_id({"plant": "P1", "record": ""}, "factory", config) is None
    assert document_id({"doc_id": None, "plant": "P1", "record": 2}, "factory", config)[0] == "inspection:P1+2"


def test_stamp_sets_the_document_id_of_a_member_and_leaves_others_unchanged():
    config = DocumentsConfig()
    member = make_sample(Image.new("RGB", (8, 8)), "a", metadata={"doc_id": "D1"})
    loose = make_sample(Image.new("RGB", (8, 8)), "b", metadata={"sku": "A"})
    assert stamp(member, config).document_id == "D1"
    assert stamp(loose, config) is loose


def test_an_id_with_spaces_around_it_or_in_decomposed_unicode_names_the_same_document():
    """``"SKU-1 "`` and ``"SKU-1"``, ``Café`` in NFC and NFD (as macOS writes names): four thin documents, all
    dropped."""
    config = DocumentsConfig(groups=[GroupRule(fields=["record"])])
    assert document_id({"doc_id": "SKU-1 "}, "d", config) == document_id({"doc_id": "SKU-1"}, "d", config)
    nfc, nfd = "Caf\u00e9", "Cafe\u0301"
    assert document_id({"doc_id": nfd}, "d", config) == (nfc, "doc_id")
    assert document_id({"record": f" {nfd}"}, "d", config)[0] == document_id({"record": nfc}, "d", config)[0]
