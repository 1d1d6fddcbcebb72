"""Clusters of one space: faiss k-means over unit vectors, each labelled by its most distinctive terms.

k is given, or chosen ("auto") as the candidate with the best cosine silhouette on a sample, the
usual way to pick k without labels, among k up to about the square root of the item count (a
grouping a person reads; the silhouette alone splits a small set into pairs); where no k shows
structure (silhouette at most 0.25), k is about √(n/2), the rule of thumb. A cluster's label is the few terms whose BM25 weight in its
members most exceeds their weight in the rest of the collection (c-TF-IDF, as BERTopic labels
topics), over each item's title and text: captions for images, code and prose for the others.
Assignments are cached per generation (mmrag/explore/cache.py); labels are recomputed from them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from indexes.tokenize import tokenize
from mmrag.errors import QueryError
from mmrag.storage.collection import Collection

from . import cache
from .spaces import label_of, source_of, space_for, space_vectors

CANDIDATES = (2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 20, 25, 30, 40, 50)  # k tried by "auto"
MAX_K = 1000  # more clusters than this is no overview
FIT_SAMPLE = (
    10_000  # items each candidate k is fitted on (3 k-means++ restarts each); the chosen k then on all
)
AUTO_RULE = 3  # how "auto" picks k (3: up to k_ceiling, √(n/2) without structure); other rules' choices are recomputed
WEAK = 0.25  # Kaufman & Rousseeuw: a silhouette up to this says "no substantial structure" was found
SILHOUETTE_SAMPLE = 3000  # the silhouette is quadratic in the items it is measured on
TERMS = 3  # words in a label
K1, B = 1.5, 0.75  # BM25's, as the lexical index has them (indexes/lexical.py)
Progress = Callable[[str, int, int], None]  # (stage, done, total), as the indexer reports


@dataclass(frozen=True)
class ClusterMember:
    id: int
    key: str
    source: str
    label: str
    similarity: float  # cosine to the cluster's centroid: the first members are the most typical


@dataclass(frozen=True)
class Cluster:
    id: int  # 1-based, largest cluster first
    size: int
    terms: tuple[str, ...]
    examples: tuple[ClusterMember, ...]

    @property
    def label(self) -> str:
        return " · ".join(self.terms) or (self.examples[0].label if self.examples else f"cluster {self.id}")

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "size": self.size,
            "label": self.label,
            "terms": list(self.terms),
            "examples": [m.__dict__ for m in self.examples],
        }


@dataclass(frozen=True)
class ClusterResult:
    space: str
    k: int
    auto: bool  # k was chosen by silhouette
    silhouette: float | None  # cosine silhouette of the clustering on a sample (None below 3 items)
    clusters: tuple[Cluster, ...]
    ids: np.ndarray  # int64 (n,): every item of the space
    assign: np.ndarray  # int64 (n,): its cluster's id (1-based)

    def to_dict(self) -> dict:
        return {
            "space": self.space,
            "k": self.k,
            "auto": self.auto,
            "silhouette": self.silhouette,
            "clusters": [c.to_dict() for c in self.clusters],
        }


def parse_k(value: str | int) -> int | None:
    """`auto` -> None, else a whole number from 1 to MAX_K."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return None
    try:
        k = int(value)
    except (TypeError, ValueError):
        raise QueryError(f"k must be a whole number or 'auto', got {value!r}") from None
    if not 1 <= k <= MAX_K:
        raise QueryError(f"k must be from 1 to {MAX_K} or 'auto', got {k}")
    return k


