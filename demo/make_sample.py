"""Draws the demo's sample images with Pillow, each with a caption sidecar (`<name>.txt`), and
writes two documents that hold some of them: a PDF report with figures and an outline (reportlab)
and a notebook whose cells drew plots (nbformat), so the demo shows page and cell citations.

Every picture is drawn here from shapes and colours, so the sample corpus needs no download and
carries no third-party rights: it is released under CC0 1.0 (see demo/SOURCES.md). Re-run with
`python demo/make_sample.py` to regenerate demo/sample/images/ and demo/sample/documents/ byte for
byte (the documents need `pip install reportlab nbformat`, both in mmrag's test extra).
"""

from __future__ import annotations

import base64
import io
import math
import random
import sys
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw

SIZE = 256  # small enough that 32 PNGs stay under 200 KB, large enough for CLIP's 224 crop
OUT = Path(__file__).parent / "sample" / "images"
DOCS = Path(__file__).parent / "sample" / "documents"

Draw = Callable[[ImageDraw.ImageDraw], None]
SCENES: dict[str, tuple[str, str, Draw]] = {}  # name -> (background, caption, draw)


def scene(name: str, background: str, caption: str) -> Callable[[Draw], Draw]:
    def register(fn: Draw) -> Draw:
        SCENES[name] = (background, caption, fn)
        return fn

    return register


def _circle(
    d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, fill: str, outline: str | None = None
) -> None:
    d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill, outline=outline, width=3)


def _polygon(cx: float, cy: float, r: float, n: int, turn: float = 0.0) -> list[tuple[float, float]]:
    return [
        (cx + r * math.cos(turn + 2 * math.pi * i / n), cy + r * math.sin(turn + 2 * math.pi * i / n))
        for i in range(n)
    ]


@scene("red_circle_blue_background", "#1f4fbf", "a red circle on a blue background")
def _(d):
    _circle(d, 128, 128, 70, "#e02020")


@scene("green_triangle_white", "#ffffff", "a green triangle on a white background")
def _(d):
    d.polygon([(128, 40), (220, 210), (36, 210)], fill="#22a03a")


@scene("purple_square_yellow", "#f5d90a", "a purple square on a yellow background")
def _(d):
    d.rectangle((58, 58, 198, 198), fill="#7b2cbf")


@scene("sun_over_green_hills", "#8fd3ff", "a yellow sun over green hills under a blue sky")
def _(d):
    _circle(d, 190, 70, 34, "#ffd400")
    d.ellipse((-80, 150, 170, 360), fill="#3fa34d")
    d.ellipse((90, 170, 340, 380), fill="#2d8a3e")


@scene("sunset_over_ocean", "#ff9a3c", "an orange sunset over the ocean")
def _(d):
    d.rectangle((0, 0, 256, 90), fill="#ff7b54")
    _circle(d, 128, 150, 48, "#ffd166")
    d.rectangle((0, 150, 256, 256), fill="#1b4965")
    for y in range(165, 256, 18):
        d.line((70, y, 186, y), fill="#ffd166", width=3)


@scene("night_sky_moon_stars", "#0b1026", "a night sky with a crescent moon and stars")
def _(d):
    rng = random.Random(7)
    for _ in range(60):
        x, y = rng.randrange(256), rng.randrange(256)
        d.point((x, y), fill="#ffffff")
        if rng.random() < 0.2:
            _circle(d, x, y, 2, "#fff7c2")
    _circle(d, 170, 80, 40, "#f4f1c9")
    _circle(d, 188, 68, 36, "#0b1026")


@scene("house_red_roof", "#bde0fe", "a small white house with a red roof and a door")
def _(d):
    d.rectangle((0, 200, 256, 256), fill="#6a994e")
    d.rectangle((70, 120, 186, 210), fill="#f8f9fa", outline="#495057", width=2)
    d.polygon([(58, 122), (128, 60), (198, 122)], fill="#c1121f")
    d.rectangle((114, 160, 142, 210), fill="#7f5539")
    d.rectangle((84, 136, 106, 156), fill="#90e0ef")
    d.rectangle((150, 136, 172, 156), fill="#90e0ef")


