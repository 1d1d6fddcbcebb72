"""Code inside Markdown, HTML pages and EPUB books: the readers' items against the reference
parsers' own reading of the same files (markdown-it-py's fences, lxml's tree, the EPUB's own
manifest and spine), the locators, each bad input's reason, and the doors (search, filters, CLI)."""

from __future__ import annotations

from markdown_it import MarkdownIt

from mmrag.ingest import IngestCfg, Source, read_source

TUTORIAL = """# Tutorial

Install the package and open a session.

## Reading files

```python
def read_lines(path):
    with open(path) as f:
        return f.read().splitlines()
```

The function above returns the lines of a file.

~~~ js {.numberLines}
const total = items.reduce((a, b) => a + b, 0);
~~~

```
plain listing, no language
```

````md
```not a fence inside a longer one```
````

Closing words after the listings.
"""


def read(path, cfg=None):
    notes = []
    cfg = cfg or IngestCfg()
    kind = "text" if path.suffix == ".md" else "document"
    items = read_source(Source(str(path), str(path), kind, path.stat().st_size, 0), cfg, notes.append)
    return items, notes


def test_markdown_fences_are_code_items_citing_their_lines(tmp_path):
    md = tmp_path / "tutorial.md"
    md.write_text(TUTORIAL)
    items, notes = read(md)
    assert not notes
    ref = [t for t in MarkdownIt("commonmark").parse(TUTORIAL) if t.type == "fence"]
    code = [it for it in items if it.modality == "code"]
    assert len(code) == len(ref) == 4
    lines = TUTORIAL.split("\n")
    for it, tok in zip(code, ref):
        a, b = tok.map  # markdown-it: opening fence line, the line after the closing fence (0-based)
        assert (it.start_line, it.end_line) == (a + 2, b - 1)
        assert it.text == "\n".join(lines[a + 1 : b - 1]) == tok.content.rstrip("\n")
    assert [it.language for it in code] == ["python", "javascript", None, "markdown"]
    assert code[0].meta["locator"] == {
        "doc": "md",
        "part": "code-block",
        "heading": "Tutorial > Reading files",
    }
    text = [it for it in items if it.modality == "text"]
    assert text and all("read_lines" not in it.text and "reduce" not in it.text for it in text)
    assert any("returns the lines" in it.text for it in text)
    assert any("Closing words" in it.text for it in text)
    for it in text:  # prose cites its own lines, which hold its text
        assert it.text.split("\n")[0] == lines[it.start_line - 1]


def test_an_unclosed_fence_runs_to_the_end_and_a_long_one_is_windowed(tmp_path):
    md = tmp_path / "open.md"
    body = "\n".join(f"x_{i} = {i}" for i in range(200))
    md.write_text(f"Intro.\n\n```py\n{body}\n")
    items, _ = read(md, IngestCfg(max_code_chars=500, code_window_lines=40, code_window_overlap=5))
    code = [it for it in items if it.modality == "code"]
    assert len(code) > 1 and all(it.language == "python" and len(it.text) <= 500 for it in code)
    assert code[0].start_line == 4 and code[-1].end_line == 203
    assert [it.text for it in items if it.modality == "text"] == ["Intro."]
