"""`mmrag bench docs --quick`: its generated PDFs are what PDFium counts, and its figures are well formed."""

from __future__ import annotations

import pytest

pytest.importorskip("pypdfium2")


def test_bench_docs_quick(tmp_path, monkeypatch):
    import pypdfium2 as pdfium

    from mmrag.bench import docs
    from mmrag.bench.report import format_table

    monkeypatch.setenv("MMRAG_BENCH_DIR", str(tmp_path))
    figures = docs.run(quick=True)
    pdfs = sorted(tmp_path.glob("docs-*/*.pdf"))
    assert len(pdfs) == 4 and all(len(pdfium.PdfDocument(str(p))) == 25 for p in pdfs)
    assert (
        figures[0].unit == "pages/s" and figures[0].value > 0 and figures[0].target == docs.TARGET_PAGES_PER_S
    )
    if len(figures) > 1:  # pypdf installed: the same pages timed by it
        assert all(f.reference and f.ratio for f in figures[1:])
    assert "pages/s" in format_table(figures)
