"""What ingestion is told (IngestCfg) and what the walk finds (Source)."""

from __future__ import annotations

from dataclasses import dataclass

KINDS: tuple[str, ...] = ("image", "code", "text", "jsonl", "document")

DEFAULT_EXCLUDE: tuple[str, ...] = (
    ".git",
    ".hg",
    ".svn",
    "node_modules",
    "__pycache__",
    ".venv",
    "venv",
    ".tox",
    ".nox",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".ipynb_checkpoints",
    "site-packages",
    ".eggs",
)


@dataclass(frozen=True)
class IngestCfg:
    """How sources are found and cut into Items; every limit turns a bad file into one IngestError."""

    max_file_bytes: int = 5_000_000  # larger code/text is almost always generated or data, not prose
    max_image_pixels: int = 128_000_000  # above Pillow's 89.5 MP default so 100 MP camera photos pass
    code_window_lines: int = 60  # windowed fallback: about one screen of code
    code_window_overlap: int = 10  # lines shared by neighbouring windows so no statement is cut off
    max_code_chars: int = 4_000  # a code encoder reads ~512 tokens; minified lines are cut by characters
    max_chunk_chars: int = 1_000  # MiniLM reads ~256 word pieces, about 1,000 characters of English
    chunk_overlap_chars: int = 150  # trailing lines carried into the next text chunk for context
    max_caption_chars: int = 1_000  # CLIP reads 77 tokens; longer sidecar captions are cut
    follow_symlinks: bool = True
    walk_jsonl: bool = False  # JSONL inside folders is mostly logs; name corpus files explicitly
    skip_hidden: bool = True  # dot-files and dot-dirs are config, caches and macOS '._' junk
    tree_sitter: bool = True  # use a tree-sitter grammar for non-Python code when one is importable
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE  # directory names never walked into
    ignore_files: bool = True  # .gitignore, .git/info/exclude and .ignore, as git reads them (ignore.py)
    # documents (PDF, notebooks): mmrag/ingest/pdf.py, notebook.py, isolate.py
    max_document_bytes: int = 512_000_000  # scanned books run to hundreds of MB; past this it is an archive
    doc_timeout_s: float = 300.0  # one document's parse, in its own process: ~20 s for 2,000 pages here
    doc_memory_bytes: int = 3 << 30  # address space of the parser process; a bomb fails alone
    min_picture_px: int = 64  # an embedded picture smaller than this on either side is an icon or a rule
    max_output_chars: int = 500  # a notebook's text output kept beside its cell: the gist, not the log
    picture_dir: str | None = None  # where document pictures are kept (indexing: the collection's folder)
    # web pages and books: mmrag/ingest/html.py, epub.py
    max_html_bytes: int = 50_000_000  # a saved page past this is a data dump or a generated report, not prose
    max_epub_unpacked_bytes: int = 1_000_000_000  # the sum of an EPUB's parts inflated; past it, a zip bomb

    def __post_init__(self) -> None:
        from mmrag.errors import ConfigError

        for name in ("max_file_bytes", "max_image_pixels", "code_window_lines", "max_code_chars",
                     "max_document_bytes", "doc_timeout_s", "doc_memory_bytes", "min_picture_px",
                     "max_html_bytes", "max_epub_unpacked_bytes"):  # fmt: skip
            if getattr(self, name) <= 0:
                raise ConfigError(f"IngestCfg.{name} must be > 0, got {getattr(self, name)!r}")
        if self.max_chunk_chars < 16:
            raise ConfigError(f"IngestCfg.max_chunk_chars must be >= 16, got {self.max_chunk_chars!r}")
        if not 0 <= self.code_window_overlap < self.code_window_lines:
            raise ConfigError(
                f"IngestCfg.code_window_overlap must be in [0, code_window_lines={self.code_window_lines}), "
                f"got {self.code_window_overlap!r}"
            )
        if not 0 <= self.chunk_overlap_chars < self.max_chunk_chars:
            raise ConfigError(
                f"IngestCfg.chunk_overlap_chars must be in [0, max_chunk_chars={self.max_chunk_chars}), "
                f"got {self.chunk_overlap_chars!r}"
            )
        if isinstance(self.exclude, str):
            raise ConfigError(
                f"IngestCfg.exclude must be a tuple of directory names, got the string {self.exclude!r}"
            )


DEFAULT_CFG = IngestCfg()


@dataclass(frozen=True)
class Source:
    """One file the walk found; `path` keeps the user's spelling (absolute, not resolved)."""

    path: str
    root: str  # the path argument it was found under (absolute)
    kind: str  # one of KINDS
    size: int
    mtime_ns: int


def deliver_notes(items: list, notes: list[tuple[str, str]], on_error) -> list:
    """A document's per-part problems (a picture over the cap, a missing chapter) as IngestErrors
    to `on_error`, the rest of the document kept; without on_error the first one is raised."""
    from mmrag.errors import IngestError

    for where, reason in notes:
        err = IngestError(where, reason)
        if on_error is None:
            raise err
        on_error(err)
    return items
