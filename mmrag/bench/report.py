"""One row per figure: what mmrag measured, what the reference measured, their ratio, the target.

Ratios are taken side by side in one run on the same inputs, which survives a noisy shared machine
far better than absolute numbers do. Benchmarks return `Figure`s; the CLI prints or dumps them.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Figure:
    """One measured figure. `target` reads against `ratio` when a reference exists, else `value`."""

    name: str
    value: float  # mmrag's own measure (a rate, a latency, a recall ...)
    unit: str = ""
    reference: float | None = None  # the same measure for the reference library, same inputs
    ratio: float | None = None  # value / reference, or its inverse for "lower is better" figures
    target: float | None = None
    higher_is_better: bool = True  # how `ratio` (or `value`) compares with `target`
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def met(self) -> bool | None:
        measured = self.ratio if self.ratio is not None else self.value
        if self.target is None or measured is None:
            return None
        return measured >= self.target if self.higher_is_better else measured <= self.target

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "met": self.met}


def speed_ratio(
    name: str, mmrag: float, reference: float, unit: str, target: float, note: str = ""
) -> Figure:
    """A throughput figure: mmrag's rate over the reference's rate (higher is better)."""
    return Figure(name, mmrag, unit, reference, mmrag / reference if reference else None, target, True, note)


def interleaved(fns: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[float]]:
    """Seconds per call of each function, alternating A, B, A, B ... so load drifts hit both alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


@dataclass
class ProcessRun:
    """One whole process, as a user meets it: wall seconds, peak resident memory, CPU seconds."""

    seconds: float
    peak_rss: int  # bytes: the process's resident high-water mark (VmHWM), after its exec
    cpu_seconds: float  # user + system
    output: str


def run_process(
    cmd: Sequence[str], *, env: dict[str, str] | None = None, cwd: str | None = None
) -> ProcessRun:
    """Run `cmd` to its end in a fresh process; its own CPU time (wait4) and memory high-water mark.

    The peak is the kernel's VmHWM of the process after its exec, read every 20 ms: rusage's
    ru_maxrss would count the benchmark's own memory, which a forked child starts out sharing.
    Output goes to a temporary file rather than a pipe, so a chatty process cannot block on it.
    A non-zero exit raises RuntimeError with the end of the output.
    """
    import os
    import subprocess
    import tempfile

    with tempfile.TemporaryFile("w+") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        peak = 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, _vm_hwm(proc.pid))
            time.sleep(0.02)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        output = log.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}: {output[-1500:]}")
    return ProcessRun(seconds, peak, usage.ru_utime + usage.ru_stime, output)


def _vm_hwm(pid: int) -> int:
    """Bytes of a running process's resident high-water mark (Linux /proc); 0 where unreadable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def paired_ratio(numer: Sequence[float], denom: Sequence[float]) -> float:
    """Median over rounds of numer[i] / denom[i]: each pair ran back to back under the same load."""
    return statistics.median(a / b for a, b in zip(numer, denom) if b > 0)


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def format_table(figures: Sequence[Figure]) -> str:
    """figure | mmrag | reference | ratio | target | met? as an aligned text table, notes below; figures
    with an `extra["table"]` title form a table of their own under that title, in order of first use."""
    groups: dict[str, list[Figure]] = {}
    for f in figures:
        groups.setdefault(str(f.extra.get("table", "")), []).append(f)
    return "\n\n".join((f"{title}\n" if title else "") + _table(group) for title, group in groups.items())


def _table(figures: Sequence[Figure]) -> str:
    head = ("figure", "mmrag", "reference", "ratio", "target", "met?")
    rows = [head]
    for f in figures:
        op = ">=" if f.higher_is_better else "<="
        met = {True: "yes", False: "NO", None: "-"}[f.met]
        rows.append(
            (
                f.name,
                f"{_fmt(f.value)} {f.unit}".strip(),
                _fmt(f.reference),
                f"{_fmt(f.ratio)}x" if f.ratio is not None else "-",
                f"{op} {_fmt(f.target)}" if f.target is not None else "-",
                met,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    notes = [f"  {f.name}: {f.note}" for f in figures if f.note]
    return "\n".join(lines + (["notes:", *notes] if notes else []))
