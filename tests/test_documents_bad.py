"""Bad documents: each gives a clear reason for its file (or for the part it loses) and never a
crash, a hang or a lost run. PDFium runs in a worker process with a time box: a parser that hangs
or dies takes only its file with it, and the next file gets a fresh worker."""

from __future__ import annotations

import json
import os
import time

import pytest

pytest.importorskip("pypdfium2")
pytest.importorskip("nbformat")
pytest.importorskip("reportlab")

from documents_maker import (  # noqa: E402
    circular_pdf,
    huge_picture_pdf,
    make_notebook,
    make_pdf,
    noise,
    png_b64,
    zero_page_pdf,
)

from mmrag.errors import IngestError  # noqa: E402
from mmrag.ingest import IngestCfg, Source, isolate, read_source  # noqa: E402


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    return IngestCfg(picture_dir=str(tmp_path_factory.mktemp("pictures")))


def read(path, cfg):
    notes = []
    items = read_source(Source(str(path), str(path), "document", path.stat().st_size, 0), cfg, notes.append)
    return items, [n.reason for n in notes]


def reason(path, cfg) -> str:
    with pytest.raises(IngestError) as e:
        read(path, cfg)
    assert e.value.path == str(path)
    return e.value.reason


# --- PDF -------------------------------------------------------------------------------------------
def test_user_password_is_skipped_with_its_reason(tmp_path, cfg):
    path = make_pdf(tmp_path / "locked.pdf", pages=1, encrypt=("secret", "owner"))
    assert reason(path, cfg).startswith("password required")


def test_owner_password_only_is_indexed(tmp_path, cfg):
    path = make_pdf(tmp_path / "owner.pdf", pages=2, encrypt=("", "owner"))
    items, notes = read(path, cfg)
    assert notes == [] and {it.meta["locator"]["page"] for it in items if it.modality == "text"} == {1, 2}
    assert "Gradient descent" in items[0].text


