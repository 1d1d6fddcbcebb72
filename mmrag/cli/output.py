"""Everything the CLI prints: progress bars, hit tables, metric tables, warnings."""

from __future__ import annotations

import os
import shutil
import sys


class Progress:
    """Progress per stage on stderr: tqdm bars on a terminal, else one plain line per stage.

    Bars redraw with cursor-control codes, which a log file or pipe would keep as noise, so
    when stderr is not a TTY each stage prints `mmrag: STAGE: DONE/TOTAL` once, when it
    completes (or, unfinished, when the display closes).
    """

    def __init__(self, enabled: bool = True, *, tty: bool | None = None):
        self.enabled = enabled
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.bars: dict = {}
        self.counts: dict[str, tuple[int, int]] = {}  # plain mode: stage -> last (done, total)
        self.printed: set[str] = set()

    def update(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if not self.tty:
            self.counts[stage] = (done, total)
            if total and done >= total:
                self._line(stage)
            return
        from tqdm import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(
                total=total or None,
                desc=stage,
                unit=" " + stage,
                file=sys.stderr,
                leave=True,
                dynamic_ncols=True,
            )
        if total and bar.total != total:
            bar.total = total
        bar.n = done
        bar.refresh()

    def _line(self, stage: str) -> None:
        if stage in self.printed:
            return
        self.printed.add(stage)
        done, total = self.counts[stage]
        print(f"mmrag: {stage}: {done}/{total}" if total else f"mmrag: {stage}: {done}", file=sys.stderr)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        for bar in self.bars.values():
            bar.close()
        for stage in self.counts:
            self._line(stage)


def warn_models(model_set) -> None:
    if getattr(model_set, "warning", None):
        print(f"mmrag: warning: {model_set.warning}", file=sys.stderr)


def counts_line(by_modality: dict[str, int]) -> str:
    """'62 items (32 image, 16 code, 14 text)': counts in words, modalities in their usual order."""
    from mmrag.items import MODALITIES

    total = sum(by_modality.values())
    parts = [f"{by_modality[m]} {m}" for m in (*MODALITIES, *sorted(set(by_modality) - set(MODALITIES)))
             if by_modality.get(m)]  # fmt: skip
    return f"{total} item{'' if total == 1 else 's'}" + (f" ({', '.join(parts)})" if parts else "")


def print_index_summary(report, stats: dict, collection: str) -> None:
    """What one `mmrag index` run did, what the collection now holds, and what to do about the rest."""
    from mmrag.items import ENABLE_IMAGE_SEARCH

    files = f"{report.sources} file{'' if report.sources == 1 else 's'}"
    changed = report.changed_sources
    line = f"indexed {files}: {changed} new or changed, {report.unchanged_sources} unchanged"
    other = report.sources - changed - report.unchanged_sources
    if other > 0:  # failed to read, or pictures waiting for CLIP: both told below
        line += f", {other} not indexed"
    items = [f"{report.items_added} items embedded"]
    if report.items_kept:
        items.append(f"{report.items_kept} kept as they were")
    if report.items_removed:
        items.append(f"{report.items_removed} removed")
    print(f"mmrag: {line}; {', '.join(items)}", file=sys.stderr)
    print(f"mmrag: collection {stats['path']}: {counts_line(stats['by_modality'])}", file=sys.stderr)
    no_clip = not (stats.get("models") or {}).get("clip")
    pictures = stats["by_modality"].get("image", 0)
    if no_clip and pictures:
        print(
            f"mmrag: note: {pictures} picture{'s are' if pictures != 1 else ' is'} searchable by caption only: "
            f"this collection's models have no image encoder; {ENABLE_IMAGE_SEARCH}",
            file=sys.stderr,
        )
    waiting = report.waiting
    if waiting:
        print(
            f"mmrag: note: {len(waiting)} picture{'s' if len(waiting) != 1 else ''} without a caption "
            f"{'wait' if len(waiting) != 1 else 'waits'} for CLIP weights, not indexed (a .txt of the same "
            "name beside a picture makes it "
            f"searchable by that caption); list them: mmrag info --errors -c {collection}",
            file=sys.stderr,
        )
    not_read = getattr(report, "not_read", None)
    if not_read:
        print(f"mmrag: {not_read_line(p for p, _ in not_read)}; list them: mmrag info --errors -c {collection}",
              file=sys.stderr)  # fmt: skip
    if report.errors:
        print(
            f"mmrag: skipped {len(report.errors)} file(s) that could not be read; first ones:",
            file=sys.stderr,
        )
        for path, reason in report.errors[:10]:
            print(f"  {path}: {reason}", file=sys.stderr)
        print(f"all of them: mmrag info --errors -c {collection}", file=sys.stderr)


def not_read_line(paths) -> str:
    """'skipped 12 files mmrag does not read: .mp4 10, .xlsx 2': by type, the commonest first."""
    from collections import Counter

    by = Counter(os.path.splitext(p)[1].lower() or "(no extension)" for p in paths)
    n = sum(by.values())
    kinds = ", ".join(f"{ext} {k}" for ext, k in sorted(by.items(), key=lambda x: (-x[1], x[0])))
    return f"skipped {n} file{'' if n == 1 else 's'} mmrag does not read: {kinds}"


def where(h) -> str:
    """Where a hit is, as a person cites it: `paper.pdf p. 12`, `analysis.ipynb cell 7`, `src/a.py:40`."""
    if h.locator is not None and h.locator.label():
        return f"{h.source} {h.locator.label()}"
    return f"{h.source}:{h.start_line}" if h.start_line else h.source


def _one_line(s: str, width: int) -> str:
    s = " ".join((s or "").split())
    return s if len(s) <= width else s[: width - 1] + "…"


def print_hits(result) -> None:
    if not result.hits:
        print("no results", file=sys.stderr)
        return
    width = shutil.get_terminal_size((100, 20)).columns
    for rank, h in enumerate(result.hits, 1):
        label = f" {h.symbol}" if h.symbol else (f" {h.title}" if h.title else "")
        if (
            h.locator is not None
            and h.title
            and (h.title.startswith(os.path.basename(h.source)) or h.title == h.locator.label())
        ):
            label = ""  # a document part's title repeats its file and locator (a web page's heading)
        part = f" ({h.locator.part})" if h.locator is not None and h.locator.part else ""
        print(f"{rank:>3}. {h.score:.4f}  [{h.modality}]  {where(h)}{part}{label}")
        print(f"      routes: {', '.join(f'{k}={v:.3f}' for k, v in sorted(h.routes.items()))}")
        snippet = _one_line(h.text, max(20, width - 8))
        if snippet:
            print(f"      {snippet}")
        if h.also:
            more = f" and {len(h.also) - 3} more" if len(h.also) > 3 else ""
            print(f"      the same picture is also at: {', '.join(h.also[:3])}{more}")
    t = result.timings.get("total_ms")
    if t is not None:
        print(f"{len(result.hits)} hits in {t:.1f} ms", file=sys.stderr)


def print_metrics(m: dict) -> None:
    rows = [
        ("queries", f"{int(m['queries'])}"),
        (f"MRR@{m.get('cutoff', 1000)}", f"{m['mrr']:.4f}"),
        ("nDCG@10", f"{m['ndcg@10']:.4f}"),
        ("P@1", f"{m['p@1']:.4f}"),
        ("P@10", f"{m['p@10']:.4f}"),
        ("R@1", f"{m['recall@1']:.4f}"),
        ("R@10", f"{m['recall@10']:.4f}"),
        ("R@100", f"{m['recall@100']:.4f}"),
    ]
    for name, value in rows:
        print(f"{name:<10} {value}")
