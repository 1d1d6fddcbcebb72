"""The demo UI (Gradio Blocks) over one collection, built only on mmrag's public API.

`mount(app, service)` puts it at `/` of the FastAPI app from `mmrag.http.server.create_app`; the
REST routes registered before it keep their paths.
"""

from __future__ import annotations

import html
import os
import secrets

import gradio as gr
from PIL import Image

from encoders.base import EncoderError
from mmrag.dupes import DEFAULT_THRESHOLDS
from mmrag.errors import MMRagError
from mmrag.http.security import may_write
from mmrag.http.service import Service
from mmrag.rag import DEFAULT_K, Answer

from . import filters_ui, map_view, render

INTRO = (
    "# mmrag\n"
    "Search **images**, **code** and **text** with one query: describe what you want, paste a snippet, "
    "or drop in a picture."
)
HINT = "Type a query or upload an image, then press **Search**."
EMPTY = "This collection is empty: open the **Index** tab and add a folder."
THUMB = 256  # gallery thumbnail edge in pixels
DEFAULT_RESULTS = 12  # the Results slider's start, and what an API call without `k` gets

CSS = """
.gradio-container {max-width: 1180px !important; margin: auto;}
#mm-banner {background: #fff4e5; border: 1px solid #f0b35a; border-radius: 8px; padding: 4px 14px;}
#mm-status {min-height: 1.6em;}
#mm-status.mm-error, .mm-error {color: #b42318;}
.mm-section h3 {margin: 14px 0 8px; font-size: 1.05em;}
.mm-count {background: #eef; color: #334; border-radius: 10px; padding: 1px 8px; font-size: .8em; margin-left: 4px;}
.mm-card {border: 1px solid #e4e4e7; border-radius: 8px; margin: 0 0 10px; overflow: hidden; background: #fff;
          min-width: 0; max-width: 100%;}
#mm-code, #mm-text {min-width: 0;}  /* a flex item as wide as its longest line would push the card past its column */
.mm-card .mm-pre {max-width: 100%;}
.mm-card pre {white-space: pre-wrap !important; overflow-wrap: anywhere;}  /* a long line wraps: all of it shows */
.mm-head {display: flex; gap: 10px; align-items: baseline; padding: 6px 10px; background: #f7f7f8;
          border-bottom: 1px solid #ececef; font-size: .9em; flex-wrap: wrap;}
.mm-rank {color: #888; min-width: 1.2em;}
.mm-path {font-family: ui-monospace, monospace; color: #333;}
.mm-symbol {font-family: ui-monospace, monospace; font-weight: 600; color: #7a3e00;}
.mm-lang {color: #666; font-size: .85em;}
.mm-title {font-weight: 600;}
.mm-score {margin-left: auto; color: #555; font-variant-numeric: tabular-nums;}
.mm-card .mm-pre, .mm-card pre {margin: 0; padding: 8px 12px; font-size: 12.5px; line-height: 1.45;
          overflow-x: auto; background: #fcfcfc !important;}
.mm-passage {margin: 0; padding: 8px 12px; line-height: 1.5;}
.mm-passage mark {background: #fde68a; padding: 0 1px;}
.mm-cites {margin: 4px 0 8px; padding-left: 0; list-style: none;}
.mm-cites li {padding: 4px 0; border-bottom: 1px solid #f0f0f2;}
.mm-cites .mm-n {color: #555; font-variant-numeric: tabular-nums; margin-right: 2px;}
.mm-cites a.mm-path {color: #1d4ed8; text-decoration: underline;}
.mm-cites .mm-symbol {margin-left: 8px;}
#mm-answer {min-height: 2em; font-size: 1.02em;}
.mm-note {background: #eef4ff; border: 1px solid #9db7f0; border-radius: 8px; padding: 10px 14px; line-height: 1.55;}
.mm-context summary {cursor: pointer; color: #333; margin: 10px 0 6px;}
.mm-context pre {max-height: 420px; overflow: auto; white-space: pre-wrap; border: 1px solid #e4e4e7; border-radius: 8px;}
.mm-empty {color: #666; padding: 18px; text-align: center; border: 1px dashed #ccc; border-radius: 8px;}
footer > .divider:last-child {display: none;}  /* Gradio's separator after the only footer link */
"""


