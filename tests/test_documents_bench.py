"""`mmrag bench docs`: its generated PDFs are what PDFium and pypdf count, and (heavy: subprocesses
that index) the whole benchmark prints well-formed figures."""

from __future__ import annotations

import pytest

pytest.importorskip("pypdfium2")


def test_generated_pdfs_match_the_reference_readers(tmp_path):
    import pypdfium2 as pdfium

    from mmrag.bench import docs

    paths = docs.make_corpus(tmp_path, 2, 8)
    for p in paths:
        pdf = pdfium.PdfDocument(str(p))
        assert len(pdf) == 8
        assert "Page 8 of document" in pdf[7].get_textpage().get_text_range()
    pypdf = pytest.importorskip("pypdf")
    assert [len(pypdf.PdfReader(str(p)).pages) for p in paths] == [8, 8]
    assert docs.make_corpus(tmp_path, 2, 8) == paths and paths[0].read_bytes() == docs.pdf_bytes(8, seed=0)


@pytest.mark.heavy
def test_bench_docs_quick(tmp_path, monkeypatch):
    from mmrag.bench import docs
    from mmrag.bench.report import format_table

    monkeypatch.setenv("MMRAG_BENCH_DIR", str(tmp_path))
    figures = docs.run(quick=True)
    assert (
        figures[0].unit == "pages/s" and figures[0].value > 0 and figures[0].target == docs.TARGET_PAGES_PER_S
    )
    assert figures[1].name.startswith("mmrag index of one") and figures[1].value > 0
    assert all(f.reference and f.ratio for f in figures[2:4])  # pypdf, when installed
    assert len(figures) == 4 + 5  # then Word, PowerPoint, HTML, EPUB and Markdown
    assert "pages/s" in format_table(figures)


def test_bench_docs_reads_every_other_format(tmp_path, monkeypatch):
    """`mmrag bench docs` times each format's reader on files it generates; every one gives items."""
    pytest.importorskip("docx")
    pytest.importorskip("pptx")
    from mmrag.bench import docs_formats

    monkeypatch.setenv("MMRAG_BENCH_DIR", str(tmp_path))
    figures = docs_formats.run(quick=True)
    assert [f.name.split(" ")[0] for f in figures] == ["Word", "PowerPoint", "HTML", "EPUB", "Markdown"]
    for f in figures:
        assert f.value > 0 and int(f.note.rsplit(", ", 1)[1].split()[0]) > 0, f.note