@scene("tree_in_meadow", "#e0f7ff", "a single tree with a green crown and brown trunk in a meadow")
def _(d):
    d.rectangle((0, 205, 256, 256), fill="#95d5b2")
    d.rectangle((116, 130, 140, 215), fill="#7f4f24")
    _circle(d, 128, 105, 62, "#2d6a4f")
    _circle(d, 96, 125, 36, "#40916c")
    _circle(d, 162, 122, 38, "#40916c")


@scene("sailboat_on_sea", "#a2d2ff", "a sailboat with a white sail on a blue sea")
def _(d):
    d.rectangle((0, 170, 256, 256), fill="#0077b6")
    d.polygon([(80, 170), (180, 170), (160, 195), (100, 195)], fill="#6f4518")
    d.line((128, 60, 128, 170), fill="#3a2a1a", width=4)
    d.polygon([(132, 62), (132, 160), (200, 160)], fill="#ffffff")
    d.polygon([(124, 80), (124, 160), (78, 160)], fill="#f1faee")


@scene("snowy_mountains", "#caf0f8", "snow-capped mountains under a pale sky")
def _(d):
    d.polygon([(-20, 256), (90, 70), (200, 256)], fill="#6c757d")
    d.polygon([(60, 256), (180, 50), (290, 256)], fill="#495057")
    d.polygon([(90, 70), (66, 110), (114, 110)], fill="#ffffff")
    d.polygon([(180, 50), (152, 100), (208, 100)], fill="#ffffff")


@scene("rainbow_sky", "#9bd0ff", "a rainbow arching across a blue sky")
def _(d):
    colours = ["#e63946", "#f77f00", "#fcbf49", "#2a9d8f", "#277da1", "#5e548e"]
    for i, c in enumerate(colours):
        r = 150 - i * 14
        d.ellipse((128 - r, 220 - r, 128 + r, 220 + r), fill=c)
    d.ellipse((128 - 66, 220 - 66, 128 + 66, 220 + 66), fill="#9bd0ff")
    d.rectangle((0, 220, 256, 256), fill="#9bd0ff")


@scene("grey_clouds", "#adb5bd", "grey rain clouds on an overcast day")
def _(d):
    for cx, cy in ((70, 90), (130, 70), (190, 95), (100, 140), (170, 150)):
        _circle(d, cx, cy, 42, "#6c757d")
    for x in range(40, 230, 22):
        d.line((x, 190, x - 8, 215), fill="#4895ef", width=3)


@scene("bar_chart", "#ffffff", "a bar chart with five blue bars")
def _(d):
    d.line((30, 225, 235, 225), fill="#212529", width=2)
    d.line((30, 25, 30, 225), fill="#212529", width=2)
    for i, h in enumerate((60, 120, 90, 170, 140)):
        x = 45 + i * 38
        d.rectangle((x, 225 - h, x + 26, 224), fill="#1d70b8")


@scene("line_chart_rising", "#ffffff", "a line chart of a value rising over time")
def _(d):
    d.line((30, 225, 235, 225), fill="#212529", width=2)
    d.line((30, 25, 30, 225), fill="#212529", width=2)
    pts = [(30 + i * 25, 210 - 20 * i - (15 if i % 2 else 0)) for i in range(9)]
    d.line(pts, fill="#d62828", width=4)
    for p in pts:
        _circle(d, p[0], p[1], 4, "#d62828")


@scene("pie_chart", "#ffffff", "a pie chart with four coloured slices")
def _(d):
    start = 0.0
    for share, colour in ((0.4, "#ef476f"), (0.25, "#ffd166"), (0.2, "#06d6a0"), (0.15, "#118ab2")):
        d.pieslice((38, 38, 218, 218), start, start + 360 * share, fill=colour, outline="#ffffff", width=2)
        start += 360 * share


@scene("scatter_plot", "#ffffff", "a scatter plot of points with a trend")
def _(d):
    rng = random.Random(3)
    d.line((30, 225, 235, 225), fill="#212529", width=2)
    d.line((30, 25, 30, 225), fill="#212529", width=2)
    for _ in range(45):
        x = rng.uniform(40, 225)
        y = 220 - (x - 40) * 0.9 + rng.gauss(0, 18)
        _circle(d, x, max(30, min(215, y)), 4, "#6a4c93")


@scene("traffic_light", "#dee2e6", "a traffic light showing red, amber and green")
def _(d):
    d.rectangle((122, 200, 134, 256), fill="#343a40")
    d.rounded_rectangle((88, 20, 168, 205), radius=14, fill="#212529")
    for cy, c in ((55, "#e63946"), (112, "#ffb703"), (169, "#2dc653")):
        _circle(d, 128, cy, 24, c)


