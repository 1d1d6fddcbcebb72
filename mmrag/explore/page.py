"""The map as one HTML page: plotly draws the points; hover shows the item, click opens it.

The same page serves two ways. Served (`/map/view`), it fetches its points from GET /map (while
the server computes them, GET /map answers 202 with the job's progress, which the page shows as
it polls), loads plotly.js from the server, shows thumbnails and snippets fetched from
/items/{id}, and a click opens /items/{id}/content. As a file (`mmrag map --out map.html`), plotly.js, the points, their
snippets and image thumbnails are inlined, and a click shows the item in a side panel.
Above GL_FROM points the page draws with WebGL (scattergl), which keeps 100k points interactive.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

GL_FROM = 5000  # points from which WebGL draws; below it SVG is as quick and needs no GPU
PLOTLY_JS = Path(__file__).with_name("plotly-gl2d.min.js")

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
html, body {margin: 0; height: 100%; font: 14px system-ui, sans-serif; color: #222; background: #fff;}
#bar {display: flex; gap: 14px; align-items: center; padding: 6px 10px; border-bottom: 1px solid #e4e4e7;}
#bar label {color: #444;} #status {color: #555; margin-left: auto; font-size: .9em;}
#wrap {display: flex; height: calc(100% - 40px);} #map {flex: 1; min-width: 0;}
#tip {position: fixed; display: none; pointer-events: none; z-index: 10; max-width: 360px; background: #fff;
      border: 1px solid #bbb; border-radius: 6px; box-shadow: 0 2px 10px rgba(0,0,0,.2); padding: 6px 8px;}
#tip .head, #item .head {font-weight: 600; margin-bottom: 4px; word-break: break-all;}
#tip .path, #item .path {font-family: ui-monospace, monospace; font-size: 12px; color: #555; word-break: break-all;}
.kind {font: 600 10px system-ui; text-transform: uppercase; letter-spacing: .05em; color: #fff; background: #666;
       border-radius: 3px; padding: 1px 4px; vertical-align: 2px;}
#tip img {display: block; max-width: 160px; max-height: 160px; margin: 4px 0;}
#tip pre, #item pre {margin: 4px 0 0; font-size: 12px; white-space: pre-wrap; max-height: 190px; overflow: hidden;
      background: #f7f7f8; padding: 4px 6px; border-radius: 4px;}
#item {display: none; position: fixed; right: 12px; bottom: 12px; width: 340px; max-height: 70%; overflow: auto;
       background: #fff; border: 1px solid #bbb; border-radius: 6px; box-shadow: 0 2px 10px rgba(0,0,0,.2); padding: 10px;}
#item .close {float: right; cursor: pointer; border: 0; background: none; font-size: 18px; line-height: 1;}
#item pre {max-height: none;} #item img {max-width: 100%;}
</style>__PLOTLY__</head>
<body>
<div id="bar"><b>Map</b>
<label>Colour by <select id="colour"></select></label>
<span id="status">Loading the map…</span></div>
<div id="wrap"><div id="map"></div><div id="item"></div></div>
<div id="tip"></div>
<script>
const MODE = __MODE__;
const INLINE = __DATA__;
const DATA_URL = __DATA_URL__;
const START_COLOUR = __COLOUR__;
const GL_FROM = __GL_FROM__;
const SVG_MAX = 20000;  /* without WebGL, a sample this large is still drawn as SVG */
const MAX_CATS = 12;    /* categories with their own colour; the rest are "other" */
const MODALITY = {image: "#2f6fdf", code: "#e07a10", text: "#1f9d55"};
const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
                 "#9c755f", "#17becf", "#bcbd22", "#7f7f7f"];
const gd = document.getElementById("map"), tip = document.getElementById("tip");
const sel = document.getElementById("colour"), statusEl = document.getElementById("status");
const itemEl = document.getElementById("item");
const fetched = new Map();
let D = null, rowOf = null;
const webgl = (() => { try { const c = document.createElement("canvas");
  return !!(c.getContext("webgl2") || c.getContext("webgl")); } catch (e) { return false; } })();
const esc = s => String(s ?? "").replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));

async function main() {
  window.mapScriptMs = performance.now();  /* plotly.js loaded and parsed */
  try {
    if (INLINE) { D = INLINE; } else {
      statusEl.textContent = "Computing the map of this collection (once; later visits load it)…";
      for (;;) {  /* 202: the server computes it as a job; its progress is shown until the map is there */
        const r = await fetch(DATA_URL);
        const body = await r.json();
        if (r.status === 202 && body.job) {
          statusEl.textContent = progressText(body.job); statusEl.dataset.job = body.job.id;
          await new Promise(ok => setTimeout(ok, 1000 * (Number(r.headers.get("Retry-After")) || 1)));
          continue;
        }
        if (!r.ok) { statusEl.textContent = "⚠️ " + (body.detail || r.statusText); return; }
        D = body; break;
      }
    }
  } catch (e) { statusEl.textContent = "⚠️ Could not load the map: " + e; return; }
  window.mapDataMs = performance.now();  /* the points are here */
  rowOf = new Map(D.points.id.map((id, r) => [id, r]));
  for (const f of ["modality", "cluster", "folder", "language"]) {
    if (D.categories[f]) sel.add(new Option(f, f, false, f === START_COLOUR));
  }
  if (!D.points.id.length) { statusEl.textContent = "The map appears once the collection has items."; }
  sel.onchange = draw;
  draw();
}

function progressText(job) {
  const p = job.progress || {}, of = p.total ? ` ${p.done} of ${p.total}` : "";
  const stage = job.state === "queued" ? "waiting for another exploration to finish" : (p.stage || "starting") + of;
  return `Computing the map of this collection (once; later visits load it): ${stage} · ${Math.round(job.seconds || 0)} s`;
}

function colourOf(field, name, c) {
  if (c === MAX_CATS) return "#c7c7c7";
  if (field === "modality" && MODALITY[name]) return MODALITY[name];
  return PALETTE[c % PALETTE.length];
}

function draw() {
  const P = D.points, n = P.id.length, field = sel.value || "modality";
  const cats = D.categories[field] || [], codes = P[field];
  let rows = [...Array(n).keys()], note = "";
  const gl = n >= GL_FROM && webgl;
  if (n > SVG_MAX && !webgl) {  /* no WebGL here: an even sample of the points, said so */
    const step = n / SVG_MAX; rows = Array.from({length: SVG_MAX}, (_, i) => Math.floor(i * step));
    note = ` · WebGL is off in this browser: ${SVG_MAX} of ${n} points shown`;
  }
  const type = gl ? "scattergl" : "scatter", size = n > 20000 ? 3 : n > 2000 ? 5 : 9;
  const groups = new Map();
  for (const r of rows) {
    let c = codes ? codes[r] : -1;
    if (c < 0 || c >= MAX_CATS) c = c < 0 ? -1 : MAX_CATS;
    if (!groups.has(c)) groups.set(c, []);
    groups.get(c).push(r);
  }
  const traces = [...groups.keys()].sort((a, b) => (a < 0) - (b < 0) || a - b).map(c => {
    const g = groups.get(c), name = c === MAX_CATS ? "other" : c < 0 ? "(new, not clustered)" : cats[c];
    return {type, mode: "markers", name, customdata: g, x: g.map(r => P.x[r]), y: g.map(r => P.y[r]),
            hoverinfo: "none", marker: {size, color: c < 0 ? "#999" : colourOf(field, name, c), opacity: 0.85}};
  });
  const hits = (D.highlight || []).map(id => rowOf.get(id)).filter(r => r !== undefined);
  if (hits.length) {
    traces.push({type, mode: "markers", name: "results", customdata: hits, hoverinfo: "none",
      x: hits.map(r => P.x[r]), y: hits.map(r => P.y[r]),
      marker: {size: size + 9, symbol: "circle-open", color: "#111", line: {width: 2}}});
    traces.push({type, mode: "markers", name: "best result", hoverinfo: "skip",
      x: [P.x[hits[0]]], y: [P.y[hits[0]]],
      marker: {size: 20, symbol: "star", color: "#d00", line: {width: 1, color: "#fff"}}});
  }
  const layout = {margin: {l: 10, r: 10, t: 10, b: 10}, dragmode: "pan", hovermode: "closest", uirevision: "map",
    xaxis: {visible: false}, yaxis: {visible: false, scaleanchor: "x"}, legend: {itemsizing: "constant", y: 0.94},
    plot_bgcolor: "#fff"};
  const t0 = performance.now();
  Plotly.react(gd, traces, layout, {responsive: true, scrollZoom: true, displaylogo: false}).then(() => {
    window.mapDrawnMs = performance.now();
    gd.dataset.ready = "1"; gd.dataset.colour = field; gd.dataset.points = String(rows.length);
    gd.dataset.type = type;
    const how = MODE === "file" ? "from this file" : D.cached ? "loaded from the collection's cache" : `computed in ${D.seconds.toFixed(1)} s`;
    statusEl.textContent = `${n} items · ${D.space} space · t-SNE ${how} · drawn in ${(performance.now() - t0).toFixed(0)} ms${note}`;
  });
  if (!gd._mmBound) { gd._mmBound = true; gd.on("plotly_hover", onHover); gd.on("plotly_unhover", () => tip.style.display = "none");
    gd.on("plotly_click", onClick); }
}

function head(r) {
  const P = D.points, m = D.categories.modality[P.modality[r]];
  return `<div class="head"><span class="kind">${esc(m)}</span> ${esc(P.label[r] || P.name[r])}</div>`;
}

async function body(r) {
  const P = D.points, id = P.id[r], m = D.categories.modality[P.modality[r]];
  if (MODE === "file") {
    const path = `<div class="path">${esc(P.path[r])}</div>`;
    if (m === "image") return (P.thumb[r] ? `<img alt="" src="${esc(P.thumb[r])}">` : "") + path + `<pre>${esc(P.snippet[r])}</pre>`;
    return path + `<pre>${esc(P.snippet[r])}</pre>`;
  }
  if (!fetched.has(id)) fetched.set(id, fetch(`/items/${id}`).then(r => r.json()).catch(() => ({})));
  const it = await fetched.get(id), where = (it.source || "").endsWith(".jsonl") ? it.key : (it.image || it.source);
  const lines = (it.text || it.title || "").split("\\n").slice(0, 10).join("\\n").slice(0, 240);
  const path = `<div class="path">${esc(where)}${it.start_line ? ":" + it.start_line : ""}</div>`;
  if (m === "image") return `<img alt="" src="/items/${id}/content?size=160">` + path + `<pre>${esc(lines)}</pre>`;
  return path + `<pre>${esc(lines)}</pre>`;
}

async function onHover(e) {
  const p = e.points && e.points[0], r = p && p.customdata;
  if (r === undefined || r === null) return;
  const x = e.event.clientX, y = e.event.clientY;
  tip.innerHTML = head(r) + '<div class="path">…</div>';
  tip.style.display = "block"; tip.dataset.id = String(D.points.id[r]);
  tip.style.left = Math.min(x + 14, window.innerWidth - 370) + "px";
  tip.style.top = Math.min(y + 14, window.innerHeight - 260) + "px";
  const html = await body(r);
  if (tip.dataset.id === String(D.points.id[r])) tip.innerHTML = head(r) + html;
}

function onClick(e) {
  const p = e.points && e.points[0], r = p && p.customdata;
  if (r === undefined || r === null) return;
  const P = D.points, id = P.id[r];
  if (MODE === "server") { window.open(`/items/${id}/content`, "_blank"); return; }
  const m = D.categories.modality[P.modality[r]];
  const img = m === "image" && P.thumb[r] ? `<img alt="" src="${esc(P.thumb[r])}">` : "";
  const link = P.path[r] && !P.path[r].endsWith(".jsonl") ? `<a href="file://${esc(P.path[r])}">open the file</a>` : "";
  itemEl.innerHTML = '<button class="close" title="close" onclick="this.parentNode.style.display=&quot;none&quot;">×</button>' + head(r) + `<div class="path">${esc(P.path[r])}</div>${img}<pre>${esc(P.snippet[r])}</pre>${link}`;
  itemEl.style.display = "block"; itemEl.dataset.id = String(id);
}
main();
</script></body></html>
"""


