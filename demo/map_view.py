"""The Map tab: the served map page in a frame, and the clusters and outliers panels beside it.

The map itself is mmrag's page (mmrag/explore/page.py at /map/view): plotly draws it, hover shows
each item's thumbnail or snippet, a click opens the item, and the current results are ringed.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from urllib.parse import urlencode

from mmrag.explore import find_clusters, find_outliers
from mmrag.storage.collection import Collection

MAP_HEIGHT = 640  # pixels: the whole map and its legend without scrolling on a laptop screen
MAX_RINGED = 200  # results ringed on the map (the results slider stops at 50)
OUTLIERS = 20


def frame(highlight: Sequence[int] = (), colour: str = "modality") -> str:
    """An iframe of the map page; `highlight` ids are ringed, the query's star sits among them."""
    query = urlencode(
        {"highlight": ",".join(str(int(i)) for i in list(highlight)[:MAX_RINGED]), "colour": colour}
    )
    return (
        f'<iframe id="mm-map-frame" src="/map/view?{query}" title="map of the collection" loading="lazy" '
        f'style="width:100%;height:{MAP_HEIGHT}px;border:1px solid #e4e4e7;border-radius:8px"></iframe>'
    )


def clusters_html(path, k: str) -> str:
    """Each cluster with its label, size and typical members, linked to their content."""
    with Collection.open(path) as coll:
        res = find_clusters(coll, None, (k or "auto").strip(), 4)
    sil = f", silhouette {res.silhouette:.3f}" if res.silhouette is not None else ""
    rows = []
    for c in res.clusters:
        members = ", ".join(
            f'<a href="/items/{m.id}/content" target="_blank" rel="noopener">{html.escape(m.label)}</a>'
            for m in c.examples
        )
        rows.append(
            f'<li data-cluster="{c.id}"><b>{c.id}. {html.escape(c.label)}</b> '
            f'<span class="mm-count">{c.size}</span><br><span class="mm-lang">{members}</span></li>'
        )
    how = " (k chosen automatically)" if res.auto else ""
    return (
        f'<div class="mm-clusters"><p>{res.k} clusters{how} of {len(res.ids)} items{sil}; colour the map '
        f'by <i>cluster</i> to see them.</p><ol style="list-style:none;padding-left:0">{"".join(rows)}</ol></div>'
    )


def outliers_html(path, limit: int = OUTLIERS) -> str:
    """The items least like their neighbours, most isolated first, linked to their content."""
    with Collection.open(path) as coll:
        found = find_outliers(coll, None, limit)
    if not found:
        return '<div class="mm-empty">No items yet.</div>'
    rows = "".join(
        f'<li data-id="{o.id}">{o.score:.3f} · {html.escape(o.modality)} · '
        f'<a href="/items/{o.id}/content" target="_blank" rel="noopener">{html.escape(o.label)}</a> '
        f'<span class="mm-path">{html.escape(o.source)}</span></li>'
        for o in found
    )
    return (
        '<div class="mm-outliers"><p>The items least like their 10 nearest neighbours (1 - mean cosine), '
        f"most isolated first: candidates for cleaning.</p><ol>{rows}</ol></div>"
    )
