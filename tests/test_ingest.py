"""Ingestion of well-formed sources: how code, text, JSONL and images become Items."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from mmrag.errors import ConfigError, IngestError
from mmrag.ingest import (
    IngestCfg,
    Source,
    fingerprint,
    iter_items,
    list_readers,
    read_source,
    register_reader,
    scan_sources,
)
from mmrag.items import Item

PY = '''"""A module docstring."""
import os

LIMIT = 3


@cached
@other(arg=1)
def top(a,
        b):
    """Adds."""
    return a + b


async def fetch():
    return await thing()


class Shape(Base):
    """A shape."""

    sides = 0

    def area(self):
        return 0

    @property
    def name(self):
        return "shape"

    @name.setter
    def name(self, value):
        self._name = value

    class Meta:
        def inner(self):
            return 1


if __name__ == "__main__":
    top(1, 2)
'''


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def source(path: Path) -> Source:
    srcs = list(scan_sources([path]))
    assert len(srcs) == 1, srcs
    return srcs[0]


def read(path: Path, cfg: IngestCfg | None = None, **kw) -> list[Item]:
    return read_source(source(path), cfg or IngestCfg(), **kw)


def save_png(path: Path, size=(8, 8), color=(200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format="PNG")
    return path


# --- Python code -------------------------------------------------------------------------------


def test_python_split_into_functions_methods_classes_and_module(tmp_path):
    path = write(tmp_path / "shapes.py", PY)
    items = read(path)
    lines = PY.split("\n")
    by_symbol: dict[str, list[Item]] = {}
    for it in items:
        assert it.modality == "code" and it.language == "python" and it.source == str(path)
        by_symbol.setdefault(it.symbol, []).append(it)
    assert set(by_symbol) == {
        "<module>", "top", "fetch", "Shape", "Shape.area", "Shape.name", "Shape.Meta", "Shape.Meta.inner"
    }  # fmt: skip
    top = by_symbol["top"][0]
    assert (top.start_line, top.end_line) == (7, 12)  # decorators included
    assert top.text == "\n".join(lines[6:12])
    assert top.text.startswith("@cached\n@other(arg=1)\ndef top(a,")
    assert top.key == f"{path}#top"
    # every function and method is exactly its source lines
    for sym in ("fetch", "Shape.area", "Shape.Meta.inner"):
        it = by_symbol[sym][0]
        assert it.text == "\n".join(lines[it.start_line - 1 : it.end_line])
    # the property getter and setter share a symbol, their keys differ
    getter, setter = by_symbol["Shape.name"]
    assert getter.key == f"{path}#Shape.name"
    assert setter.key == f"{path}#Shape.name@L{setter.start_line}"
    assert "@name.setter" in setter.text
    # the class: header, docstring and attributes, member signatures only
    shape = by_symbol["Shape"][0]
    assert (shape.start_line, shape.end_line) == (19, 37)
    assert '"""A shape."""' in shape.text and "sides = 0" in shape.text and "def area(self):" in shape.text
    assert "return 0" not in shape.text and "self._name = value" not in shape.text
    # module level: docstring, imports, constants, main block, no definitions
    module = by_symbol["<module>"][0]
    assert "import os" in module.text and "LIMIT = 3" in module.text and "top(1, 2)" in module.text
    assert "def " not in module.text
    keys = [it.key for it in items]
    assert len(keys) == len(set(keys))
    assert [it.start_line for it in items] == sorted(it.start_line for it in items)


def test_python_very_long_function_is_windowed(tmp_path):
    body = "\n".join(f"    x{i} = {i}" + ("\n" if i % 7 == 6 else "") for i in range(120))
    path = write(tmp_path / "long.py", f"def long():\n{body}\n    return x0\n")
    cfg = IngestCfg(code_window_lines=30, code_window_overlap=5)
    items = read(path, cfg)
    assert len(items) > 3
    assert all(it.symbol == "long" for it in items)
    assert all(it.end_line - it.start_line + 1 <= 30 for it in items)
    assert items[0].start_line == 1 and items[-1].text.endswith("return x0")
    assert len({it.key for it in items}) == len(items)
    for a, b in zip(items, items[1:]):
        assert b.start_line <= a.end_line + 1  # no line is lost between windows


def test_python_syntax_error_falls_back_to_windows(tmp_path):
    src = "def broken(:\n    pass\n\n" + "\n".join(f"line_{i} = {i}" for i in range(100)) + "\n"
    path = write(tmp_path / "broken.py", src)
    items = read(path, IngestCfg(code_window_lines=40, code_window_overlap=5))
    assert len(items) >= 3
    assert all(it.symbol is None and it.meta["splitter"] == "window" for it in items)
    assert items[0].key == f"{path}#L{items[0].start_line}-{items[0].end_line}"
    assert items[0].start_line == 1 and items[-1].end_line == 103
    assert all(it.end_line - it.start_line + 1 <= 40 for it in items)


def test_js_windowed_fallback_prefers_blank_lines_and_overlaps(tmp_path):
    blocks = [f"function f{i}(a) {{\n  const v = a * {i};\n  return v + 1;\n}}\n" for i in range(30)]
    src = "\n".join(blocks)  # 30 blocks of 4 lines, separated by blank lines
    path = write(tmp_path / "app.js", src)
    cfg = IngestCfg(code_window_lines=20, code_window_overlap=3, tree_sitter=False)
    items = read(path, cfg)
    lines = src.split("\n")
    assert all(it.language == "javascript" and it.meta["splitter"] == "window" for it in items)
    assert all(it.key == f"{path}#L{it.start_line}-{it.end_line}" for it in items)
    for it in items:
        assert it.text == "\n".join(lines[it.start_line - 1 : it.end_line])
        assert it.end_line - it.start_line + 1 <= 20
    for a, b in zip(items, items[1:]):
        assert lines[a.end_line].strip() == ""  # each window but the last ends just before a blank line
        assert b.start_line <= a.end_line  # neighbours overlap
    covered = set().union(*(range(it.start_line, it.end_line + 1) for it in items))
    assert {i + 1 for i, x in enumerate(lines) if x.strip()} <= covered


def test_tree_sitter_splits_javascript_when_a_grammar_is_installed(tmp_path):
    pytest.importorskip("tree_sitter_javascript")
    src = "import x from 'y';\n\nfunction add(a, b) {\n  return a + b;\n}\n\nexport class Box {\n  open() {\n    return 1;\n  }\n}\n\nconst mul = (a, b) => a * b;\n"
    items = read(write(tmp_path / "m.js", src))
    assert items[0].meta["splitter"] == "tree-sitter"
    symbols = {it.symbol for it in items}
    assert {"add", "Box", "Box.open", "mul"} <= symbols


# --- text --------------------------------------------------------------------------------------

MD = """# Project