def find_clusters(
    coll: Collection,
    modality: str | None = None,
    k: int | str | None = "auto",
    examples: int = 5,
    *,
    space: str | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> ClusterResult:
    """Cluster the modality's space (or the joint space): sizes, labels and typical members."""
    space = space_for(coll, modality, space)
    want = parse_k(k) if k is not None else None
    params = {"what": "clusters", "space": space, "k": want or "auto", "seed": seed}
    if want is None:
        params["rule"] = AUTO_RULE

    def compute() -> dict[str, np.ndarray]:
        ids, vecs = space_vectors(coll, space)
        arrays = assign_clusters(ids, vecs, want, seed, progress)
        if progress:
            progress("cluster labels", 0, 1)
        rows = coll.store.fetch_items(ids.tolist())
        terms = distinctive_terms(
            [_text(rows.get(int(i))) for i in ids.tolist()], arrays["assign"], int(arrays["k"])
        )
        arrays["terms"] = np.array(
            [[*t, *[""] * (TERMS - len(t))] for t in terms] or np.zeros((0, TERMS)), dtype=str
        )
        return arrays

    # one file for auto and one for the last k asked, so a client trying k=1..1000 leaves two files
    arrays, _ = cache.cached(coll, f"clusters-{space}-{'k' if want else 'auto'}", params, compute)
    return _describe(coll, space, arrays, want is None, examples)


def assign_clusters(
    ids: np.ndarray, vecs: np.ndarray, k: int | None, seed: int = 0, progress: Progress | None = None
) -> dict[str, np.ndarray]:
    """Arrays to cache: ids, 1-based cluster per id (largest first), centroids, k, silhouette."""
    n = len(ids)
    k = min(k, n) if k is not None else None  # no more clusters than items; the result says its k
    if n == 0:
        return {
            "ids": ids,
            "assign": np.zeros(0, np.int64),
            "centroids": np.zeros((0, vecs.shape[1])),
            "k": np.array(0),
            "silhouette": np.array(np.nan),
        }
    if k is None:
        k = choose_k(vecs, seed, progress)
    if progress:
        progress("clusters", 0, 1)
    raw, centroids = kmeans(vecs, k, seed)
    order = np.argsort(-np.bincount(raw, minlength=k), kind="stable")  # largest cluster gets id 1
    rank = np.empty(k, np.int64)
    rank[order] = np.arange(k)
    assign = rank[raw] + 1
    return {
        "ids": ids,
        "assign": assign,
        "centroids": centroids[order],
        "k": np.array(k),
        "silhouette": np.array(silhouette(vecs, assign, seed)),
    }


def kmeans(vecs: np.ndarray, k: int, seed: int = 0, restarts: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(cluster row per vector, unit centroids (k, d)): spherical k-means, the cosine's k-means.

    faiss seeds with k random items, which often leaves two seeds in one group and none in
    another; each restart here is seeded by k-means++ instead, and the tightest restart is kept."""
    import faiss

    vecs = np.ascontiguousarray(vecs, dtype=np.float32)
    if k <= 1:
        c = vecs.mean(axis=0, keepdims=True)
        return np.zeros(len(vecs), np.int64), c / max(float(np.linalg.norm(c)), 1e-12)
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for r in range(restarts):
        km = faiss.Kmeans(
            vecs.shape[1],
            k,
            niter=25,
            spherical=True,
            seed=seed + r,
            min_points_per_centroid=1,
            max_points_per_centroid=1 << 20,  # no sampling, no warnings
        )
        km.train(vecs, init_centroids=kmeans_pp(vecs, k, seed + r))
        sims, rows = km.index.search(vecs, 1)
        fit = float(sims.sum())  # total cosine to the assigned centroid: higher is tighter
        if best is None or fit > best[0]:
            best = (fit, rows[:, 0].astype(np.int64), km.centroids.copy())
    return best[1], best[2]


def kmeans_pp(vecs: np.ndarray, k: int, seed: int = 0, sample: int = 20_000) -> np.ndarray:
    """k-means++ seeds (greedy, 2 + ln k tries per seed, as scikit-learn does) under cosine distance."""
    rng = np.random.default_rng(seed)
    pool = vecs[rng.choice(len(vecs), sample, replace=False)] if len(vecs) > sample else vecs
    tries = 2 + int(np.log(k))
    seeds = [int(rng.integers(len(pool)))]
    dist = np.maximum(1.0 - pool @ pool[seeds[0]], 0.0)
    for _ in range(1, k):
        total = float(dist.sum())
        if total <= 0:  # fewer distinct points than k: any further seed is a copy
            seeds.append(int(rng.integers(len(pool))))
            continue
        cand = rng.choice(len(pool), tries, p=dist / total)
        new = np.maximum(1.0 - pool @ pool[cand].T, 0.0)  # (m, tries)
        after = np.minimum(dist[:, None], new)
        pick = int(np.argmin(after.sum(axis=0)))
        seeds.append(int(cand[pick]))
        dist = after[:, pick]
    return np.ascontiguousarray(pool[seeds], dtype=np.float32)


def silhouette(vecs: np.ndarray, assign: np.ndarray, seed: int = 0) -> float:
    """Mean cosine silhouette on a sample; NaN where it is undefined (one cluster, or each item alone)."""
    from sklearn.metrics import silhouette_score

    n_labels = len(np.unique(assign))
    if not 2 <= n_labels <= len(vecs) - 1:
        return float("nan")
    size = min(len(vecs), SILHOUETTE_SAMPLE)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(vecs), size, replace=False) if size < len(vecs) else np.arange(len(vecs))
    if len(np.unique(assign[pick])) < 2:
        return float("nan")
    return float(silhouette_score(vecs[pick], assign[pick], metric="cosine"))


def k_ceiling(n: int) -> int:
    """The most clusters "auto" tries on n items: about the square root of n, so a cluster holds
    about as many items as there are clusters: an overview a person reads, not a partition into
    pairs. (The silhouette alone, on few items in many dimensions, grows with k: on the demo's 62
    items it chose 25 clusters, most of one to three items.)"""
    return max(2, int(math.isqrt(max(n, 0))))


def choose_k(vecs: np.ndarray, seed: int = 0, progress: Progress | None = None) -> int:
    """The candidate k up to k_ceiling with the best silhouette, each fitted on a sample of at most
    FIT_SAMPLE items. Where no k reaches a silhouette above WEAK, the silhouette cannot tell the k
    apart (on the demo's sample it wanders between 0.11 and 0.16 for k from 2 to 9, highest at 2),
    and the candidate nearest the rule of thumb √(n/2) is taken instead."""
    n = len(vecs)
    ks = [k for k in CANDIDATES if k <= min(n // 2, k_ceiling(n))]  # two items per cluster at least
    if not ks:
        return 1
    rng = np.random.default_rng(seed)
    sample = vecs[np.sort(rng.choice(n, FIT_SAMPLE, replace=False))] if n > FIT_SAMPLE else vecs
    scores = {}
    for i, k in enumerate(ks):
        if progress:
            progress("choosing k", i, len(ks))
        scores[k] = silhouette(sample, kmeans(sample, k, seed)[0], seed)
    best = max(scores, key=lambda k: (np.nan_to_num(scores[k], nan=-2.0), -k))
    if not scores[best] > WEAK:  # NaN too: no structure to choose by
        return min(ks, key=lambda k: (abs(k - math.sqrt(n / 2)), k))
    return best


def _describe(coll: Collection, space: str, arrays: dict, auto: bool, examples: int) -> ClusterResult:
    ids, assign, centroids = arrays["ids"], arrays["assign"], arrays["centroids"]
    k = int(arrays["k"])
    terms = [tuple(t for t in row if t) for row in arrays["terms"].tolist()]
    rows: dict[int, dict] = {}
    vecs = None
    if examples:
        _, vecs = space_vectors(coll, space)
    clusters = []
    for c in range(1, k + 1):
        members = np.flatnonzero(assign == c)
        picked: list[ClusterMember] = []
        if examples and len(members):
            sims = vecs[members] @ centroids[c - 1]
            top = members[np.argsort(-sims, kind="stable")[:examples]]
            rows = coll.store.fetch_items([int(ids[r]) for r in top])
            for r in top:
                row = rows.get(int(ids[r]))
                if row is not None:
                    sim = float(vecs[r] @ centroids[c - 1])
                    picked.append(ClusterMember(int(ids[r]), row["key"], source_of(row), label_of(row), sim))
        clusters.append(Cluster(c, int(len(members)), terms[c - 1], tuple(picked)))
    sil = float(arrays["silhouette"])
    return ClusterResult(space, k, auto, None if np.isnan(sil) else sil, tuple(clusters), ids, assign)


def _text(row: dict | None) -> str:
    """What a label may quote: title, symbol and text; a file name as title loses its extension."""
    if not row:
        return ""
    title = row.get("title") or ""
    if title == os.path.basename(row.get("source") or row.get("image") or ""):
        title = os.path.splitext(title)[0]
    return f"{title}\n{row.get('symbol') or ''}\n{row.get('text') or ''}"


def distinctive_terms(
    texts: list[str], assign: np.ndarray, k: int, n_terms: int = TERMS
) -> list[tuple[str, ...]]:
    """Per cluster 1..k, the terms whose mean BM25 weight in it most exceeds their mean weight elsewhere.

    A term must occur in at least two members and 5% of them, so one odd file cannot name a cluster."""
    from scipy import sparse

    vocab: dict[str, int] = {}
    indptr, cols, tfs = [0], [], []
    for text in texts:
        counts: dict[int, int] = {}
        for tok in tokenize(text):
            if len(tok) > 1 and not tok.isdigit():
                j = vocab.setdefault(tok, len(vocab))
                counts[j] = counts.get(j, 0) + 1
        cols += counts.keys()
        tfs += counts.values()
        indptr.append(len(cols))
    n = len(texts)
    if not vocab or n == 0:
        return [() for _ in range(k)]
    tf = sparse.csr_matrix(
        (np.array(tfs, np.float32), np.array(cols), np.array(indptr)), shape=(n, len(vocab))
    )
    dl = np.asarray(tf.sum(axis=1)).ravel()
    df = np.bincount(tf.indices, minlength=len(vocab))
    idf = np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)
    norm = K1 * (1 - B + B * dl / max(float(dl.mean()), 1e-9))
    w = tf.copy()
    w.data = w.data * (K1 + 1) / (w.data + np.repeat(norm, np.diff(tf.indptr)).astype(np.float32))
    w = w.multiply(idf[None, :]).tocsr()
    onehot = sparse.csr_matrix((np.ones(n, np.float32), (assign - 1, np.arange(n))), shape=(k, n))
    sizes = np.maximum(np.asarray(onehot.sum(axis=1)).ravel(), 1)
    inside = np.asarray((onehot @ w).todense())
    present = np.asarray((onehot @ (w > 0).astype(np.float32)).todense())
    total = np.asarray(w.sum(axis=0)).ravel()
    rest = np.maximum(n - sizes, 1)[:, None]
    score = inside / sizes[:, None] - (total[None, :] - inside) / rest
    score[present < np.maximum(2, 0.05 * sizes)[:, None]] = -np.inf
    words = np.array(list(vocab))
    out = []
    for c in range(k):
        chosen: list[str] = []
        for j in np.argsort(-score[c], kind="stable"):
            if not np.isfinite(score[c, j]) or score[c, j] <= 0 or len(chosen) == n_terms:
                break
            t = str(words[j])
            if not any(_overlaps(t, u) for u in chosen):
                chosen.append(t)
        out.append(tuple(chosen))
    return out


def _overlaps(a: str, b: str) -> bool:
    """`read_file` and `file` say the same thing twice in a label."""
    return a in b.split("_") or b in a.split("_")
