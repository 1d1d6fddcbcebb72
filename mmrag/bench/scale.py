"""Scale benchmark: an on-disk IVF-PQ index over millions of embedding-like vectors.

Vectors come from a seeded mixture of Gaussian components shaped like real embeddings,
generated chunk by chunk so no more than one chunk is ever in RAM:
- 10k component centres with a power-law spectrum under a random rotation (real embedding
  sets have a few dominant directions, not isotropic noise);
- Zipf-like component weights (lognormal), so some topics are large and most are small;
- within a component, an offset in a 64-d subspace (one of 16, shared by a family of
  components) whose variance decays as a power law (an effective dimension of ~25, as in PCA
  of CLIP/MiniLM embeddings), plus a small isotropic residual, with a lognormal norm:
  cos(vector, centre) is ~0.8 on average;
- everything normalised to unit length.
Queries are drawn from the same mixture with another seed. Exact top-k is accumulated
chunk by chunk while the index is built (brute force, fp32), so recall is measured against
the true neighbours. Searching runs in a fresh child process so its RSS is that of a
server that has just opened the index.

A killed run resumes where it stopped when run again with the same spec: the trained index,
every recorded shard and the exact top-k accumulated so far (progress.json and gt.npz, written
after each shard) are kept, and only what is missing is computed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from indexes.atomic import atomic_save_npz, atomic_write_json
from indexes.ondisk import LargeIndexConfig, OnDiskIndex, choose_large
from mmrag.errors import MMRagError

DEFAULT_RAM_BUDGET = 2 * 1024**3  # the target: <= 2 GB at query time for 10M vectors
CODE_RAM_SHARE = 0.5  # half the budget for PQ codes + ids; the rest for the process and rescoring pages
QUICK_N = 200_000


@dataclass(frozen=True)
class MixtureSpec:
    """The synthetic embedding distribution; every field is part of the data's identity."""

    dim: int = 512
    components: int = 10_000
    spread: float = 0.75  # median offset norm around a unit centre: cos(x, centre) ~ 0.8
    rank: int = 64  # offsets live in a 64-d subspace per component family (low intrinsic dimension)
    spectrum_decay: float = 0.5  # offset std along subspace axis i ~ (i+1)^-0.5: effective dim ~25
    families: int = 16  # components share one of 16 offset subspaces, so directions vary by topic
    noise: float = 0.1  # isotropic residual, relative to the offset norm
    centre_decay: float = 0.25  # centres are anisotropic too, but far less than offsets
    seed: int = 0


