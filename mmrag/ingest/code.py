"""Source code: Python split by `ast` into functions, methods, classes and module code; other
languages by a tree-sitter grammar when one is installed, else by windows of lines."""

from __future__ import annotations

import ast
import os

from mmrag.ingest.chunking import Lines
from mmrag.ingest.code_chunks import MODULE, Chunk, module_chunks, summary_chunk, symbol_chunk, window_chunks
from mmrag.ingest.decode import read_text
from mmrag.ingest.spec import IngestCfg, Source
from mmrag.items import Item

LANGUAGES: dict[str, str] = {
    ".py": "python", ".pyw": "python", ".pyi": "python",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript", ".tsx": "tsx",
    ".java": "java", ".go": "go", ".rs": "rust", ".c": "c", ".h": "c",
    ".cpp": "cpp", ".cc": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp", ".hxx": "cpp",
    ".cs": "csharp", ".rb": "ruby", ".php": "php", ".kt": "kotlin", ".kts": "kotlin",
    ".scala": "scala", ".swift": "swift", ".sh": "bash", ".bash": "bash", ".zsh": "bash",
    ".lua": "lua", ".r": "r", ".m": "objc", ".mm": "objc", ".sql": "sql", ".pl": "perl", ".pm": "perl",
    ".hs": "haskell", ".jl": "julia", ".dart": "dart", ".ex": "elixir", ".exs": "elixir", ".erl": "erlang",
    ".clj": "clojure", ".ml": "ocaml", ".fs": "fsharp", ".vue": "vue", ".svelte": "svelte", ".zig": "zig",
}  # fmt: skip
CODE_EXTS: tuple[str, ...] = tuple(LANGUAGES)


def _span(node: ast.AST) -> tuple[int, int]:
    """0-based inclusive lines of a definition, decorators included."""
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return start - 1, node.end_lineno - 1


_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef)


def python_chunks(text: str, cfg: IngestCfg) -> list[Chunk] | None:
    """Functions, methods ("Class.method"), class summaries and module code; None when `ast` cannot parse."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    doc = Lines(text)
    covered = [False] * len(doc)
    out: list[Chunk] = []

    def add_class(node: ast.ClassDef, qual: str) -> None:
        a, b = _span(node)
        keep = dict.fromkeys(range(a, b + 1))
        for m in node.body:
            if isinstance(m, (*_DEFS, ast.ClassDef)):
                ma, mb = _span(m)
                header_end = max(m.lineno - 1, m.body[0].lineno - 2)  # the signature, without the body
                for i in range(header_end + 1, mb + 1):
                    keep.pop(i, None)
                if isinstance(m, ast.ClassDef):
                    add_class(m, f"{qual}.{m.name}")
                else:
                    out.extend(symbol_chunk(doc, ma, mb, f"{qual}.{m.name}", "method", cfg))
        out.append(summary_chunk(doc, a, b, [i for i in keep if not doc.blank(i)], qual, cfg))

    for node in tree.body:
        if isinstance(node, _DEFS):
            a, b = _span(node)
            out.extend(symbol_chunk(doc, a, b, node.name, "function", cfg))
        elif isinstance(node, ast.ClassDef):
            add_class(node, node.name)
        else:
            continue
        a, b = _span(node)
        covered[a : b + 1] = [True] * (b - a + 1)
    has_doc = ast.get_docstring(tree, clean=False) is not None
    out.extend(module_chunks(doc, covered, cfg, keep_short=has_doc or not out))
    return sorted(out, key=lambda c: (c.start, -c.end))


def code_chunks(text: str, language: str, cfg: IngestCfg) -> tuple[list[Chunk], str]:
    """(chunks, splitter used: 'ast', 'tree-sitter' or 'window')."""
    if language == "python":
        chunks = python_chunks(text, cfg)
        if chunks is not None:
            return chunks, "ast"
    elif cfg.tree_sitter:
        from mmrag.ingest.treesitter import treesitter_chunks

        chunks = treesitter_chunks(text, language, cfg)
        if chunks is not None:
            return chunks, "tree-sitter"
    doc = Lines(text)
    return window_chunks(doc, 0, len(doc) - 1, cfg), "window"


def unique_keys(path: str, chunks: list[Chunk]) -> list[str]:
    """f"{path}#{symbol}" (then "@L{start}" for a repeat), f"{path}#L{start}-{end}" for windows."""
    seen: set[str] = set()
    keys = []
    for c in chunks:
        base = f"{path}#{c.symbol}" if c.symbol else f"{path}#L{c.start}-{c.end}"
        candidates = [base, f"{base}@L{c.start}", f"{base}@L{c.start}-{c.end}"] if c.symbol else [base]
        key = next((k for k in candidates if k not in seen), None)
        n = 1
        while key is None or key in seen:
            n += 1
            key = f"{candidates[-1]}.{n}"
        seen.add(key)
        keys.append(key)
    return keys


def read_code(source: Source, cfg: IngestCfg, on_error: object = None) -> list[Item]:
    """Code Items with language, symbol and 1-based inclusive line span."""
    path = source.path
    language = LANGUAGES.get(os.path.splitext(path)[1].lower(), "unknown")
    text, encoding = read_text(path, cfg.max_file_bytes)
    chunks, splitter = code_chunks(text, language, cfg)
    name = os.path.basename(path)
    items = []
    for key, c in zip(unique_keys(path, chunks), chunks):
        meta: dict[str, object] = {"kind": c.kind, "splitter": splitter}
        if encoding != "utf-8":
            meta["encoding"] = encoding
        if c.truncated:
            meta["truncated"] = True
        title = f"{name} {c.symbol}" if c.symbol and c.symbol != MODULE else name
        items.append(Item(key=key, modality="code", source=path, text=c.text, title=title, language=language,
                          symbol=c.symbol, start_line=c.start, end_line=c.end, meta=meta))  # fmt: skip
    return items