@scene("stop_sign", "#d8f3dc", "a red octagonal stop sign")
def _(d):
    d.rectangle((122, 180, 134, 256), fill="#6c757d")
    d.polygon(_polygon(128, 110, 78, 8, math.pi / 8), fill="#c1121f")
    d.polygon(_polygon(128, 110, 66, 8, math.pi / 8), outline="#ffffff", width=4)
    d.text((103, 103), "STOP", fill="#ffffff")


@scene("checkerboard", "#ffffff", "a black and white checkerboard pattern")
def _(d):
    for i in range(8):
        for j in range(8):
            if (i + j) % 2:
                d.rectangle((i * 32, j * 32, i * 32 + 31, j * 32 + 31), fill="#000000")


@scene("bullseye_target", "#f8f9fa", "a red and white bullseye target")
def _(d):
    for i, c in enumerate(("#d00000", "#ffffff", "#d00000", "#ffffff", "#d00000")):
        _circle(d, 128, 128, 110 - i * 22, c)


@scene("smiley_face", "#ffd6e0", "a yellow smiley face")
def _(d):
    _circle(d, 128, 128, 90, "#ffd60a", outline="#7f5539")
    _circle(d, 98, 105, 10, "#212529")
    _circle(d, 158, 105, 10, "#212529")
    d.arc((78, 100, 178, 180), 20, 160, fill="#212529", width=6)


@scene("red_heart_pink", "#ffc8dd", "a red heart on a pink background")
def _(d):
    _circle(d, 98, 105, 40, "#d90429")
    _circle(d, 158, 105, 40, "#d90429")
    d.polygon([(60, 120), (196, 120), (128, 205)], fill="#d90429")


@scene("colourful_dots_grid", "#14213d", "a grid of colourful dots on a dark background")
def _(d):
    colours = ["#f94144", "#f3722c", "#f9c74f", "#90be6d", "#43aa8b", "#577590"]
    for i in range(6):
        for j in range(6):
            _circle(d, 28 + i * 40, 28 + j * 40, 13, colours[(i + j) % 6])


@scene("striped_flag", "#ffffff", "a flag with three horizontal stripes, green, white and orange")
def _(d):
    d.rectangle((0, 40, 256, 98), fill="#2b9348")
    d.rectangle((0, 156, 256, 216), fill="#f77f00")
    d.rectangle((0, 98, 256, 156), fill="#ffffff", outline="#dee2e6")


@scene("ocean_waves", "#48cae4", "blue ocean waves under a clear sky")
def _(d):
    d.rectangle((0, 0, 256, 80), fill="#caf0f8")
    for k, c in enumerate(("#0096c7", "#0077b6", "#023e8a")):
        base = 110 + k * 45
        for x in range(-20, 276, 40):
            d.chord((x, base - 20, x + 40, base + 20), 180, 360, fill=c)
        d.rectangle((0, base, 256, base + 45), fill=c)


@scene("city_skyline_night", "#1b263b", "a city skyline at night with lit windows")
def _(d):
    rng = random.Random(11)
    x = 0
    while x < 256:
        w, h = rng.randint(26, 46), rng.randint(70, 190)
        d.rectangle((x, 256 - h, x + w - 3, 256), fill="#0d1b2a")
        for wy in range(256 - h + 10, 250, 16):
            for wx in range(x + 5, x + w - 8, 10):
                if rng.random() < 0.45:
                    d.rectangle((wx, wy, wx + 4, wy + 6), fill="#ffd60a")
        x += w
    _circle(d, 40, 40, 14, "#e0e1dd")


@scene("red_car", "#e9ecef", "a red car on a grey road")
def _(d):
    d.rectangle((0, 190, 256, 256), fill="#6c757d")
    d.rounded_rectangle((40, 120, 216, 180), radius=18, fill="#d00000")
    d.polygon([(80, 122), (100, 86), (170, 86), (190, 122)], fill="#d00000")
    d.polygon([(92, 120), (106, 94), (132, 94), (132, 120)], fill="#a8dadc")
    d.polygon([(140, 120), (140, 94), (164, 94), (178, 120)], fill="#a8dadc")
    _circle(d, 85, 182, 20, "#212529")
    _circle(d, 175, 182, 20, "#212529")