def map_html(
    payload: dict | None = None,
    *,
    data_url: str | None = None,
    plotly_src: str | None = None,
    colour: str = "modality",
    title: str = "mmrag map",
) -> str:
    """The page: with `payload` a self-contained file (plotly.js inlined unless `plotly_src`),
    else a served page that fetches `data_url` and loads plotly.js from `plotly_src`."""
    if payload is None and not (data_url and plotly_src):
        raise ValueError("A served map page needs both data_url and plotly_src")
    if plotly_src:
        script = f'<script src="{html.escape(plotly_src)}"></script>'
    else:
        script = f"<script>{plotly_js()}</script>"
    fill = {
        "__TITLE__": html.escape(title),
        "__PLOTLY__": script,
        "__MODE__": _js("file" if payload is not None else "server"),
        "__DATA__": _js(payload),
        "__DATA_URL__": _js(data_url),
        "__COLOUR__": _js(colour),
        "__GL_FROM__": str(GL_FROM),
    }
    # one pass, so no filled-in text (a snippet, plotly.js) is searched for placeholders again
    return re.sub("|".join(fill), lambda m: fill[m.group(0)], _PAGE)


def plotly_js() -> str:
    """plotly.js (the gl2d bundle kept beside this module: plotly-SOURCES.md says why)."""
    return PLOTLY_JS.read_text("utf-8")


def _js(value) -> str:
    """A value as a JavaScript literal that is safe inside <script> (no `</script>` can close it)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