class Mixture:
    """Deterministic chunks of the mixture: chunk i is the same vectors on every call."""

    def __init__(self, spec: MixtureSpec):
        self.spec = spec
        rng = np.random.default_rng([spec.seed, 0])
        d, c, r = spec.dim, spec.components, min(spec.rank, spec.dim)
        rotation = np.linalg.qr(rng.standard_normal((d, d)))[0].astype(np.float32)
        axis = np.arange(1, d + 1, dtype=np.float32)
        centres = rng.standard_normal((c, d)).astype(np.float32) * axis**-spec.centre_decay
        self._centres = _normalise(centres @ rotation)
        scale = np.arange(1, r + 1, dtype=np.float32) ** -spec.spectrum_decay
        scale /= np.linalg.norm(scale)
        self._bases = [
            (np.linalg.qr(rng.standard_normal((d, r)))[0].T * scale[:, None]).astype(np.float32)
            for _ in range(spec.families)
        ]  # (r, d) per family, rows scaled by the power-law spectrum
        self._family = rng.integers(0, spec.families, c)
        self._norms = (spec.spread * rng.lognormal(0.0, 0.25, c)).astype(np.float32)
        w = rng.lognormal(0.0, 1.0, c)
        self._weights = w / w.sum()

    def chunk(self, stream: int, index: int, n: int) -> np.ndarray:
        """n unit vectors, float32 (n, dim), from seed (seed, stream, index)."""
        spec = self.spec
        rng = np.random.default_rng([spec.seed, stream, index])
        comp = rng.choice(len(self._weights), size=n, p=self._weights)
        fam = self._family[comp]
        x = rng.standard_normal((n, spec.dim), dtype=np.float32)
        x *= spec.noise / np.sqrt(spec.dim)
        z = rng.standard_normal((n, self._bases[0].shape[0]), dtype=np.float32)
        for f, basis in enumerate(self._bases):
            rows = np.flatnonzero(fam == f)
            x[rows] += z[rows] @ basis
        x *= (self._norms[comp] / np.maximum(np.linalg.norm(x, axis=1), 1e-12))[:, None]
        x += self._centres[comp]
        return _normalise(x)

    def chunks(self, stream: int, n: int, chunk: int) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, vectors) for n vectors in chunks of `chunk`."""
        for i, start in enumerate(range(0, n, chunk)):
            yield start, self.chunk(stream, i, min(chunk, n - start))


DATA, QUERIES, TRAIN = 1, 2, 3  # generator streams


@dataclass(frozen=True)
class ScaleSpec:
    """One benchmark run."""

    n: int
    queries: int = 300  # a few hundred queries: recall to +-0.01, p50 to a ms
    k: int = 10
    chunk: int = 250_000  # vectors per shard: ~0.5 GB of fp32 in RAM at a time
    ram_budget: int = DEFAULT_RAM_BUDGET
    sweep: tuple[tuple[int, int], ...] = ((32, 200), (64, 200), (128, 400), (256, 400))  # (nprobe, rescore_k)
    threads: int = 2  # build threads; search is timed on one thread, as one request is served
    store: str = "float16"  # the rescoring store: float16, or int8 (half the disk, for the largest runs)
    mixture: MixtureSpec = MixtureSpec()


@dataclass(frozen=True)
class Targets:
    """What a run must reach: recall and warm p50 at one setting, and peak search RSS."""

    recall: float = 0.90
    p50_ms: float = 50.0
    rss_bytes: int = 4 * 1024**3


def verdict(report: dict, targets: Targets) -> dict:
    """The targets against what the report measured.

    `best` is the warm setting of highest recall among those within the p50 target (None when
    none is): recall and latency must hold at the same setting, as one server runs one."""
    warm = [s for s in report["search"][0]["settings"] if s["pass"] == "warm"]
    fast = [s for s in warm if s["p50_ms"] <= targets.p50_ms]
    best = max(fast, key=lambda s: (s["recall_at_k"], -s["p50_ms"])) if fast else None
    peak = max(r["VmHWM"] for r in report["search"][0]["rss"].values())
    return {
        "targets": asdict(targets),
        "best": best,
        "recall_and_p50_met": best is not None and best["recall_at_k"] >= targets.recall,
        "peak_rss_bytes": peak,
        "rss_met": peak <= targets.rss_bytes,
    }


def run_scale(
    spec: ScaleSpec, folder: str | Path, *, keep: bool = False, log=None, fresh: bool = False
) -> dict:
    """Build (resuming a killed build of the same spec unless `fresh`), search from a fresh
    process, measure; returns a JSON-able report."""
    import faiss

    log = log or (lambda msg: None)
    folder = Path(folder)
    faiss.omp_set_num_threads(spec.threads)
    mix = Mixture(spec.mixture)
    dim = spec.mixture.dim
    config = choose_large(spec.n, dim, int(spec.ram_budget * CODE_RAM_SHARE))
    config = LargeIndexConfig(
        **{**asdict(config), "train_size": min(config.train_size, spec.n), "store_dtype": spec.store}
    )
    log(f"config {config}")
    _check_disk(folder, spec.n, dim, config, spec.chunk)
    # the index config is part of what is resumed: a build whose config changed (another mmrag)
    # starts over rather than mixing shards of two indexes
    identity = _jsonable({**asdict(spec), "index": asdict(config)})
    state = _read_state(folder) if not fresh else None
    if not _resumable(state, identity, folder):
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        state = {"spec": identity, "train_s": 0.0, "add_s": 0.0, "exact_s": 0.0, "gt_shards": 0, "runs": 0}
    else:
        log(f"resuming: {state['gt_shards']} shard(s) of {-(-spec.n // spec.chunk)} already built")
    state["spec"] = identity  # the sweep asked for this time
    report: dict = {"n": spec.n, "dim": dim, "config": asdict(config), "spec": identity}
    if (folder / "index" / "config.json").exists():
        index = OnDiskIndex.load(folder / "index", mmap=True)
    else:
        index = OnDiskIndex.create(folder / "index", dim, config)
    if not index.merged:  # runs that built: searching a finished build again is not one
        state["runs"] += 1
    if not index.is_trained:
        sample = mix.chunk(TRAIN, 0, config.train_size)
        t = time.perf_counter()
        index.train(sample)
        del sample
        state["train_s"] = time.perf_counter() - t
        _write_state(folder, state)
        log(f"trained in {state['train_s']:.0f} s")
    queries = mix.chunk(QUERIES, 0, spec.queries)
    gt_s, gt_i = _read_gt(folder, spec.queries, spec.k, state)
    shards = -(-spec.n // spec.chunk)
    added_now, t_shards = 0, time.perf_counter()
    todo = range(state["gt_shards"], shards) if not index.merged else range(0)
    for i in todo:
        start = i * spec.chunk
        x = mix.chunk(DATA, i, min(spec.chunk, spec.n - start))
        t = time.perf_counter()
        index.add_shard(x, np.arange(start, start + len(x), dtype=np.int64), name=f"{i:05d}")
        state["add_s"] += time.perf_counter() - t
        t = time.perf_counter()
        gt_s, gt_i = _merge_topk(gt_s, gt_i, queries @ x.T, start, spec.k)
        state["exact_s"] += time.perf_counter() - t
        state["gt_shards"] = i + 1
        atomic_save_npz(folder / "gt.npz", scores=gt_s, ids=gt_i)
        _write_state(folder, state)  # last: a shard counts once its top-k is saved
        added_now += len(x)
        rate = added_now / max(time.perf_counter() - t_shards, 1e-9)  # generation, add and top-k
        left = (spec.n - start - len(x)) / max(rate, 1e-9)
        log(
            f"shard {i + 1}/{shards} at {start + len(x):,}/{spec.n:,}: add {state['add_s']:.0f} s, "
            f"{rate:,.0f} vectors/s this run, about {left:.0f} s left"
        )
    report["train_s"], report["add_s"], report["exact_topk_s"] = (
        state["train_s"],
        state["add_s"],
        state["exact_s"],
    )
    if not index.merged:
        t = time.perf_counter()
        index.merge()
        state["merge_s"] = time.perf_counter() - t
        _write_state(folder, state)
    report["merge_s"] = state.get("merge_s", 0.0)
    report["runs"] = state["runs"]  # > 1: the build was resumed
    # summed over runs: a resumed build counts each step once, and ground truth is not part of it
    report["build_s"] = report["train_s"] + report["add_s"] + report["merge_s"]
    del index
    report["disk_bytes"] = _du(folder / "index")
    log(f"merged; build {report['build_s']:.0f} s, {report['disk_bytes'] / 1e9:.2f} GB on disk")
    np.save(folder / "queries.npy", queries, allow_pickle=False)
    report["search"] = _search_in_child(folder, spec, gt_i)
    if not keep:
        shutil.rmtree(folder / "index")
    return report


def _search_in_child(folder: Path, spec: ScaleSpec, gt: np.ndarray) -> list[dict]:
    """Run the sweep in a fresh interpreter (mmap'd index, one thread) and score its answers."""
    out = folder / "search.npz"
    sweep = ",".join(f"{p}:{r}" for p, r in spec.sweep)
    cmd = [sys.executable, "-m", "mmrag.bench.scale", str(folder / "index"), str(folder / "queries.npy")]
    cmd += [str(out), str(spec.k), sweep]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd, check=True, env=env, cwd=Path(__file__).resolve().parents[2])
    with np.load(out, allow_pickle=False) as z:
        stats = json.loads(str(z["stats"]))
        rows = []
        for i, s in enumerate(stats["settings"]):
            found = z[f"ids{i}"]
            recall = np.mean([len(set(found[q]) & set(gt[q])) / spec.k for q in range(len(gt))])
            rows.append({**s, "recall_at_k": float(recall)})
    return [{"rss": stats["rss"], "settings": rows}]


