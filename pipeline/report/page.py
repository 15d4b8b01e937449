"""Render a ``Report`` as one self-contained HTML file: inline CSS, inline SVG charts, ``data:`` thumbnails, no script.

The page is ``page.html`` (the skeleton: head, Content-Security-Policy, header, navigation, footer) with
``report.css`` inlined and the sections of ``pipeline.report.sections``, ``pipeline.report.cards`` and
``pipeline.report.audit`` in between; both files are package data of ``pipeline.report``, filled with
``string.Template``. Everything shown comes from untrusted input (file names, captions, metadata, audit values) and
goes through ``escape`` (``html.escape`` with quotes) before it reaches the page: ``fill`` escapes every text value it
puts into the skeleton, and the sections escape their own. The Content-Security-Policy allows no script, no network
and only ``data:`` images, so a missed escape still could not run code or fetch anything.

Rendering is a pure function of the ``Report`` and its thumbnails: the same report gives the same bytes.
"""

import functools
from collections.abc import Mapping
from importlib import resources
from string import Template
from typing import Any

from pipeline.report.audit import render_audit
from pipeline.report.cards import duplicates_section, kept_section, rejected_section
from pipeline.report.format import escape, section
from pipeline.report.histogram import Colours
from pipeline.report.sections import (
    distributions_section,
    funnel_section,
    run_section,
    shards_section,
    summary_section,
)
from schemas.report import Report

PACKAGE = "pipeline.report"
PAGE_TEMPLATE = "page.html"
STYLESHEET = "report.css"


@functools.cache
def package_text(name: str) -> str:
    """The text of one package data file of ``pipeline.report`` (UTF-8), read once per process."""
    return resources.files(PACKAGE).joinpath(name).read_text(encoding="utf-8")


def fill(template: Template, *, text: Mapping[str, Any], markup: Mapping[str, str]) -> str:
    """``template`` with every placeholder filled: ``text`` values escaped, ``markup`` values inserted as they are.

    Args:
        template: A ``string.Template`` of HTML.
        text: Plain values (anything ``str()`` takes); each is escaped for elements and quoted attributes alike.
        markup: HTML the caller built and escaped itself (sections, the navigation, the stylesheet).

    Raises:
        KeyError: A placeholder of ``template`` is in neither mapping.
        ValueError: A name is in both, or ``template`` holds a ``$`` that is no placeholder.
    """
    both = set(text) & set(markup)
    if both:
        raise ValueError(f"placeholders given both as text and as markup: {sorted(both)}")
    return template.substitute({name: escape(value) for name, value in text.items()}, **markup)


def render(report: Report, thumbnails: dict[str, str]) -> str:
    """The whole page.

    Args:
        report: The report to show.
        thumbnails: ``data:image/jpeg;base64`` URIs by gallery item id (``kept:<key>``, ``source:<source>``); an item
            without one shows "no preview".

    Returns:
        The HTML document, ending in a newline.
    """
    domains = [d.domain or "unknown" for d in report.funnel.domains]
    for dist in report.distributions:
        domains.extend(dist.series)
    colours = Colours(domains)
    sections = [
        _warnings(report),
        summary_section(report),
        funnel_section(report, colours),
        distributions_section(report, colours),
        kept_section(report, thumbnails),
        rejected_section(report, thumbnails),
        duplicates_section(report, thumbnails),
        _audit(report),
        shards_section(report),
        run_section(report),
    ]
    nav = [
        ("summary", "Summary"),
        ("funnel", "Funnel"),
        ("distributions", "Distributions"),
        ("kept", "Kept"),
        ("rejected", "Rejected"),
        ("duplicates", "Duplicates"),
        *([("audit", "Audit")] if report.audit is not None else []),
        ("shards", "Shards"),
        ("run", "Run"),
    ]
    return fill(
        Template(package_text(PAGE_TEMPLATE)),
        text={
            "output": report.run.output,
            "version": report.run.versions.get("unishard", ""),
            "schema_version": report.schema_version,
        },
        markup={
            "style": package_text(STYLESHEET),
            "nav": "".join(f'<a href="#{ident}">{escape(title)}</a>' for ident, title in nav),
            "sections": "".join(sections),
        },
    )


def _warnings(report: Report) -> str:
    if not report.warnings:
        return ""
    items = "".join(f"<li>{escape(w)}</li>" for w in report.warnings)
    return f'<div class="warnings" role="alert"><strong>Before you train on this</strong><ul>{items}</ul></div>'


def _audit(report: Report) -> str:
    if report.audit is None:
        return ""
    return section("audit", "Safety and bias audit", render_audit(report.audit), "From audit/audit.json.")