@scene("pink_flower", "#d8f3dc", "a flower with pink petals and a yellow centre")
def _(d):
    d.line((128, 140, 128, 256), fill="#2d6a4f", width=8)
    for cx, cy in _polygon(128, 110, 42, 6):
        _circle(d, cx, cy, 30, "#ff8fab")
    _circle(d, 128, 110, 24, "#ffd60a")


@scene("fish_in_water", "#90e0ef", "an orange fish swimming in blue water")
def _(d):
    d.ellipse((70, 100, 180, 160), fill="#f77f00")
    d.polygon([(170, 130), (220, 95), (220, 165)], fill="#f77f00")
    _circle(d, 95, 122, 7, "#ffffff")
    _circle(d, 95, 122, 3, "#000000")
    for cx, cy, r in ((50, 80, 8), (40, 55, 5), (58, 35, 4)):
        _circle(d, cx, cy, r, None, outline="#ffffff")


@scene("snowman", "#bde0fe", "a snowman with a carrot nose in the snow")
def _(d):
    d.rectangle((0, 210, 256, 256), fill="#ffffff")
    _circle(d, 128, 180, 50, "#f8f9fa", outline="#adb5bd")
    _circle(d, 128, 105, 36, "#f8f9fa", outline="#adb5bd")
    _circle(d, 116, 98, 4, "#212529")
    _circle(d, 140, 98, 4, "#212529")
    d.polygon([(128, 106), (128, 114), (156, 110)], fill="#f77f00")
    d.rectangle((100, 56, 156, 70), fill="#212529")
    d.rectangle((112, 24, 144, 60), fill="#212529")


@scene("cactus_desert", "#ffe8a3", "a green cactus in a sandy desert")
def _(d):
    d.rectangle((0, 200, 256, 256), fill="#e9c46a")
    _circle(d, 200, 50, 24, "#f4a261")
    d.rounded_rectangle((112, 70, 144, 210), radius=16, fill="#2a9d8f")
    d.rounded_rectangle((70, 110, 94, 165), radius=12, fill="#2a9d8f")
    d.rectangle((80, 150, 120, 166), fill="#2a9d8f")
    d.rounded_rectangle((162, 95, 186, 150), radius=12, fill="#2a9d8f")
    d.rectangle((136, 136, 176, 152), fill="#2a9d8f")


@scene("hot_air_balloon", "#caf0f8", "a striped hot air balloon in the sky")
def _(d):
    _circle(d, 128, 100, 70, "#e63946")
    d.chord((78, 30, 178, 170), 90, 270, fill="#ffd166")
    d.rectangle((118, 30, 138, 170), fill="#ffffff")
    d.line((80, 140, 112, 200), fill="#6c584c", width=2)
    d.line((176, 140, 144, 200), fill="#6c584c", width=2)
    d.rectangle((110, 198, 146, 226), fill="#7f5539")


def draw(name: str) -> Image.Image:
    background, _, fn = SCENES[name]
    img = Image.new("RGB", (SIZE, SIZE), background)
    fn(ImageDraw.Draw(img))
    return img


REPORT = [  # (outline entry, paragraphs, figure scene or None)
    ("Introduction", [
        "This report describes how the sample search engine was evaluated. It indexes pictures, source "
        "code and documents, and answers a query with all three.",
        "The sections below give the measured speed and quality, and the charts that summarise them.",
    ], None),
    ("Indexing speed", [
        "Indexing time grows with the number of pictures, since every picture is decoded and encoded. "
        "Text and code are cheap next to pictures.",
        "The bar chart shows the items indexed per second for each kind of file.",
    ], "bar_chart"),
    ("Search quality", [
        "Quality was measured as mean reciprocal rank on held-out queries. It rose steadily as more "
        "training pairs were mined from the corpus.",
    ], "line_chart_rising"),
    ("Where the time goes", [
        "Most of a search is spent embedding the query; the vector search and the fusion of the "
        "indexes take a small share.",
    ], "pie_chart"),
]  # fmt: skip