def _label_of(row: dict) -> str:
    title = row.get("symbol") or row.get("title") or os.path.basename(row.get("source", ""))
    return title or f"item {row.get('id')}"


def build(svc: Service, api_key: str | None = None) -> gr.Blocks:
    def roots() -> list[str]:
        return svc.stats()["roots"]

    def gallery_items(hits) -> list[tuple[Image.Image, str]]:
        out, r = [], roots()
        for h in hits:
            try:
                _, path = svc.content_file(h.id)
                with Image.open(path) as img:
                    img.thumbnail((THUMB, THUMB))
                    thumb = img.convert("RGB")
            except (OSError, LookupError, PermissionError):
                thumb = Image.new("RGB", (THUMB, THUMB), "#eeeeee")  # a gap in the grid, not a crash
            out.append((thumb, render.gallery_caption(h, r)))
        return out

    def show(result, query: str, what: str, focus: int | None = None):
        """The outputs of a search: status, gallery, code and text cards, More like this, map, image ids."""
        hits = result.hits
        by = {m: [h for h in hits if h.modality == m] for m in ("image", "code", "text")}
        r = roots()
        choices = [(f"{render.ICONS[h.modality]} {_hit_label(h, r)}", str(h.id)) for h in hits]
        status = (
            render.timing_line(len(hits), result.timings, result.routes, what) if hits else _no_results(query)
        )
        ring = [h.id for h in hits] + ([focus] if focus is not None else [])
        return (
            status,
            gr.Gallery(
                value=gallery_items(by["image"]),
                visible=bool(by["image"]),
                label=f"Images ({len(by['image'])})",
            ),
            render.section("Code", len(by["code"]), render.code_cards(by["code"], r)),
            render.section("Text", len(by["text"]), render.text_cards(by["text"], r, query)),
            gr.Dropdown(choices=choices, value=None, interactive=bool(choices)),
            gr.Row(visible=bool(choices)),  # More like this: only beside results to pick from
            map_view.frame(ring),
            [h.id for h in by["image"]],
        )

    def failed(message: str, more_row=None):
        return (
            f'<span class="mm-error">⚠️ {html.escape(message)}</span>',
            gr.Gallery(value=[], visible=False),
            "",
            "",
            gr.Dropdown(choices=[], value=None) if more_row is None else gr.Dropdown(),
            gr.Row(visible=False) if more_row is None else more_row,
            map_view.frame(),
            [],
        )

    def search(
        query: str,
        image: str | None = None,
        modalities: list[str] | None = None,
        k: float | None = None,
        language: str | None = None,
        date_field: str | None = None,
        date_from: str | None = None,
        date_to: str | None = None,
        folder: str | None = None,
    ):
        """Search images, code and text with words, a code snippet or an image; the filters are those of
        `mmrag search --where` (language, a date range of `taken` or `mtime`, a folder or glob)."""
        query = query or ""
        if not query.strip() and not image:
            return failed("Empty query: type some words or a code snippet, or upload an image.")
        if svc.stats()["items"] == 0:
            return failed("The collection is empty: open the Index tab and add a folder first.")
        try:
            # the Filters controls, as `--where` would say it
            where = filters_ui.where_from(language, date_field, date_from or "", date_to or "", folder or "")
            result = svc.search(
                query,
                images=[image] if image else [],
                k=int(k or DEFAULT_RESULTS),
                modalities=tuple(modalities or ()) or None,
                where=where,
            )
        except (MMRagError, EncoderError, OSError) as e:
            return failed(str(e))
        what = "for “" + query.strip()[:60] + "”" if query.strip() else "for your image"
        if query.strip() and image:
            what += " and your image"
        shown = show(result, query, what)
        return (render.with_warnings(shown[0], result.warnings), *shown[1:])

    def more_like_this(item_id: str | None):
        """Items near the picked one in its own index."""
        if not item_id:
            return failed(
                "Pick a result in the list (or click an image) first, then press More like this.", gr.Row()
            )
        try:
            result = svc.similar(int(item_id), 12)
            row = svc.item(int(item_id))
        except (MMRagError, EncoderError, LookupError) as e:
            return failed(str(e), gr.Row())
        return show(result, "", f"like {_label_of(row)}", focus=int(item_id))

    def pick_image(image_ids: list[int], evt: gr.SelectData):
        if evt.index is None or evt.index >= len(image_ids):
            return gr.Dropdown()
        return gr.Dropdown(value=str(image_ids[evt.index]))

    def index(folder: str, key: str, request: gr.Request, progress=gr.Progress()):  # noqa: B008 (Gradio reads the default)
        """Index a folder on the server (needs the write token): only what changed is embedded."""
        if not _may_write(api_key, key, request):
            return (
                '<span class="mm-error">⚠️ Indexing needs the server\'s token: open the URL the server '
                "printed at start (it ends in ?token=…), or paste the token into the Token box next to "
                "the folder.</span>",
                stats_md(),
            )
        folder = os.path.expanduser((folder or "").strip())
        if not folder:
            return (
                '<span class="mm-error">⚠️ Enter the path of a folder on the server.</span>',
                stats_md(),
            )
        try:
            report = svc.index(
                [folder], progress=lambda stage, done, total: progress((done, total or None), desc=stage)
            )
        except (MMRagError, EncoderError, PermissionError) as e:
            return f'<span class="mm-error">⚠️ {html.escape(str(e))}</span>', stats_md()
        # every item of the folder that was not embedded now kept its vectors: unchanged files' and
        # unchanged items of changed files alike
        unchanged = max(0, items_under(folder) - report.items_added)
        msg = (
            f"✅ Indexed **{report.sources}** files from `{html.escape(folder)}`: {report.items_added} items embedded, "
            f"{unchanged} unchanged, {report.items_removed} removed."
        )
        if report.errors:
            msg += f" Skipped {len(report.errors)} file(s), e.g. `{html.escape(report.errors[0][0])}`: {report.errors[0][1]}"
        return msg, stats_md()

    def items_under(folder: str) -> int:
        """Items the collection holds from files under `folder` (or from that file)."""
        with svc.snapshot() as engine:
            store = engine.collection.store
            return len(store.items_of_sources(store.sources_under(os.path.abspath(folder))))

    def dupe_spaces():
        """The Dupes tab's Space choice, updated: the spaces the collection now has items in."""
        choices, first, note = _dupe_choices(svc.stats())
        return gr.Radio(choices=choices, value=first, info=note)

    def ask(question: str, modalities: list[str] | None = None):
        """Answer a question from the collection, citing results as [n]: the answer as it is written,
        then its numbered sources (or, with no language model configured, the dry run's context)."""
        question = (question or "").strip()
        if not question:
            yield _error("Type a question first, then press Ask."), ""
            return
        if svc.stats()["items"] == 0:
            yield _error("The collection is empty: open the Index tab and add a folder first."), ""
            return
        try:
            cfg = svc.llm_cfg()
            if cfg.configured:
                yield (
                    f"_Reading the top {DEFAULT_K} results and asking **{html.escape(cfg.model or '')}**…_",
                    "",
                )
            text, final = "", None
            for event in svc.ask(question, k=DEFAULT_K, modalities=modalities or None, cfg=cfg):
                if isinstance(event, Answer):
                    final = event.to_dict()
                else:
                    text += event
                    yield text + " ▌", ""
        except (MMRagError, EncoderError) as e:
            yield _error(str(e)), ""
            return
        if final is None:
            yield _error("The language model gave no answer."), ""
        elif final["dry_run"]:
            yield render.dry_run_note(final), render.dry_run_html(final, roots())
        else:
            yield (
                final["answer"] or "_The model returned an empty answer._",
                render.citations_html(final, roots()),
            )

    def stats_md() -> str:
        return render.stats_markdown(svc.stats())

    def token_box(request: gr.Request):
        """A page opened at the tokened URL holds the token in a cookie: say so instead of an empty box
        (the token itself stays out of the page)."""
        if api_key is not None and _may_write(api_key, "", request):
            return gr.Textbox(placeholder="✓ set by the URL you opened", interactive=False)
        return gr.Textbox(placeholder="paste the server's token", interactive=True)

    def explored(what: str, params: tuple, work, progress) -> str:
        """The panel `work()` draws, computed as the server's exploration job (mmrag/http/explore_jobs.py):
        off the search path, one at a time, its progress shown while it runs."""
        with svc.snapshot() as engine:
            generation = engine.collection.store.generation()
        job = svc.explore.submit(
            what, (what + "-panel", str(svc.path), *params, generation), lambda job: work()
        )
        while not job.ended.wait(0.25):
            progress(None, desc=f"Computing the {what} of this collection…")
        if job.error is not None:
            if isinstance(job.error, MMRagError | EncoderError):
                return _error(str(job.error))
            raise job.error
        return job.result

    def clusters(k: str | None = None, progress=gr.Progress()):  # noqa: B008 (Gradio reads the default)
        """Groups of similar items, labelled; k is a number or "auto"."""
        k = (k or "auto").strip().lower()
        return explored("clusters", (k,), lambda: map_view.clusters_html(svc.path, k), progress)

    def outliers(progress=gr.Progress()):  # noqa: B008 (Gradio reads the default)
        """The items least like their neighbours, most isolated first."""
        return explored("outliers", (), lambda: map_view.outliers_html(svc.path), progress)

    def dupes(modality: str, threshold: float | None = None):
        """Groups of near-duplicate items of one space at or above the cosine threshold."""
        threshold = DEFAULT_THRESHOLDS.get(modality, 0.95) if threshold is None else threshold
        empty = render.empty_space_note(modality, svc.stats())
        if empty:
            return f'<p class="mm-empty">{html.escape(empty)}</p>'
        try:
            groups = svc.dupe_groups([modality], float(threshold), 50)
        except (MMRagError, EncoderError) as e:
            return _error(str(e))
        return _dupes_html(groups)

    with gr.Blocks(title="mmrag: search images, code and text") as blocks:
        gr.Markdown(INTRO)
        gr.Markdown(f"⚠️ {svc.banner}" if svc.banner else "", visible=bool(svc.banner), elem_id="mm-banner")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                query = gr.Textbox(
                    label="Search",
                    placeholder="e.g. a red circle on a blue background · function that merges ranked lists · how do captions work",
                    lines=1,
                    max_lines=4,
                    elem_id="mm-query",
                )
                with gr.Row():
                    modalities = gr.CheckboxGroup(
                        [("Images", "image"), ("Code", "code"), ("Text", "text")],
                        value=["image", "code", "text"],
                        label="Show",
                        elem_id="mm-modalities",
                    )
                    k = gr.Slider(1, 50, value=DEFAULT_RESULTS, step=1, label="Results", elem_id="mm-k")
                filters = filters_ui.controls(svc)  # language, date range, folder
                go = gr.Button("Search", variant="primary", elem_id="mm-search")
            with gr.Column(scale=1, min_width=220):
                image = gr.Image(
                    type="filepath",
                    label="Search by image",
                    sources=["upload", "clipboard"],
                    height=190,
                    visible=svc.image_search,
                    elem_id="mm-image",
                )
        status = gr.Markdown(HINT if svc.stats()["items"] else EMPTY, elem_id="mm-status")
        image_ids = gr.State([])
        with gr.Tabs():
            with gr.Tab("Results", id="results"):
                gallery = gr.Gallery(
                    label="Images",
                    columns=6,
                    fit_columns=False,  # three hits stay thumbnails, not screen-wide tiles
                    height="auto",
                    object_fit="cover",
                    visible=False,
                    elem_id="mm-gallery",
                )
                with gr.Row(equal_height=False):
                    code = gr.HTML(elem_id="mm-code")
                    text = gr.HTML(elem_id="mm-text")
                with gr.Row(visible=False, elem_id="mm-more-row") as more_row:
                    more = gr.Dropdown(
                        choices=[],
                        label="More like this",
                        info="pick a result, or click an image above",
                        interactive=False,
                        scale=4,
                        elem_id="mm-more",
                    )
                    more_go = gr.Button("More like this", scale=1, elem_id="mm-more-go")
            with gr.Tab("Ask", id="ask"):
                gr.Markdown(
                    "Ask a question: a language model answers from the top results and cites them as [n]."
                )
                with gr.Row(equal_height=True):
                    question = gr.Textbox(
                        label="Question",
                        placeholder="e.g. how are ranked lists merged?",
                        lines=1,
                        max_lines=4,
                        scale=5,
                        elem_id="mm-question",
                    )
                    ask_go = gr.Button("Ask", variant="primary", scale=1, elem_id="mm-ask-go")
                answer = gr.Markdown(elem_id="mm-answer")
                sources = gr.HTML(elem_id="mm-sources")
            with gr.Tab("Map", id="map"):
                gr.Markdown(
                    "Every item of the collection in 2-D (t-SNE of the shared embedding space, computed once "
                    "and kept until the collection changes): hover a point to see it, click to open it, "
                    "scroll to zoom, drag to pan. Your last results are ringed."
                )
                map_html = gr.HTML(map_view.frame(), elem_id="mm-map")
                with gr.Row():
                    cluster_k = gr.Textbox(
                        "auto", label="Clusters: k or auto", scale=1, elem_id="mm-clusters-k"
                    )
                    clusters_go = gr.Button("Show clusters", scale=1, elem_id="mm-clusters-go")
                    outliers_go = gr.Button("Show outliers", scale=1, elem_id="mm-outliers-go")
                explore_out = gr.HTML(elem_id="mm-explore")
            with gr.Tab("Dupes", id="dupes"):
                gr.Markdown(
                    "Groups of near-duplicate items: every pair at or above the cosine threshold is linked."
                )
                with gr.Row():
                    spaces, first, note = _dupe_choices(svc.stats())  # no `image` where there are none
                    dupe_modality = gr.Radio(
                        spaces, value=first, label="Space", info=note, elem_id="mm-dupes-modality"
                    )
                    dupe_threshold = gr.Slider(
                        0.5,
                        1.0,
                        value=DEFAULT_THRESHOLDS[first],
                        step=0.005,
                        label="Threshold",
                        elem_id="mm-dupes-threshold",
                    )
                    dupes_go = gr.Button("Find duplicates", variant="primary", elem_id="mm-dupes-go")
                dupes_out = gr.HTML(elem_id="mm-dupes")
            with gr.Tab("Index", id="index"):
                gr.Markdown(
                    "Add a folder on the server to the collection. Re-indexing only embeds what changed. "
                    "Only the collection's own folders, and those the server was started with "
                    "(`--allow-index DIR`), can be indexed."
                )
                with gr.Row():
                    folder = gr.Textbox(
                        label="Folder", placeholder="/path/to/folder", scale=4, elem_id="mm-folder"
                    )
                    key = gr.Textbox(
                        label="Token", type="password", visible=bool(api_key), scale=2, elem_id="mm-token"
                    )
                    index_go = gr.Button("Index folder", variant="primary", scale=1, elem_id="mm-index-go")
                index_status = gr.Markdown(elem_id="mm-index-status")
                stats = gr.Markdown(stats_md(), elem_id="mm-stats")

        # the API (gradio_client, /gradio_api/info) lists one endpoint per action, named after it; the
        # UI's own plumbing (loads, a threshold that follows its space, a click on a thumbnail) is hidden
        outputs = [status, gallery, code, text, more, more_row, map_html, image_ids]
        inner = {"api_visibility": "undocumented"}
        search_in = [query, image, modalities, k, *filters]
        gr.on([go.click, query.submit], search, search_in, outputs, api_name="search")
        more_go.click(more_like_this, [more], outputs, api_name="more_like_this")
        gallery.select(pick_image, [image_ids], [more], **inner)
        index_go.click(index, [folder, key], [index_status, stats], api_name="index").then(
            dupe_spaces, None, [dupe_modality], **inner
        )
        dupes_go.click(dupes, [dupe_modality, dupe_threshold], [dupes_out], api_name="dupes")
        dupe_modality.change(lambda m: DEFAULT_THRESHOLDS[m], [dupe_modality], [dupe_threshold], **inner)
        gr.on([ask_go.click, question.submit], ask, [question, modalities], [answer, sources], api_name="ask")
        clusters_go.click(clusters, [cluster_k], [explore_out], api_name="clusters")
        outliers_go.click(outliers, None, [explore_out], api_name="outliers")
        blocks.load(
            lambda: (stats_md(), map_view.frame(), dupe_spaces()),
            None,
            [stats, map_html, dupe_modality],
            **inner,
        )
        blocks.load(token_box, None, [key], **inner)
    return blocks


