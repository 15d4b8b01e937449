"""The report of a real run with planted rejections, duplicates and a hostile caption and file name."""

import base64
import csv
import html
import io
import json
import re
import shutil
import tomllib
from fnmatch import fnmatch
from html.parser import HTMLParser
from pathlib import Path
from string import Template

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import skimage.data
from PIL import Image

from pipeline.cli import main
from pipeline.report import run_info, write_report
from pipeline.report.charts import REJECTED_SERIES, distributions, histogram
from pipeline.report.galleries import rejected_galleries
from pipeline.report.histogram import Colours, histogram_svg
from pipeline.report.page import PAGE_TEMPLATE, STYLESHEET, fill, package_text
from pipeline.report.thumbnails import Thumbnails
from schemas import reasons
from schemas.config.audit import AuditConfig
from schemas.report import Report, Threshold
from tests.helpers import make_photo, run_job, write_sidecar
from tests.pipeline.planted import HOSTILE_NAME, planted_run


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return planted_run(tmp_path_factory)


@pytest.fixture(scope="module")
def report(planted) -> Report:
    return Report.model_validate_json((planted.path / "report" / "report.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def page(planted) -> str:
    return (planted.path / "report" / "index.html").read_text(encoding="utf-8")


def test_run_writes_a_report_whose_json_validates_against_the_model(planted, report):
    assert (planted.path / "report" / "index.html").stat().st_size > 10_000
    assert report.funnel.items == len(planted.ledger) == 19
    assert report.run.runner and report.run.wall_seconds is not None
    assert report.run.versions["apache-beam"]
    assert report.validation is not None and report.validation.ok and all(s.checked for s in report.validation.shards)


def test_funnel_counts_every_item_per_stage_reason_and_domain(planted, report):
    ledger = planted.ledger
    expected = {}
    for row in ledger:
        if row["status"] != "kept":
            expected[(row["stage"], row["reason"])] = expected.get((row["stage"], row["reason"]), 0) + 1
    assert {(r.stage, r.reason): r.count for r in report.funnel.reasons} == expected
    assert expected[("exact_dedup", "exact_duplicate")] == 2
    stages = [step.stage for step in report.funnel.steps]
    assert stages.index("ingest") < stages.index("normalise") < stages.index("text") < stages.index("exact_dedup")
    assert report.funnel.steps[0].entered == 19 and report.funnel.steps[-1].remaining == report.funnel.kept == 12
    for before, after in zip(report.funnel.steps, report.funnel.steps[1:], strict=False):
        assert after.entered == before.remaining
    domains = {d.domain: (d.items, d.kept) for d in report.funnel.domains}
    assert domains == {"marketing": (12, 8), "factory": (7, 4)}


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_hostile_caption_and_file_name_render_as_text(page, report):
    parser = _Tags()
    parser.feed(page)
    assert "script" not in {tag for tag, _ in parser.tags}
    assert not [(tag, name) for tag, attrs in parser.tags for name in attrs if name.startswith("on")]
    assert all(attrs["src"].startswith("data:image/jpeg;base64,") for tag, attrs in parser.tags if tag == "img")
    assert "<script" not in page.lower()
    hostile = next(item.text for item in report.galleries.kept if "<script>window.__pwned" in item.text)
    assert html.escape(hostile) in page
    assert "&lt;svg onload=window.__pwned=3&gt;.jpg" in page
    assert "Content-Security-Policy" in page and "default-src &#x27;none&#x27;" not in page
    assert "default-src 'none'" in page
    for attribute in re.findall(r'\s(?:src|href)="([^"]*)"', page):
        assert attribute.startswith(("data:image/jpeg;base64,", "#")), attribute


def test_galleries_show_kept_samples_rejections_and_duplicate_groups(report):
    kept = report.galleries.kept
    assert len(kept) == 12 and all(item.has_thumbnail and item.text for item in kept)
    assert any("<script>window.__pwned" in item.text for item in kept)
    assert any(item.source.endswith(HOSTILE_NAME) for item in kept)
    groups = {(g.stage, g.reason): g for g in report.galleries.rejected}
    assert set(groups) == {
        ("ingest", "missing_file"),
        ("normalise", "not_an_image"),
        ("normalise", "too_small"),
        ("text", "no_text"),
        ("exact_dedup", "exact_duplicate"),
        ("exact_dedup", "pixel_duplicate"),
    }
    thumbs = {item.source.rsplit("/", 1)[-1]: item.has_thumbnail for g in groups.values() for item in g.items}
    assert thumbs["broken.jpg"] is False and thumbs["extra.csv#2"] is False
    assert thumbs["silent.jpg"] and thumbs["tiny.jpg"] and thumbs["product1.jpg"] and thumbs["banner.png"]
    clusters = {c.survivor.source.rsplit("/", 1)[-1]: c for c in report.galleries.clusters}
    assert set(clusters) == {"product1-copy.jpg", "banner-again.png", "extra.csv#1"}
    copy = clusters["product1-copy.jpg"]
    assert copy.size == 2 and copy.reasons == ["exact_duplicate"] and copy.survivor.status == "kept"
    assert copy.survivor.has_thumbnail and copy.members[0].has_thumbnail
    assert copy.members[0].source.endswith("/product1.jpg")
    assert clusters["banner-again.png"].reasons == ["pixel_duplicate"]


def test_thumbnails_of_manifest_rows_are_read_through_the_manifest(planted):
    thumbs = Thumbnails(str(planted.path), run_info(str(planted.path)).config)
    manifest = next(
        s["path"] for s in run_info(str(planted.path)).config["ingest"]["inputs"] if s["path"].endswith("csv")
    )
    assert thumbs.from_source(f"{manifest}#1", None)
    assert not thumbs.from_source(f"{manifest}#2", None)
    assert thumbs.uris[f"source:{manifest}#1"].startswith("data:image/jpeg;base64,")


def test_previews_are_never_read_through_a_link_out_of_the_roots(tmp_path):
    data, outside = tmp_path / "data", tmp_path / "outside"
    data.mkdir()
    outside.mkdir()
    make_photo(64, 64, seed=1).save(outside / "secret.jpg")
    (data / "link.jpg").symlink_to(outside / "secret.jpg")
    manifest = data / "m.csv"
    manifest.write_text("path\nlink.jpg\n")
    config = {"ingest": {"inputs": [{"path": str(manifest)}]}}
    assert not Thumbnails(str(tmp_path / "out"), config).from_source(f"{manifest}#1", None)
    config["ingest"]["follow_symlinks"] = True
    assert Thumbnails(str(tmp_path / "out"), config).from_source(f"{manifest}#1", None)
    # A matched file rejected as outside_root exists under its own name, yet no preview reads it.
    row = {"key": None, "stage": "ingest", "domain": "d", "detail": "{}", "source": str(data / "link.jpg")}
    for reason, previewed in ((reasons.OUTSIDE_ROOT, False), (reasons.MISSING_FILE, True)):
        ledger = pa.Table.from_pylist([{**row, "status": "rejected", "reason": reason}])
        (gallery,) = rejected_galleries(ledger, Thumbnails(str(tmp_path / "out"), {}), seed=0)
        assert gallery.items[0].has_thumbnail is previewed, reason


def test_a_file_the_decoder_failed_on_is_not_read_again_for_a_preview(tmp_path, monkeypatch):
    """A TIFF whose codec libtiff lacks printed libtiff's complaints twice: on reading, then for the report."""
    read = []
    monkeypatch.setattr(Thumbnails, "_source_bytes", lambda self, source: read.append(source) or b"")
    row = {"key": None, "stage": "normalise", "domain": "d", "detail": "{}", "status": "rejected"}
    reasons_read = {reasons.UNSUPPORTED_IMAGE: False, reasons.DECOMPRESSION_BOMB: False, reasons.TRUNCATED: True}
    rows = [{**row, "source": str(tmp_path / f"{reason}.tif"), "reason": reason} for reason in reasons_read]
    rejected_galleries(pa.Table.from_pylist(rows), Thumbnails(str(tmp_path / "out"), {}), seed=0)
    assert sorted(read) == [str(tmp_path / f"{reason}.tif") for reason, again in reasons_read.items() if again]


def test_distributions_cover_the_kept_samples_per_domain(report):
    charts = {d.name: d for d in report.distributions}
    assert {"caption_length", "resolution", "aspect_ratio", "file_size"} <= set(charts)
    assert [name for name in charts if name.startswith("score_clip")], "the smoke CLIP score is charted"
    for chart in charts.values():
        assert {name: sum(counts) for name, counts in chart.series.items()} == {"factory": 4, "marketing": 8}
        assert len(chart.edges) == len(next(iter(chart.series.values()))) + 1
    assert charts["aspect_ratio"].stats["factory"].median == pytest.approx(0.5)


def test_clip_scores_are_charted_with_rejected_scores_and_the_threshold():
    sidecar = pa.table(
        {
            "key": ["a", "b", "c"],
            "domain": ["factory", "marketing", "marketing"],
            "scores": [json.dumps({"clip_vit_b_32_laion2b": v}) for v in (0.31, 0.35, 0.29)],
        }
    )
    detail = json.dumps({"score": 0.12, "threshold": 0.28})
    ledger = pa.table(
        {
            "status": ["rejected", "kept"],
            "stage": ["clip_filter", "write_shards"],
            "detail": [detail, "{}"],
            "domain": ["factory", "factory"],
        }
    )
    (chart,) = distributions(sidecar, ledger, {"clip_filter": {"threshold": 0.28}})
    assert chart.name == "score_clip_vit_b_32_laion2b"
    assert sum(chart.series[REJECTED_SERIES]) == 1 and sum(chart.series["marketing"]) == 2
    assert [t.value for t in chart.thresholds] == [0.28]
    svg = histogram_svg(chart, Colours(list(chart.series)))
    assert 'class="threshold"' in svg and "threshold 0.28" in svg


def test_when_the_clip_filter_rejected_every_sample_its_scores_are_still_charted_with_the_threshold():
    """An over-strict threshold left no sidecar, so no CLIP chart: the one a person needs to set it again."""
    sidecar = pa.table({"key": pa.array([], pa.string()), "domain": pa.array([], pa.string())})
    details = [json.dumps({"score": v, "threshold": 0.9, "rule": "threshold", "model": "clip_m"}) for v in (0.2, 0.3)]
    ledger = pa.table(
        {
            "status": ["rejected", "rejected", "rejected"],
            "stage": ["clip_filter", "clip_filter", "normalise"],
            "reason": ["low_clip_score", "low_clip_score", "truncated"],
            "detail": [*details, "{}"],
            "domain": ["factory", "factory", "factory"],
        }
    )
    (chart,) = distributions(sidecar, ledger, {"clip_filter": {"threshold": 0.9}})
    assert chart.name == "score_clip_m" and set(chart.series) == {REJECTED_SERIES}
    assert sum(chart.series[REJECTED_SERIES]) == 2 and [t.value for t in chart.thresholds] == [0.9]


def test_run_facts_models_smoke_warning_and_audit_come_from_the_run(report, page):
    assert [(m.section, m.name, m.precision) for m in report.run.models] == [("clip", "clip_smoke_tiny_vit", "fp32")]
    assert report.run.smoke_models and "NOT meaningful" in report.warnings[0]
    assert report.audit is not None and report.audit["items"] == {"kept": 12, "rejected": 7}
    assert "How much each filter removes from each group" in page and "Representation before and after" in page


def _copy_without_optional_parts(planted, out):
    shutil.copytree(planted.path, out)
    for folder in ("audit", "dedup", "report"):
        shutil.rmtree(out / folder, ignore_errors=True)
    (out / "_run" / "models.json").unlink()
    config = json.loads((out / "_run" / "config.json").read_text())
    config["clip"]["smoke"] = False
    (out / "_run" / "config.json").write_text(json.dumps(config))
    # as a run without those stages records its files (validate names a listed file that is gone)
    record = json.loads((out / "_run" / "files.json").read_text())
    record["files"] = [name for name in record["files"] if (out / name).exists()]
    (out / "_run" / "files.json").write_text(json.dumps(record))


def test_sections_that_do_not_exist_are_left_out(planted, tmp_path):
    out = tmp_path / "out"
    _copy_without_optional_parts(planted, out)
    report = write_report(str(out))
    page = (out / "report" / "index.html").read_text(encoding="utf-8")
    assert report.audit is None and report.warnings == [] and not report.run.smoke_models
    assert "Safety and bias audit" not in page and 'href="#audit"' not in page
    assert len(report.galleries.clusters) == 3, "exact duplicate groups still come from the ledger"


def test_dedup_cluster_files_and_audit_warnings_are_shown_escaped(planted, tmp_path):
    out = tmp_path / "out"
    _copy_without_optional_parts(planted, out)
    (out / "audit").mkdir()
    audit = {
        "warnings": [{"code": "disproportionate_exclusion", "message": "clip_filter removes line-2 <b>3.1x</b>"}],
        "exclusion": [
            {
                "stage": "clip_filter",
                "dimension": "line",
                "value": "<i>line-2</i>",
                "items": 10,
                "excluded": 6,
                "rate": 0.6,
                "overall_rate": 0.2,
                "ratio": 3.0,
            },
        ],
        "future_metric": {"a": 1, "b": 2},
    }
    (out / "audit" / "audit.json").write_text(json.dumps(audit))
    (out / "dedup").mkdir()
    kept = [row for row in planted.ledger if row["status"] == "kept"][:3]
    rows = [
        {
            "cluster_id": f"near_dedup-{kept[0]['key']}",
            "stage": "near_dedup",
            "metric": "phash_hamming",
            "size": 3,
            "key": row["key"],
            "source": row["source"],
            "survivor_key": kept[0]["key"],
            "distance": float(2 * i),
            "removed": False,
            "report_only": True,
        }
        for i, row in enumerate(kept)
    ]
    pq.write_table(pa.Table.from_pylist(rows), out / "dedup" / "near_dedup.parquet")

    report = write_report(str(out))
    page = (out / "report" / "index.html").read_text(encoding="utf-8")
    assert report.warnings == ["Audit: clip_filter removes line-2 <b>3.1x</b> [disproportionate_exclusion]"]
    assert "clip_filter removes line-2 &lt;b&gt;3.1x&lt;/b&gt;" in page and "<b>3.1x" not in page
    assert "&lt;i&gt;line-2&lt;/i&gt;" in page and 'class="flag"' in page and "future_metric" in page
    near = report.galleries.clusters[0]
    assert near.size == 3 and near.reasons == ["near_dedup"] and near.survivor.key == kept[0]["key"]
    assert near.survivor.has_thumbnail and len(near.members) == 2
    assert all("kept (report only)" in m.note and "phash_hamming" in m.note for m in near.members)
    # the members stayed in the shards: their cards say kept (the badge said dropped); other groups' still drop
    assert page.count('<span class="badge kept">kept</span>') == 2 and '<span class="badge dropped">' in page


def test_report_is_deterministic_and_the_cli_writes_it(planted, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(planted.path, out)
    shutil.rmtree(out / "report")
    assert main(["report", str(out)]) == 0
    assert "19 items, 12 kept, 7 rejected, 0 failed; 4 shards (valid)" in capsys.readouterr().out
    first = {p.name: p.read_bytes() for p in (out / "report").iterdir()}
    assert main(["report", str(out)]) == 0
    assert {p.name: p.read_bytes() for p in (out / "report").iterdir()} == first
    assert main(["report", str(tmp_path / "nothing")]) == 2


# Hostile strings, one per way untrusted text reaches the page; each must appear there only as text.
HOSTILE_DOMAIN = '<script>alert("domain")</script>'
HOSTILE_KEY = '"><img src=x onerror=alert("key")>'
HOSTILE_VALUE = "<script>alert('value')</script>"
HOSTILE_DETAIL = '"><img src=x onerror=alert("detail")>'
HOSTILE_CONFIG = "<script>alert(1)</script>"  # no quotes: the configuration is shown as JSON, which escapes them


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A real run whose domain, metadata key and value, a rejection's detail and a config value are hostile."""
    root = tmp_path_factory.mktemp("hostile")
    images = root / "images"
    images.mkdir()
    for seed in range(4):
        path = images / f"photo{seed}.jpg"
        make_photo(200, 160, seed=seed).save(path, quality=90)
        write_sidecar(path, title=f"photo {seed}", **{HOSTILE_KEY: HOSTILE_VALUE if seed % 2 else "plain"})
    manifest = root / "rows.csv"
    with manifest.open("w", newline="") as handle:
        csv.writer(handle).writerows([["path", "title"], [f"missing-{HOSTILE_DETAIL}.jpg", "gone"]])
    inputs = [{"path": str(images), "domain": HOSTILE_DOMAIN}, {"path": str(manifest), "domain": "plain"}]
    out = run_job(
        inputs,
        root / "out",
        text={"fields": ["title", HOSTILE_CONFIG]},
        audit={"slices": [*AuditConfig().slices, HOSTILE_KEY]},
        **{stage: {"enabled": False} for stage in ("faces", "documents", "eval_set")},
    )
    return out.path / "report" / "index.html"


class _Page(HTMLParser):
    """Tags with their attributes, and the text inside and outside the resolved configuration."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text, self.config_text = [], []
        self._config_depth = 0

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "details" and "config" in (dict(attrs).get("class") or ""):
            self._config_depth = 1
        elif tag == "details" and self._config_depth:
            self._config_depth += 1

    def handle_endtag(self, tag):
        if tag == "details" and self._config_depth:
            self._config_depth -= 1

    def handle_data(self, data):
        (self.config_text if self._config_depth else self.text).append(data)


def test_hostile_domains_metadata_keys_details_and_config_values_render_only_as_text(hostile):
    page = hostile.read_text(encoding="utf-8")
    parsed = _Page()
    parsed.feed(page)
    assert "script" not in {tag for tag, _ in parsed.tags}
    assert not [(tag, name) for tag, attrs in parsed.tags for name in attrs if name.startswith("on")]
    for attribute in re.findall(r'\s(?:src|href)="([^"]*)"', page):
        assert attribute.startswith(("data:image/jpeg;base64,", "#")), attribute
    text, config_text = "".join(parsed.text), "".join(parsed.config_text)
    attributes = [value or "" for _, attrs in parsed.tags for value in attrs.values()]
    for payload in (HOSTILE_DOMAIN, HOSTILE_KEY, HOSTILE_VALUE, HOSTILE_DETAIL, HOSTILE_CONFIG):
        assert payload not in page, payload
    # Each reached the page, as text where it belongs (not only in the configuration dump).
    assert HOSTILE_DOMAIN in text and HOSTILE_KEY in text and HOSTILE_VALUE in text and HOSTILE_DETAIL in text
    assert any(HOSTILE_DETAIL in value for value in attributes)  # the note's title attribute
    assert HOSTILE_CONFIG in config_text and json.dumps(HOSTILE_KEY)[1:-1] in config_text


def test_quality_measures_are_charted_per_domain_with_rejected_values_and_every_threshold():
    kept = {"a": ("factory", 0.02), "b": ("factory", 0.04), "c": ("marketing", 0.10)}
    sidecar = pa.table(
        {
            "key": list(kept),
            "domain": [domain for domain, _ in kept.values()],
            "scores": [json.dumps({"quality_highlights_clipped": value}) for _, value in kept.values()],
        }
    )
    bound = {"measure": "quality_highlights_clipped", "value": 0.31, "threshold": 0.25, "check": "overexposed"}
    bound.update(rule="deviations", deviations=4.0, group=["factory", "<b>line 2</b>"])
    absolute = {"measure": "quality_highlights_clipped", "value": 0.6, "threshold": 0.35, "check": "overexposed"}
    absolute["rule"] = "threshold"
    ledger = pa.table(
        {
            "status": ["rejected", "rejected", "rejected", "kept"],
            "stage": ["quality", "quality", "clip_filter", "write_shards"],
            "detail": [json.dumps(bound), json.dumps(absolute), json.dumps({"score": 0.1}), "{}"],
            "domain": ["factory", "marketing", "factory", "factory"],
        }
    )
    config = {
        "quality": {"overexposed": {"threshold": 0.35}, "tinted_highlights": {"enabled": False, "threshold": 0.1}}
    }
    charts = {chart.name: chart for chart in distributions(sidecar, ledger, config)}
    assert "quality_highlights_tinted" not in charts, "no sample carries it and no rejection names it"
    chart = charts["quality_highlights_clipped"]
    counts = {name: sum(values) for name, values in chart.series.items()}
    assert counts == {
        "factory": 2,
        "marketing": 1,
        "factory · rejected by quality": 1,
        "marketing · rejected by quality": 1,
    }
    assert chart.stats["factory"].median == pytest.approx(0.03)
    assert chart.stats["marketing · rejected by quality"].max == pytest.approx(0.6)
    assert sorted((t.value, t.label) for t in chart.thresholds) == [
        (0.25, "overexposed 4.0 MADs 0.25 (factory, <b>line 2</b>)"),
        (0.35, "overexposed threshold 0.35"),
    ]
    svg = histogram_svg(chart, Colours(list(chart.series)))
    assert "<b>line 2</b>" not in svg and html.escape("<b>line 2</b>") in svg
    assert "overexposed threshold 0.35" in svg
    # A label that would leave the plot right of its line is drawn left of it.
    assert 'text-anchor="end"' not in svg
    edge = Threshold(value=chart.edges[-1], label="a label long enough to leave the plot")
    assert 'text-anchor="end"' in histogram_svg(chart.model_copy(update={"thresholds": [edge]}), Colours([]))
    # Tinted highlights have a second, conditional threshold: both are drawn.
    tinted = {"threshold": 0.1, "framed_threshold": 0.045, "framed_clipped": 0.12, "framed_max_subject": 0.5}
    scored = sidecar.set_column(2, "scores", pa.array([json.dumps({"quality_highlights_tinted": 0.01})] * 3))
    charts = {chart.name: chart for chart in distributions(scored, ledger, {"quality": {"tinted_highlights": tinted}})}
    assert sorted((t.value, t.label) for t in charts["quality_highlights_tinted"].thresholds) == [
        (0.045, "tinted_highlights framed threshold 0.045 (clipped >= 0.12, subject <= 0.5)"),
        (0.1, "tinted_highlights threshold 0.1"),
    ]


def test_a_preview_read_from_the_source_hides_the_faces_its_domain_blurs(tmp_path):
    # A dropped duplicate's preview comes from its source, taken before the faces stage blurred the survivor.
    source = tmp_path / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(source)  # 512 x 512; the face lies in x 180-280, y 60-170

    def face_detail(config: dict, domain: str) -> float:
        """Variance of the Laplacian over the face in the preview (220 x 220): what a blur takes away."""
        thumbs = Thumbnails(str(tmp_path / "out"), config)
        assert thumbs.from_source(str(source), None, domain)
        data = base64.b64decode(thumbs.uris[f"source:{source}"].split(",", 1)[1])
        grey = np.asarray(Image.open(io.BytesIO(data)).convert("L"), np.float64)
        scale = grey.shape[0] / 512
        face = grey[round(60 * scale) : round(170 * scale), round(180 * scale) : round(280 * scale)]
        return float(
            np.var(face[:-2, 1:-1] + face[2:, 1:-1] + face[1:-1, :-2] + face[1:-1, 2:] - 4 * face[1:-1, 1:-1])
        )

    run = {"faces": {"default_action": "blur", "domains": {"crew": "keep", "press": "reject"}}}
    shown = face_detail(run, "crew")  # kept as it is: the preview shows what the shards hold
    assert face_detail({"faces": {"enabled": False}}, "anything") == shown
    for config, domain in ((run, "marketing"), (run, "press"), ({}, "anything")):  # {}: the default, blur
        assert face_detail(config, domain) < 0.1 * shown, (config, domain)


def test_a_count_of_characters_is_ticked_at_whole_numbers_only():
    # Every caption empty (a run that keeps images without text): one value, padded to a range of -0.5 to 0.5.
    empty = histogram("caption_length", "Caption length", [0, 0, 0], ["a", "a", "a"], unit="characters")
    assert re.findall(r'class="xtick">([^<]*)<', histogram_svg(empty, Colours(["a"]))) == ["0"]
    # Captions of 0 to 2 characters: ticks every half character would read 0, 0, 1, 2, 2; only 0, 1 and 2 remain.
    short = histogram("caption_length", "Caption length", [0, 1, 2], ["a", "a", "a"], unit="characters")
    assert re.findall(r'class="xtick">([^<]*)<', histogram_svg(short, Colours(["a"]))) == ["0", "1", "2"]


def test_a_log_scale_histogram_counts_a_zero_in_its_first_bin_and_its_statistics():
    """A flat image's sharpness of 0 was left out of the log-scale chart: 14 counted where 15 were kept."""
    chart = histogram("sharpness", "Sharpness", [0.0, 0.01, 0.1, 1.0], ["a", "a", "a", "b"], log=True)
    assert chart.stats["a"].count == 3 and chart.stats["a"].min == 0.0
    assert sum(chart.series["a"]) == 3 and chart.series["a"][0] >= 2 and chart.log_scale  # the zero: first bin
    flat = histogram("sharpness", "Sharpness", [0.0, 0.0], ["a", "a"], log=True)  # nothing positive: linear
    assert flat is not None and sum(flat.series["a"]) == 2 and not flat.log_scale


def test_the_page_skeleton_escapes_every_text_value_and_inserts_only_the_markup_given_as_such():
    template = Template('<p title="$text">$text</p>$markup')
    page = fill(template, text={"text": '<script>"x"</script>'}, markup={"markup": "<b>ok</b>"})
    escaped = "&lt;script&gt;&quot;x&quot;&lt;/script&gt;"
    assert page == f'<p title="{escaped}">{escaped}</p><b>ok</b>'
    with pytest.raises(KeyError):
        fill(template, text={"text": "x"}, markup={})
    with pytest.raises(ValueError, match="both"):
        fill(template, text={"text": "x", "markup": "y"}, markup={"markup": "z"})


def test_the_page_skeleton_and_stylesheet_are_package_data_a_wheel_ships():
    root = Path(__file__).resolve().parents[2]
    setuptools = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert "pipeline.report" in setuptools["packages"]
    patterns = setuptools["package-data"]["pipeline.report"]
    data = sorted(p.name for p in (root / "pipeline" / "report").iterdir() if p.is_file() and p.suffix != ".py")
    assert {PAGE_TEMPLATE, STYLESHEET} <= set(data)
    assert [name for name in data if not any(fnmatch(name, pattern) for pattern in patterns)] == []
    assert set(Template(package_text(PAGE_TEMPLATE)).get_identifiers()) == {
        "output",
        "version",
        "schema_version",
        "style",
        "nav",
        "sections",
    }


def test_thumbnails_of_parquet_rows_holding_their_images_come_from_the_row(tmp_path):
    shots = [Image.fromarray(skimage.data.astronaut()).resize((96, 96)), Image.fromarray(skimage.data.coffee())]
    rows = []
    for shot in shots:
        buffer = io.BytesIO()
        shot.save(buffer, format="JPEG", quality=90)
        rows.append({"image": {"bytes": buffer.getvalue(), "path": "x.jpg"}, "caption": "a"})
    hub = tmp_path / "hub.parquet"
    pq.write_table(pa.Table.from_pylist(rows), hub, row_group_size=1)
    thumbs = Thumbnails(
        str(tmp_path / "out"), {"ingest": {"inputs": [{"path": str(hub)}]}, "faces": {"enabled": False}}
    )

    assert thumbs.from_source(f"{hub}#2", None) and not thumbs.from_source(f"{hub}#3", None)
    data = base64.b64decode(thumbs.uris[f"source:{hub}#2"].split(",", 1)[1])
    preview = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.float32)
    small = np.asarray(shots[1].convert("RGB").resize(preview.shape[1::-1]), np.float32)
    assert np.abs(preview - small).mean() < 12, "the second row's image, not the first's"


def test_thumbnails_of_interleaved_documents_images_come_from_the_files_their_lines_name(tmp_path):
    """A rejected image of an MMC4 document (``FILE#IDENTITY:imageNNNN``) always showed "no preview"."""
    shots = {"hood.jpg": skimage.data.astronaut(), "oil.jpg": skimage.data.coffee()}
    for name, pixels in shots.items():
        Image.fromarray(pixels).save(tmp_path / name, quality=90)
    line = {
        "text_list": ["Open the hood.", "Check the oil level."],
        "image_info": [
            {"image_name": "hood.jpg", "matched_text_index": 0},
            {"image_name": "oil.jpg", "matched_text_index": 1},
        ],
        "url": "http://example.com/car.html#engine",  # a '#' inside the document's identity
    }
    documents = tmp_path / "docs.jsonl"
    documents.write_text("{}\n" + json.dumps(line) + "\n", encoding="utf-8")
    inputs = [{"path": str(documents), "kind": "mmc4"}]
    thumbs = Thumbnails(str(tmp_path / "out"), {"ingest": {"inputs": inputs}, "faces": {"enabled": False}})

    page = f"{documents}#http://example.com/car.html#engine"
    assert thumbs.from_source(f"{page}:image0001", None)
    assert not thumbs.from_source(f"{page}:image0002", None) and not thumbs.from_source(
        f"{documents}#http://example.com/other.html:image0000", None
    )
    data = base64.b64decode(thumbs.uris[f"source:{page}:image0001"].split(",", 1)[1])
    preview = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.float32)
    oil = np.asarray(Image.fromarray(shots["oil.jpg"]).resize(preview.shape[1::-1]), np.float32)
    assert np.abs(preview - oil).mean() < 12, "the line's second image, not its first"


def test_a_survivor_that_a_later_stage_dropped_is_not_badged_as_a_plain_survivor():
    from pipeline.report.cards import _cluster
    from schemas.report import ClusterGallery, GalleryItem

    member = GalleryItem(key="bb", source="/in/b.jpg", status="rejected")
    for status, badge in (("kept", "survivor"), ("rejected", "survivor dropped")):
        survivor = GalleryItem(key="aa", source="/in/a.jpg", status=status)
        page = _cluster(
            ClusterGallery(cluster_id="c", size=2, reasons=["exact_dedup"], survivor=survivor, members=[member]), {}
        )
        assert f'<span class="badge {badge}">{badge}</span>' in page