def _png(name: str, size: int = SIZE) -> bytes:
    buf = io.BytesIO()
    draw(name).resize((size, size)).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def write_report(path: Path) -> None:
    """A four-page PDF: roman-numbered title page, an outline, figures with "Figure N" captions."""
    from reportlab.lib.pagesizes import A5
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=A5, invariant=1)
    c.setTitle("Sample search engine: evaluation report")
    c.addPageLabel(0, style="ROMAN_LOWER")
    c.addPageLabel(1, style="ARABIC", start=1)
    c.setFont("Helvetica-Bold", 18)
    c.drawString(50, 480, "Evaluation report")
    c.setFont("Helvetica", 11)
    c.drawString(50, 455, "A sample document for the mmrag demo.")
    c.showPage()
    figure = 0
    for n, (title, paragraphs, scene_name) in enumerate(REPORT, 1):
        c.bookmarkPage(f"s{n}")
        c.addOutlineEntry(title, f"s{n}", level=0)
        c.setFont("Helvetica-Bold", 14)
        c.drawString(50, 540, f"{n}. {title}")
        text = c.beginText(50, 515)
        text.setFont("Helvetica", 10)
        text.setLeading(14)
        for paragraph in paragraphs:
            for line in _wrap(paragraph, 70):
                text.textLine(line)
            text.textLine("")
        c.drawText(text)
        if scene_name:
            figure += 1
            c.drawImage(ImageReader(io.BytesIO(_png(scene_name))), 110, 200, 200, 200)
            c.setFont("Helvetica-Oblique", 9)
            c.drawString(110, 185, f"Figure {figure}: {SCENES[scene_name][1]}.")
        c.showPage()
    c.save()


def _wrap(text: str, width: int) -> list[str]:
    lines, cur = [], ""
    for word in text.split():
        if cur and len(cur) + len(word) + 1 > width:
            lines.append(cur)
            cur = word
        else:
            cur = f"{cur} {word}".strip()
    return [*lines, cur] if cur else lines


def write_notebook(path: Path) -> None:
    """A notebook that loads numbers, prints a summary and draws two charts (as PNG outputs)."""
    import nbformat
    from nbformat import v4

    def plot(scene_name: str) -> dict:
        return v4.new_output("display_data", data={
            "image/png": base64.b64encode(_png(scene_name, 192)).decode(), "text/plain": "<Figure size 640x480>"})  # fmt: skip

    nb = v4.new_notebook(metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    })  # fmt: skip
    nb.cells = [
        v4.new_markdown_cell("# Query log analysis\n\nHow many searches each day, and how fast they were."),
        v4.new_code_cell(
            "import json\n\nwith open('queries.json') as f:\n    log = json.load(f)\nprint(len(log), 'queries')",
            execution_count=1, outputs=[v4.new_output("stream", name="stdout", text="1200 queries\n")]),
        v4.new_markdown_cell("## Searches per day\n\nThe number of searches rises through the week."),
        v4.new_code_cell("# searches per day as a rising line\nplt.plot(days, counts)", execution_count=2,
                         outputs=[plot("line_chart_rising")]),
        v4.new_markdown_cell("## Latency against result count\n\nEach point is one query."),
        v4.new_code_cell("# latency of each query against its result count\nplt.scatter(results, latency_ms)",
                         execution_count=3, outputs=[plot("scatter_plot")]),
        v4.new_code_cell("latency_ms.mean()", execution_count=4, outputs=[
            v4.new_output("execute_result", data={"text/plain": "41.7"}, execution_count=4)]),
    ]  # fmt: skip
    for n, cell in enumerate(nb.cells, 1):
        cell.id = f"cell-{n}"  # nbformat draws random ids: fixed ones keep the file byte for byte
    nbformat.write(nb, str(path))


def main(out: Path = OUT, docs: Path = DOCS) -> int:
    out.mkdir(parents=True, exist_ok=True)
    for name, (_, caption, _) in SCENES.items():
        draw(name).save(out / f"{name}.png", optimize=True)
        (out / f"{name}.txt").write_text(caption + "\n", encoding="utf-8")
    print(f"wrote {len(SCENES)} images with captions to {out}")
    try:
        docs.mkdir(parents=True, exist_ok=True)
        write_report(docs / "evaluation-report.pdf")
        write_notebook(docs / "query-log-analysis.ipynb")
    except ImportError as e:
        print(f"documents not written: {e} (pip install reportlab nbformat)", file=sys.stderr)
        return 1
    print(f"wrote a PDF report and a notebook to {docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*(Path(a) for a in sys.argv[1:3])))