def _may_write(api_key: str | None, typed: str, request: gr.Request | None) -> bool:
    """Writes are open without a token; else the typed token, or the write role the server's guard
    found for the page's request (its cookie: a read token's page may search, not index)."""
    if api_key is None:
        return True
    if typed and secrets.compare_digest(typed.encode(), api_key.encode()):
        return True
    headers = dict(getattr(request, "headers", None) or {})
    return may_write({k.lower(): v for k, v in headers.items()})


def _dupe_choices(stats: dict) -> tuple[list[str], str, str | None]:
    """(the spaces the Dupes tab offers: those with items; the first to show: one with two or more;
    why pictures have no space of their own, where they are indexed by caption only)."""
    have = [m for m in ("image", "code", "text") if (stats.get("indexes", {}).get(m) or {}).get("count", 0)]
    first = render.first_full_space(stats)
    if first not in have:
        first = have[0] if have else first
    pictures = "image" not in have and stats.get("by_modality", {}).get("image", 0)
    return have or [first], first, render.empty_space_note("image", stats) if pictures else None


def _hit_label(h, roots) -> str:
    where = render.short_path(h.path or h.source, roots)
    if h.locator is not None:  # a document's part: `paper.pdf p. 12`, `analysis.ipynb cell 7`
        return f"{(h.text or h.title)[:60]} ({os.path.basename(render.where_label(h, roots))})"
    if h.modality == "image":
        return f"{(h.text or h.title)[:60]} ({os.path.basename(where)})"
    if h.symbol:
        return f"{h.symbol} ({where}:{h.start_line})"
    return f"{h.title or os.path.basename(where)} ({where})"


