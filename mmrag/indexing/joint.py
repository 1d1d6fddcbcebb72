"""The joint space's projection layers: how code and text items reach the one shared space.

Images are in CLIP's space natively. A code or text item gets there either through the identity
over the joint encoder's own view of the item (its text embedded by the joint encoder: no
training, the default) or through a linear map fitted by ridge least squares on paired data
(code -> the joint-space embedding of its description), which lets a specialised code encoder's
vector speak the joint space's language. The fitted map is stored as a .npy in the collection.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from encoders.base import l2_normalize
from mmrag.errors import ConfigError

PROJECTION_DIR = "projections"


@dataclass(frozen=True)
class FitReport:
    pairs: int
    ridge: float
    val_pairs: int
    val_mrr_identity: float  # held-out pair MRR of the identity-over-view choice
    val_mrr_fitted: float


def fit_ridge(x: np.ndarray, y: np.ndarray, ridge: float) -> np.ndarray:
    """W (dx, dy) minimising |xW - y|^2 + ridge |W|^2, solved in float64 for stability."""
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    gram = x64.T @ x64 + ridge * np.eye(x.shape[1])
    return np.linalg.solve(gram, x64.T @ y64).astype(np.float32)


def project(vecs: np.ndarray, w: np.ndarray) -> np.ndarray:
    return l2_normalize(vecs @ w)


def pair_mrr(queries: np.ndarray, docs: np.ndarray) -> float:
    """MRR of each query's own document among all documents (row i pairs with row i)."""
    scores = queries @ docs.T
    own = np.diag(scores)[:, None]
    ranks = 1 + (scores > own).sum(axis=1)
    return float(np.mean(1.0 / ranks))


def fit_projection(
    src_docs: np.ndarray,
    joint_queries: np.ndarray,
    joint_docs: np.ndarray,
    ridges: tuple[float, ...] = (0.1, 1.0, 10.0),
    val_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[np.ndarray, FitReport]:
    """Fit W on paired (document vector in the source space, query vector in the joint space),
    choosing the ridge on a held-out split, and compare with identity over the joint view."""
    n = len(src_docs)
    if n < 50:
        raise ConfigError(f"Fitting a projection needs at least 50 pairs, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(20, int(n * val_fraction))
    val, tr = order[:n_val], order[n_val:]
    identity = pair_mrr(joint_queries[val], joint_docs[val])
    best = None
    for ridge in ridges:
        w = fit_ridge(src_docs[tr], joint_queries[tr], ridge)
        mrr = pair_mrr(joint_queries[val], project(src_docs[val], w))
        if best is None or mrr > best[1]:
            best = (ridge, mrr)
    ridge, mrr = best
    w = fit_ridge(src_docs, joint_queries, ridge)  # refit on all pairs with the chosen ridge
    return w, FitReport(n - n_val, ridge, n_val, identity, mrr)


def projection_path(coll_path: Path, modality: str) -> Path:
    return coll_path / PROJECTION_DIR / f"{modality}.npy"


def load_projections(coll_path: Path, joint_info: dict) -> dict[str, np.ndarray]:
    """The fitted projections a collection records, by modality."""
    out = {}
    for modality in ("code", "text"):
        info = joint_info.get(modality)
        if isinstance(info, dict) and info.get("kind") == "fitted":
            out[modality] = np.load(projection_path(coll_path, modality), allow_pickle=False)
    return out


def fit_collection_projection(
    engine, pairs, modality: str = "code", store: bool | None = None, batch: int = 4096
) -> tuple[FitReport, bool]:
    """Fit `modality`'s projection into the joint space on (query, document) pairs; when stored
    (store=None: only if it beats identity on held-out pairs), re-derive the joint vectors of the
    collection's items from their stored vectors, with no re-encoding. Returns (report, stored)."""
    from mmrag.items import MODALITIES

    coll, models = engine.collection, engine.models
    if modality not in ("code", "text") or modality not in MODALITIES:
        raise ConfigError(f"Only code and text items are projected; got {modality!r}")
    if not coll.writable:
        raise ConfigError("Open the collection for writing to fit its projection")
    docs = [p.document for p in pairs]
    queries = [p.query for p in pairs]
    src = models.get(modality).encode_text(docs)
    joint = models.get("joint")
    w, report = fit_projection(src, joint.encode_text(queries, query=True), joint.encode_text(docs))
    if not (store or (store is None and report.val_mrr_fitted > report.val_mrr_identity)):
        return report, False
    path = projection_path(coll.path, modality)
    path.parent.mkdir(exist_ok=True)
    from indexes.atomic import atomic_save_npy

    atomic_save_npy(path, w)
    ids, vecs = coll.store.vectors(modality)
    with coll.store.transaction() as con:
        for start in range(0, len(ids), batch):
            coll.store.insert_vectors(
                con, "joint", ids[start : start + batch], project(vecs[start : start + batch], w)
            )
    coll.manifest.joint[modality] = {"kind": "fitted", **report.__dict__}
    coll.manifest.indexes.pop("joint", None)  # same ids, new vectors: rebuild the joint index
    (coll.path / "indexes" / "joint.faiss").unlink(missing_ok=True)
    coll.save()
    return report, True
