"""Finding sources: a deterministic, loop-safe walk of folders and files that never recurses."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from mmrag.errors import IngestError
from mmrag.ingest.camera import shadowed_raws
from mmrag.ingest.decode import sha256_file
from mmrag.ingest.ignore import Ignored, IgnoreRules
from mmrag.ingest.readers import read_source, reader_for
from mmrag.ingest.spec import DEFAULT_CFG, IngestCfg, Source
from mmrag.items import Item

OnError = Callable[[IngestError], None]
OnIgnored = Callable[[Ignored], None]


class _Dir(NamedTuple):
    """A directory on the stack, linked to its parent so a symlink back to an ancestor is seen."""

    path: str
    dev_ino: tuple[int, int]
    parent: _Dir | None

    def ancestor(self, dev_ino: tuple[int, int]) -> _Dir | None:
        node: _Dir | None = self
        while node is not None:
            if node.dev_ino == dev_ino:
                return node
            node = node.parent
        return None


def _raise(err: IngestError) -> None:
    raise err


def _why(e: OSError) -> str:
    return e.strerror or str(e)


def scan_sources(
    paths: Sequence[str | Path],
    cfg: IngestCfg = DEFAULT_CFG,
    on_error: OnError | None = None,
    on_ignored: OnIgnored | None = None,
    on_unread: Callable[[str], None] | None = None,
) -> Iterator[Source]:
    """Sources under each path (a folder, walked, or a file), in sorted order; problems go to on_error
    (None: raised). Files inside folders that no reader takes go to on_unread; what ignore rules
    leave out (cfg.ignore_files) goes to on_ignored. A file named on its own is always taken."""
    report = on_error or _raise
    seen: set[str] = set()
    for p in [paths] if isinstance(paths, (str, Path)) else paths:
        root = os.path.abspath(os.fspath(p))
        try:
            st = os.stat(root)
        except OSError as e:
            broken = os.path.islink(root)
            report(IngestError(root, "broken symlink" if broken else f"cannot open: {_why(e)}"))
            continue
        if stat.S_ISDIR(st.st_mode):
            yield from _walk(root, st, cfg, report, seen, on_ignored or (lambda _: None), on_unread)
        elif stat.S_ISREG(st.st_mode):
            spec = reader_for(root)
            if spec is None:
                ext = os.path.splitext(root)[1] or "(none)"
                report(IngestError(root, f"unsupported file type {ext!r}"))
            elif root not in seen:
                seen.add(root)
                yield Source(root, root, spec.kind, st.st_size, st.st_mtime_ns)
        else:
            report(IngestError(root, "not a regular file or directory"))


def _walk(
    root: str,
    root_st: os.stat_result,
    cfg: IngestCfg,
    report: OnError,
    seen: set[str],
    ignored: OnIgnored,
    unread: Callable[[str], None] | None = None,
) -> Iterator[Source]:
    """Depth-first with an explicit stack: each folder's files (sorted), then its subfolders (sorted)."""
    stack = [_Dir(root, (root_st.st_dev, root_st.st_ino), None)]
    ignore_rules = IgnoreRules.for_root(root) if cfg.ignore_files else None
    while stack:
        here = stack.pop()
        try:
            with os.scandir(here.path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            report(IngestError(here.path, f"cannot list directory: {_why(e)}"))
            continue
        rules = ignore_rules.at(here.path, (e.name for e in entries)) if ignore_rules else None
        pictures = [e.name for e in entries if (s := reader_for(e.name)) and s.kind == "image"]
        images = {os.path.splitext(n)[0] for n in pictures}
        developed = shadowed_raws(pictures)  # RAWs with a JPEG (or other viewable) sibling: that one is shown
        subdirs = []
        for entry in entries:
            name = entry.name
            if cfg.skip_hidden and name.startswith("."):
                continue
            try:
                is_link = entry.is_symlink()
                if is_link and not cfg.follow_symlinks:
                    continue
                st = entry.stat(follow_symlinks=True)
            except OSError as e:
                if is_link and isinstance(e, FileNotFoundError):
                    report(IngestError(entry.path, "broken symlink"))
                else:
                    report(IngestError(entry.path, f"cannot stat: {_why(e)}"))
                continue
            if stat.S_ISDIR(st.st_mode):
                if name in cfg.exclude:
                    continue
                loop = here.ancestor((st.st_dev, st.st_ino))
                if loop is not None:
                    report(IngestError(entry.path, f"symlink loop: points back to {loop.path}; not followed"))
                    continue
                if rules and rules.ignores(entry.path, True):
                    ignored(Ignored(entry.path, root, True))
                    continue
                subdirs.append(_Dir(entry.path, (st.st_dev, st.st_ino), here))
            elif stat.S_ISREG(st.st_mode):
                spec = reader_for(name)
                if spec is None or (spec.kind == "jsonl" and not cfg.walk_jsonl):
                    if spec is None and unread and not (rules and rules.ignores(entry.path, False)):
                        unread(entry.path)  # no reader for its type: told, never skipped in silence
                    continue
                if name.endswith(".txt") and name[:-4] in images:  # an image's caption, read with the image
                    continue
                if name in developed:
                    continue
                if entry.path in seen:
                    continue
                if rules and rules.ignores(entry.path, False):
                    ignored(Ignored(entry.path, root, False))
                    continue
                seen.add(entry.path)
                yield Source(entry.path, root, spec.kind, st.st_size, st.st_mtime_ns)
        stack.extend(reversed(subdirs))


def fingerprint(source: Source) -> str:
    """sha256 of the file's bytes, streamed: what changed, whatever the mtime says."""
    return sha256_file(source.path)


def iter_items(
    paths: Sequence[str | Path], cfg: IngestCfg = DEFAULT_CFG, on_error: OnError | None = None
) -> Iterator[Item]:
    """scan_sources then read_source, every problem reported and every good Item kept."""
    report = on_error or _raise
    for source in scan_sources(paths, cfg, report):
        try:
            yield from read_source(source, cfg, report)
        except IngestError as e:
            report(e)
