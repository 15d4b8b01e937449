"""The gallery sections of the page: kept samples, rejected and failed items per reason, duplicate groups.

Each item is a card: its thumbnail (a ``data:image/jpeg;base64`` URI from ``thumbnails``, looked up by ``kept:<key>``
for a kept item and ``source:<source>`` otherwise; any other URI is dropped, so a card can never load anything), its
text, note, domain, size, key and file name. Every one of those comes from the input and is escaped.
"""

import posixpath

from pipeline.report.format import escape, integer, plural, section
from schemas import reasons
from schemas.report import ClusterGallery, GalleryItem, Report


def _thumb(item: GalleryItem, thumbnails: dict[str, str]) -> str:
    uri = None
    if item.has_thumbnail:
        uri = thumbnails.get(f"kept:{item.key}") if item.status == reasons.KEPT else None
        uri = uri or thumbnails.get(f"source:{item.source}")
    if uri and uri.startswith("data:image/jpeg;base64,"):
        return f'<img src="{uri}" alt="">'
    return '<div class="noimg">no preview</div>'


def _card(item: GalleryItem, thumbnails: dict[str, str], badge: str = "") -> str:
    name = posixpath.basename(item.source.rstrip("/")) or item.source
    size = f"{item.width}×{item.height}" if item.width and item.height else ""
    text = f'<p class="caption" title="{escape(item.text)}">{escape(item.text)}</p>' if item.text else ""
    note = f'<p class="note" title="{escape(item.note)}">{escape(item.note)}</p>' if item.note else ""
    domain = f'<span class="pill">{escape(item.domain)}</span>' if item.domain else ""
    badge_html = f'<span class="badge {escape(badge)}">{escape(badge)}</span>' if badge else ""
    key = f'<code title="{escape(item.key)}">{escape((item.key or "")[:12])}</code>' if item.key else ""
    return (
        f'<figure class="item">{badge_html}<div class="thumb">{_thumb(item, thumbnails)}</div><figcaption>{text}{note}'
        f'<p class="meta">{domain}<span>{escape(size)}</span>{key}</p>'
        f'<p class="src" title="{escape(item.source)}">{escape(name)}</p></figcaption></figure>'
    )


def kept_section(report: Report, thumbnails: dict[str, str]) -> str:
    """The kept samples' gallery: each card with the text written to its shard."""
    items = report.galleries.kept
    if not items:
        return section("kept", "Kept samples", '<p class="empty">No kept samples.</p>')
    cards = "".join(_card(item, thumbnails) for item in items)
    return section(
        "kept",
        "Kept samples",
        f'<div class="gallery">{cards}</div>',
        f"A fixed pseudo-random sample of {len(items)} of {integer(report.funnel.kept)} kept items, with the text "
        "written to their shards.",
    )


def rejected_section(report: Report, thumbnails: dict[str, str]) -> str:
    """One open group per (status, stage, reason) with its count and the cards chosen for it, in dataflow order."""
    groups = report.galleries.rejected
    if not groups:
        return section("rejected", "Rejected and failed items", '<p class="empty">Nothing was dropped.</p>')
    body = (
        '<div class="groups">'
        + "".join(
            f'<details class="group" open><summary><span class="status {escape(g.status)}">{escape(g.status)}</span> '
            f"<b>{escape(g.stage)}</b> · <code>{escape(g.reason or '–')}</code> "
            f'<span class="count">{plural(g.count, "item")}'
            f"{' · showing ' + str(len(g.items)) if len(g.items) < g.count else ''}</span></summary>"
            f'<div class="gallery">{"".join(_card(item, thumbnails) for item in g.items)}</div></details>'
            for g in groups
        )
        + "</div>"
    )
    return section(
        "rejected",
        "Rejected and failed items",
        body,
        "Previews are read back from the sources while they are still readable, their faces blurred where the run "
        "blurs or rejects faces; images rejected by a safety stage are never shown. With quality.report_only, the "
        "samples a quality rule flags are kept and shown here as flagged, from the shards.",
    )


def _cluster(cluster: ClusterGallery, thumbnails: dict[str, str]) -> str:
    # A member the run kept too: report-only mode, or a colour variant that keep_distinct keeps.
    members = "".join(
        _card(member, thumbnails, "kept" if member.status == reasons.KEPT else "dropped") for member in cluster.members
    )
    more = cluster.size - 1 - len(cluster.members)
    more_html = f'<div class="more">+{integer(more)} more</div>' if more > 0 else ""
    why = ", ".join(cluster.reasons)
    # The survivor of one dedup stage can be dropped by a later one (another stage's duplicate, a filter).
    survivor = "survivor" if cluster.survivor.status in ("", reasons.KEPT) else "survivor dropped"
    return (
        f'<div class="cluster"><div class="chead"><b>{integer(cluster.size)} images</b> · {escape(why)}'
        f' <code title="{escape(cluster.cluster_id)}">{escape(cluster.cluster_id[:16])}</code></div>'
        f'<div class="crow">{_card(cluster.survivor, thumbnails, survivor)}<div class="arrow">⟵</div>'
        f"{members}{more_html}</div></div>"
    )


def duplicates_section(report: Report, thumbnails: dict[str, str]) -> str:
    """The largest duplicate groups: each survivor's card, then its members' cards and how many more there are."""
    clusters = report.galleries.clusters
    if not clusters:
        return section("duplicates", "Duplicate groups", '<p class="empty">No duplicate groups were found.</p>')
    body = '<div class="clusters">' + "".join(_cluster(cluster, thumbnails) for cluster in clusters) + "</div>"
    return section(
        "duplicates",
        "Duplicate groups",
        body,
        f"The {len(clusters)} largest of {integer(report.galleries.cluster_count)} groups, each with the survivor "
        "kept in place of the members marked dropped (members marked kept stay too: report-only mode, or values of "
        "a keep_distinct field that differ).",
    )