Intro paragraph.

## Install

### From source

Clone the repository.

Run the build.

```
# not a heading
make install
```

## Usage
Usage text.
"""


def test_markdown_chunks_carry_heading_paths_and_line_spans(tmp_path):
    path = write(tmp_path / "README.md", MD)
    items = read(path)
    lines = MD.split("\n")
    assert [it.title for it in items] == [
        "Project", "Project > Install > From source", "Project > Install > From source", "Project > Usage"
    ]  # fmt: skip
    for it in items:
        assert it.key == f"{path}#L{it.start_line}-{it.end_line}"
        assert it.text == "\n".join(lines[it.start_line - 1 : it.end_line])
    install, fence = items[1], items[2]
    # the empty "## Install" joins its subsection
    assert install.modality == "text" and install.start_line == 5
    # the fenced block is a code item of its own (mmrag/ingest/fences.py), cut out of the prose
    assert fence.modality == "code" and fence.text == "# not a heading\nmake install"
    assert "make install" not in install.text


def test_markdown_long_section_is_cut_with_overlap(tmp_path):
    paras = [f"Paragraph {i} " + " ".join(f"word{i}_{j}" for j in range(12)) for i in range(20)]
    path = write(tmp_path / "long.md", "# Guide\n\n" + "\n\n".join(paras) + "\n")
    cfg = IngestCfg(max_chunk_chars=400, chunk_overlap_chars=150)
    items = read(path, cfg)
    assert len(items) > 4
    assert all(len(it.text) <= 400 for it in items)
    assert all(it.title == "Guide" for it in items)
    for a, b in zip(items, items[1:]):
        assert b.start_line <= a.end_line  # the next chunk repeats the tail of the previous one
        assert a.text.split("\n")[-1] in b.text
    text = "\n".join(it.text for it in items)
    assert all(p in text for p in paras)


def test_setext_headings_and_front_matter(tmp_path):
    src = "---\ntitle: x\n---\n\nTop\n===\n\nBody one.\n\nSub\n---\n\nBody two.\n"
    items = read(write(tmp_path / "s.md", src))
    titles = [it.title for it in items]
    assert titles[-2:] == ["Top", "Top > Sub"]


def test_rst_headings_by_underline_and_overline(tmp_path):
    src = "=====\nGuide\n=====\n\nIntro.\n\nInstall\n-------\n\nSteps.\n\nFrom source\n~~~~~~~~~~~\n\nMore.\n\nUsage\n-----\n\nUse.\n"
    items = read(write(tmp_path / "guide.rst", src))
    assert [it.title for it in items] == [
        "Guide",
        "Guide > Install",
        "Guide > Install > From source",
        "Guide > Usage",
    ]
    assert items[0].start_line == 1 and items[0].meta["format"] == "rst"


def test_plain_text_paragraphs(tmp_path):
    path = write(tmp_path / "notes.txt", "first line\nstill first\n\n\nsecond para\n")
    items = read(path)
    assert len(items) == 1 and items[0].title == "notes.txt"
    assert (items[0].start_line, items[0].end_line) == (1, 5)


# --- JSONL -------------------------------------------------------------------------------------


def test_jsonl_beir_records_text_code_and_image(tmp_path):
    save_png(tmp_path / "data" / "imgs" / "cat.png")
    recs = [
        {"_id": "d1", "title": "Doc", "text": "plain text"},
        {"_id": 2, "text": "def f(): pass", "modality": "code", "language": "python"},
        {"_id": "i1", "text": "", "modality": "image", "image": "imgs/cat.png", "caption": "a cat"},
    ]
    path = write(tmp_path / "data" / "corpus.jsonl", "\n".join(json.dumps(r) for r in recs) + "\n")
    src = source(path)
    assert src.kind == "jsonl"
    items = read_source(src)
    assert [it.key for it in items] == ["d1", "2", "i1"]
    assert [it.modality for it in items] == ["text", "code", "image"]
    assert items[0].title == "Doc" and items[0].source == str(path)
    assert items[1].language == "python"
    assert items[2].image == str(tmp_path / "data" / "imgs" / "cat.png") and items[2].text == "a cat"
    assert [it.meta["line"] for it in items] == [1, 2, 3]


def test_jsonl_bad_lines_are_reported_and_good_ones_kept(tmp_path):
    lines = [
        json.dumps({"_id": "a", "text": "good one"}),
        "{not json",
        json.dumps({"text": "no id"}),
        json.dumps({"_id": "b"}),
        json.dumps({"_id": "a", "text": "duplicate"}),
        json.dumps({"_id": "c", "text": "x", "modality": "video"}),
        json.dumps({"_id": "d", "modality": "image", "image": "missing.png"}),
        "",
        json.dumps({"_id": "e", "text": "good two"}),
    ]
    path = write(tmp_path / "c.jsonl", "\n".join(lines))
    errors: list[IngestError] = []
    items = read_source(source(path), on_error=errors.append)
    assert [(it.key, it.text) for it in items] == [("a", "good one"), ("e", "good two")]
    assert [e.reason.split(":")[0] for e in errors] == [f"line {n}" for n in (2, 3, 4, 5, 6, 7)]
    assert all(e.path == str(path) for e in errors)
    assert "duplicate _id 'a'" in errors[3].reason and "video" in errors[4].reason
    with pytest.raises(IngestError, match="line 2: bad JSON"):
        read_source(source(path))


def test_jsonl_in_folders_only_when_asked(tmp_path):
    write(tmp_path / "log.jsonl", '{"event": 1}\n')
    write(tmp_path / "a.md", "# A\n\ntext\n")
    assert [s.kind for s in scan_sources([tmp_path])] == ["text"]
    assert [s.kind for s in scan_sources([tmp_path], IngestCfg(walk_jsonl=True))] == ["text", "jsonl"]


# --- images ------------------------------------------------------------------------------------


def test_image_caption_from_sidecar_which_is_not_indexed_as_text(tmp_path):
    img = save_png(tmp_path / "IMG_0001.png", size=(12, 7))
    write(tmp_path / "IMG_0001.txt", "  A red square\non a table.\n")
    write(tmp_path / "notes.txt", "unrelated notes\n")
    srcs = list(scan_sources([tmp_path]))
    assert [(os.path.basename(s.path), s.kind) for s in srcs] == [
        ("IMG_0001.png", "image"),
        ("notes.txt", "text"),
    ]
    (item,) = read_source(srcs[0])
    assert item.modality == "image" and item.key == str(img) and item.image == str(img)
    assert item.text == "A red square on a table."
    assert item.title == "IMG_0001.png"
    assert item.meta["width"] == 12 and item.meta["height"] == 7 and item.meta["format"] == "PNG"
    assert len(item.meta["image_sha256"]) == 64


def test_image_caption_from_file_name(tmp_path):
    save_png(tmp_path / "golden_retriever-puppy.png")
    save_png(tmp_path / "sunsetOverLake.png")
    captions = [read_source(s)[0].text for s in scan_sources([tmp_path])]
    assert captions == ["golden retriever puppy", "sunset Over Lake"]


# --- walk, fingerprint, registry ---------------------------------------------------------------


def test_scan_is_sorted_deterministic_and_skips_excluded_hidden_and_unknown(tmp_path):
    for rel in ["b.py", "a.md", "sub/z.py", "sub/a.rst", "a_dir/x.py", "node_modules/m.js", ".git/h.py",
                ".hidden/x.py", "data.bin", "sub/.secret.py", "Makefile"]:  # fmt: skip
        write(tmp_path / rel, "x = 1\n")
    errors: list[IngestError] = []
    first = [os.path.relpath(s.path, tmp_path) for s in scan_sources([tmp_path], on_error=errors.append)]
    second = [os.path.relpath(s.path, tmp_path) for s in scan_sources([tmp_path])]
    assert first == second == ["a.md", "b.py", "a_dir/x.py", "sub/a.rst", "sub/z.py"]
    assert errors == []
    s = next(iter(scan_sources([tmp_path / "b.py"])))
    assert s.root == str(tmp_path / "b.py") and s.size == 6 and s.mtime_ns > 0


def test_scan_keeps_the_users_spelling_and_reports_missing_paths(tmp_path):
    write(tmp_path / "real" / "a.py", "x = 1\n")
    os.symlink(tmp_path / "real", tmp_path / "link")
    errors: list[IngestError] = []
    srcs = list(scan_sources([tmp_path / "link", tmp_path / "nope"], on_error=errors.append))
    assert [s.path for s in srcs] == [str(tmp_path / "link" / "a.py")]
    assert srcs[0].root == str(tmp_path / "link")
    assert [e.path for e in errors] == [str(tmp_path / "nope")]
    with pytest.raises(IngestError):
        list(scan_sources([tmp_path / "nope"]))


def test_same_file_under_two_roots_once(tmp_path):
    write(tmp_path / "d" / "a.py", "x = 1\n")
    srcs = list(scan_sources([tmp_path, tmp_path / "d", tmp_path / "d" / "a.py"]))
    assert len(srcs) == 1


def test_fingerprint_follows_content_not_mtime(tmp_path):
    path = write(tmp_path / "a.py", "x = 1\n")
    f1 = fingerprint(source(path))
    os.utime(path, ns=(1, 1))
    assert fingerprint(source(path)) == f1
    path.write_text("x = 2\n")
    assert fingerprint(source(path)) != f1


def test_register_reader_adds_an_extension(tmp_path):
    def read_log(src: Source, cfg: IngestCfg, on_error=None) -> list[Item]:
        return [Item(key=src.path, modality="text", source=src.path, text=Path(src.path).read_text())]

    register_reader([".mylog"], "text", read_log)
    assert list_readers()[".mylog"] == "text"
    write(tmp_path / "a.MYLOG", "hello")
    (item,) = list(iter_items([tmp_path]))
    assert item.text == "hello"
    with pytest.raises(ConfigError, match="valid kinds"):
        register_reader(".x", "video", read_log)


def test_cfg_rejects_bad_values():
    with pytest.raises(ConfigError, match="code_window_overlap"):
        IngestCfg(code_window_lines=10, code_window_overlap=10)
    with pytest.raises(ConfigError, match="chunk_overlap_chars"):
        IngestCfg(max_chunk_chars=100, chunk_overlap_chars=200)