def _dupes_html(groups: list[dict]) -> str:
    """Each group in a row: image thumbnails side by side, code and text as their sources."""
    if not groups:
        return "<p>No near-duplicates at this threshold.</p>"
    out = []
    for n, g in enumerate(groups, 1):
        cells = []
        for m in g["members"]:
            label = html.escape(f"{m['similarity']:.3f} · {os.path.basename(m['source'])}")
            if g["space"] == "image":
                cells.append(
                    f'<figure style="margin:4px"><img src="{m["content_url"]}?size=128" alt="{label}" '
                    f'style="max-height:128px"><figcaption>{label}</figcaption></figure>'
                )
            else:
                cells.append(f"<li>{html.escape(m['key'])} ({m['similarity']:.3f})</li>")
        body = (
            f'<div style="display:flex;flex-wrap:wrap">{"".join(cells)}</div>'
            if g["space"] == "image"
            else f"<ul>{''.join(cells)}</ul>"
        )
        out.append(
            f'<div class="mm-dupe-group"><b>Group {n}</b>: {len(g["members"])} {g["space"]} items, '
            f"similarity &ge; {g['similarity']:.3f}{body}</div>"
        )
    return "".join(out)


def _error(message: str) -> str:
    return f'<span class="mm-error">⚠️ {html.escape(message)}</span>'


def _no_results(query: str) -> str:
    shown = f" for “{html.escape(query.strip()[:60])}”" if query.strip() else ""
    return f"No results{shown}. Try other words, tick more kinds under **Show**, or index more folders."


def mount(app, svc: Service, *, api_key: str | None = None):
    """Put the UI at `/` of `app` (after its REST routes, which keep precedence)."""
    blocks = build(svc, api_key)
    return gr.mount_gradio_app(
        app,
        blocks,
        path="/",
        css=CSS,
        theme=gr.themes.Soft(primary_hue="blue"),
        ssr_mode=False,
        footer_links=["api"],
        show_error=True,
    )