def _child(index_dir: str, queries_path: str, out: str, k: int, sweep: str) -> None:
    """The fresh search process: open the index memory-mapped, time one query at a time."""
    import faiss

    faiss.omp_set_num_threads(1)
    rss = {"start": _rss()}
    index = OnDiskIndex.load(index_dir, mmap=True)
    rss["opened"] = _rss()
    queries = np.load(queries_path, allow_pickle=False)
    settings, arrays = [], {}
    for item in sweep.split(","):
        nprobe, rescore = (int(v) for v in item.split(":"))
        for _pass in ("cold", "warm"):  # first pass pages lists in; the second is a warm server
            lat, cpu, ids = [], [], []
            for q in queries:
                t, c = time.perf_counter(), time.process_time()
                _, found = index.search(q[None], k, nprobe=nprobe, rescore_k=rescore)
                lat.append(time.perf_counter() - t)
                cpu.append(time.process_time() - c)
                ids.append(found[0])
            ms = np.array(lat) * 1000
            settings.append(
                {
                    "nprobe": nprobe,
                    "rescore_k": rescore,
                    "pass": _pass,
                    "p50_ms": float(np.percentile(ms, 50)),
                    "p99_ms": float(np.percentile(ms, 99)),
                    "qps": float(len(ms) / (ms.sum() / 1000)),  # one query at a time, one thread
                    "p50_cpu_ms": float(
                        np.percentile(np.array(cpu) * 1000, 50)
                    ),  # CPU time, apart from waits
                }
            )
            arrays[f"ids{len(settings) - 1}"] = np.stack(ids)
        rss[f"after_{nprobe}_{rescore}"] = _rss()
    stats = json.dumps({"rss": rss, "settings": settings})
    np.savez(out, stats=np.array(stats), **arrays)