def test_truncated(tmp_path, cfg):
    data = make_pdf(tmp_path / "whole.pdf", pages=3).read_bytes()
    path = tmp_path / "cut.pdf"
    path.write_bytes(data[: len(data) // 2])
    assert reason(path, cfg).startswith("damaged PDF")


def test_html_saved_as_pdf(tmp_path, cfg):
    path = tmp_path / "page.pdf"
    path.write_text("<!DOCTYPE html>\n<html><body><p>Saved from a browser</p></body></html>")
    assert reason(path, cfg) == "not a PDF: the file holds HTML, with no %PDF- header"


def test_zero_pages(tmp_path, cfg):
    assert (
        reason(zero_page_pdf(tmp_path / "empty.pdf"), cfg)
        == "PDF has no pages (an empty or missing page tree)"
    )


def test_huge_picture_is_refused_by_the_pixel_cap_and_the_page_kept(tmp_path, cfg):
    items, notes = read(huge_picture_pdf(tmp_path / "huge.pdf"), cfg)
    assert [it.modality for it in items] == ["text"]
    assert notes == [
        "picture of 20000x20000 pixels on p. 1 is over the 128000000-pixel cap; skipped, the page's text is indexed"
    ]


def test_circular_page_tree_loses_only_its_broken_page(tmp_path, cfg):
    items, notes = read(circular_pdf(tmp_path / "loop.pdf"), cfg)
    assert [it.text for it in items] == ["Circular page tree."]
    assert notes == ["1 of 2 pages cannot be loaded (p. 2); the others are indexed"]


def test_rotated_pages(tmp_path, cfg):
    items, notes = read(make_pdf(tmp_path / "turned.pdf", pages=2, rotate=90), cfg)
    texts = [it for it in items if it.modality == "text"]
    assert notes == [] and [it.meta["locator"]["page"] for it in texts] == [1, 2]
    assert all(it.meta["rotation"] == 90 for it in texts)
    assert all("Gradient descent lowers the loss" in " ".join(it.text.split()) for it in texts)


def test_cjk_and_right_to_left_text(tmp_path, cfg):
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfbase.ttfonts import TTFont

    cjk = make_pdf(tmp_path / "cjk.pdf", pages=1, logo=False, text="机器学习模型的训练过程。",
                   font=("STSong-Light", UnicodeCIDFont("STSong-Light")))  # fmt: skip
    assert "机器学习模型的训练过程" in read(cjk, cfg)[0][0].text
    dejavu = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
    if not os.path.exists(dejavu):
        pytest.skip("no DejaVu Sans for Hebrew and Arabic glyphs")
    # laid out right to left as a typesetter does (reportlab draws the glyphs in the order given)
    rtl = make_pdf(tmp_path / "rtl.pdf", pages=1, logo=False, text="שלום עולם"[::-1] + " " + "مرحبا"[::-1],
                   font=("DejaVu", TTFont("DejaVu", dejavu)))  # fmt: skip
    text = read(rtl, cfg)[0][0].text
    assert "שלום" in text and "עולם" in text and "مرحبا" in text  # logical order, as a reader types them


def test_a_hung_parser_is_killed_and_the_next_file_gets_a_fresh_one(tmp_path, cfg):
    big = make_pdf(tmp_path / "long.pdf", pages=60, logo=False)
    fast = IngestCfg(picture_dir=cfg.picture_dir, doc_timeout_s=0.001)
    t0 = time.monotonic()
    assert reason_of(big, fast).startswith("parser timed out after 0.001 s")
    assert time.monotonic() - t0 < 10
    items, _ = read(make_pdf(tmp_path / "next.pdf", pages=1), cfg)
    assert items


def reason_of(path, cfg) -> str:
    with pytest.raises(IngestError) as e:
        read(path, cfg)
    return e.value.reason


def test_a_crashed_parser_takes_only_its_file(tmp_path, cfg, monkeypatch):
    """The worker is killed mid-parse (as a segfault would end it): one reason, and the next file is read.

    The kill lands right after the request is sent and before any of the answer is read, so the
    worker is still parsing 1,000 pages (0.2 s on a 2-core EPYC): no timing on a thread decides it."""
    path = make_pdf(tmp_path / "long.pdf", pages=1000, logo=False)
    real_read, killed = isolate._Worker._read, []

    def read_after_a_kill(self, n, deadline, p, timeout):
        if not killed:
            os.kill(self.proc.pid, 9)
            killed.append(self.proc.pid)
        return real_read(self, n, deadline, p, timeout)

    monkeypatch.setattr(isolate._Worker, "_read", read_after_a_kill)
    assert reason(path, cfg) == "parser crashed (SIGKILL); the file is skipped"
    assert killed
    monkeypatch.undo()
    assert read(make_pdf(tmp_path / "after.pdf", pages=1), cfg)[0]


def test_parser_memory_is_capped(tmp_path):
    """A bomb is a MemoryError in the worker: a reason for the file, and the indexer lives on."""
    cfg = IngestCfg(picture_dir=str(tmp_path / "p"), doc_memory_bytes=64 << 20)
    why = reason_of(make_pdf(tmp_path / "any.pdf", pages=1), cfg)
    assert "out of memory" in why or "cannot parse" in why or "exited" in why or "crashed" in why


# --- notebooks -------------------------------------------------------------------------------------
def test_nbformat_v3(tmp_path, cfg):
    from nbformat import v3

    nb = v3.new_notebook(name="old", metadata={"language": "python"})
    nb.worksheets.append(v3.new_worksheet(cells=[
        v3.new_text_cell("markdown", source="# An old notebook\n\nFrom IPython 1."),
        v3.new_code_cell(input="print(1)", prompt_number=1, outputs=[v3.new_output("stream", output_text="1\n")]),
    ]))  # fmt: skip
    path = tmp_path / "old.ipynb"
    path.write_text(v3.nbjson.writes(nb))
    items, notes = read(path, cfg)
    assert notes == []
    assert [(it.modality, it.meta["locator"]["part"]) for it in items] == [
        ("text", "markdown"), ("code", "code-cell"), ("text", "output")
    ]  # fmt: skip
    assert items[1].language == "python" and items[1].meta["locator"]["execution_count"] == 1


def _raw_nb(cells, metadata=None) -> str:
    return json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": metadata or {}, "cells": cells})


def test_source_as_a_string_and_no_outputs(tmp_path, cfg):
    path = tmp_path / "strings.ipynb"
    path.write_text(_raw_nb([
        {"cell_type": "markdown", "metadata": {}, "source": "# Title\n\nOne string, not a list of lines."},
        {"cell_type": "code", "metadata": {}, "execution_count": None, "source": "x = 1\ny = 2"},  # no outputs
    ], {"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}}))  # fmt: skip
    items, notes = read(path, cfg)
    assert notes == [] and [it.text for it in items] == [
        "# Title\n\nOne string, not a list of lines.",
        "x = 1\ny = 2",
    ]
    assert "execution_count" not in items[1].meta["locator"]


def test_invalid_json(tmp_path, cfg):
    path = tmp_path / "broken.ipynb"
    path.write_text('{"cells": [{"cell_type": "code", "source": ')
    assert reason(path, cfg) == "invalid JSON, not a notebook"


def test_huge_output_is_kept_short(tmp_path, cfg):
    path = tmp_path / "log.ipynb"
    log = "step 1 ok\n" * 800_000  # 8 MB of output, over the 5 MB a text file may have
    path.write_text(_raw_nb([{"cell_type": "code", "metadata": {}, "execution_count": 1, "source": "train()",
                              "outputs": [{"output_type": "stream", "name": "stdout", "text": log}]}]))  # fmt: skip
    items, notes = read(path, cfg)
    out = next(it for it in items if it.meta["locator"]["part"] == "output")
    assert notes == [] and len(out.text) == cfg.max_output_chars and out.text.startswith("step 1 ok")


def test_svg_only_output_is_named(tmp_path, cfg):
    path = tmp_path / "svg.ipynb"
    svg = {"image/svg+xml": "<svg xmlns='http://www.w3.org/2000/svg'/>", "text/plain": "<Figure>"}
    path.write_text(_raw_nb([{"cell_type": "code", "metadata": {}, "execution_count": 1, "source": "plot()",
                              "outputs": [{"output_type": "display_data", "metadata": {}, "data": svg}]}]))  # fmt: skip
    items, notes = read(path, cfg)
    assert [it.modality for it in items] == ["code"]
    assert notes == [
        "cell 1 drew an SVG picture only; mmrag does not rasterise SVG, so it is not in the image index"
    ]


def test_ansi_traceback_is_plain_text(tmp_path, cfg):
    items, _ = read(make_notebook(tmp_path / "err.ipynb", plots=0), cfg)
    err = next(it for it in items if it.meta["locator"]["part"] == "output" and "Error" in it.text)
    assert err.text == "ZeroDivisionError: division by zero"


def test_non_python_kernel(tmp_path, cfg):
    items, _ = read(make_notebook(tmp_path / "r.ipynb", language="R", kernel="ir"), cfg)
    assert {it.language for it in items if it.modality == "code"} == {"r"}
    path = tmp_path / "jl.ipynb"  # no language in kernelspec: the kernel's name says it
    path.write_text(_raw_nb([{"cell_type": "code", "metadata": {}, "execution_count": 1, "source": "println(1)",
                              "outputs": []}], {"kernelspec": {"name": "julia-1.10", "display_name": "Julia"}}))  # fmt: skip
    assert read(path, cfg)[0][0].language == "julia"


def test_picture_over_the_cap_in_a_notebook(tmp_path):
    cfg = IngestCfg(picture_dir=str(tmp_path / "p"), max_image_pixels=100 * 100)
    path = tmp_path / "big.ipynb"
    data = {"image/png": png_b64(noise(200, 200, 3))}
    path.write_text(_raw_nb([{"cell_type": "code", "metadata": {}, "execution_count": 1, "source": "show()",
                              "outputs": [{"output_type": "display_data", "metadata": {}, "data": data}]}]))  # fmt: skip
    items, notes = read(path, cfg)
    assert [it.modality for it in items] == ["code"]
    assert notes == ["cell 1: a picture of 200x200 pixels is over the 10000-pixel cap; skipped"]