def _resumable(state: dict | None, identity: dict, folder: Path) -> bool:
    """Whether `state` is a build of the same vectors and index, whose shards are still on disk.

    The sweep is left out: it only says how the built index is searched, so a new sweep on a
    kept build searches it again instead of spending hours building it anew."""
    if state is None or not state.get("spec"):
        return False

    def built(spec: dict) -> dict:
        return {k: v for k, v in spec.items() if k != "sweep"}

    if built(state["spec"]) != built(identity):
        return False
    # shards counted but gone (a finished run without --keep): nothing left to resume from
    return not state.get("gt_shards") or (folder / "index" / "config.json").exists()


def _read_state(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "progress.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_state(folder: Path, state: dict) -> None:
    atomic_write_json(folder / "progress.json", state)


def _read_gt(folder: Path, queries: int, k: int, state: dict) -> tuple[np.ndarray, np.ndarray]:
    """The exact top-k over the shards counted in `state`, or an empty one to start from."""
    if state["gt_shards"]:
        with np.load(folder / "gt.npz", allow_pickle=False) as z:
            return z["scores"], z["ids"]
    return np.full((queries, k), -np.inf, dtype=np.float32), np.full((queries, k), -1, dtype=np.int64)


def _rss() -> dict[str, int]:
    """VmRSS (all resident pages, mapped files included), its anonymous part, and the peak."""
    fields = {}
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                fields[key] = int(value.split()[0]) * 1024
    return fields


def _merge_topk(best_s, best_i, sims, start, k):
    """Keep the k largest of (best, this chunk's sims) per query."""
    part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    s = np.concatenate([best_s, np.take_along_axis(sims, part, axis=1)], axis=1)
    i = np.concatenate([best_i, part + start], axis=1)
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, order, axis=1), np.take_along_axis(i, order, axis=1)


def _normalise(x: np.ndarray) -> np.ndarray:
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x


def disk_needed(n: int, dim: int, config: LargeIndexConfig, chunk: int) -> tuple[int, int]:
    """(peak, final) bytes on disk. Each vector keeps a PQ code + 8-byte id and its rescoring row
    (+ an ids.npy entry); until the merge each shard's .faiss also holds a copy of the trained
    index, and the merge writes the codes once more before the shard files go."""
    code = int(re.search(r"PQ(\d+)", config.factory).group(1))
    nlist = int(re.search(r"IVF(\d+)", config.factory).group(1))
    store = 2 * dim if config.store_dtype == "float16" else dim + 4  # int8 rows carry a float32 scale
    trained = 4 * dim * nlist + (256 * nlist if "HNSW" in config.factory else 0)  # centroids, HNSW32 links
    final = n * (code + 8 + 8 + store)
    return final + n * (code + 8) + -(-n // chunk) * trained, final


def _check_disk(folder: Path, n: int, dim: int, config: LargeIndexConfig, chunk: int) -> None:
    """Refuse before hours of building a run whose index cannot fit the disk it is written to."""
    need, final = disk_needed(n, dim, config, chunk)
    have = _du(folder) if folder.exists() else 0  # a resumed run already holds part of it
    probe = folder if folder.exists() else next(p for p in folder.parents if p.exists())
    free = shutil.disk_usage(probe).free
    if need - have > free:
        hint = " (--store int8 halves the store)" if config.store_dtype == "float16" else ""
        raise MMRagError(
            f"the index for {n:,} vectors needs about {_size(need)} on disk while its shards merge "
            f"({_size(final)} after) but {probe} has {_size(free + have)} for it: give --out a bigger disk{hint}"
        )


def _size(nbytes: int) -> str:
    return f"{nbytes / 1e9:.1f} GB" if nbytes >= 1e9 else f"{nbytes / 1e6:.1f} MB"


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
