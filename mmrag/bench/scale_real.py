"""The scale benchmark's code on real vectors: what the PQ code and rescoring store that
`choose_large` picks for N synthetic vectors keep of exact search on a collection's own space.

Synthetic vectors show recall and speed at a size no real corpus here reaches; they cannot
show what the code costs in retrieval quality on real embeddings. This keeps the code's
shape (bytes per dimension of the PQ code, the store's dtype, rescore_k) and fits it to the
collection's own dimension and size, then scores it with MRR and nDCG@10 against qrels (or
the overlap with exact top 10 without them), beside exact search on the same vectors.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import asdict, dataclass

import faiss
import numpy as np

from indexes.ondisk import LargeIndexConfig, OnDiskIndex, choose_large, min_train
from mmrag.bench.reduce import DEPTH, Data, _overlap, _quality, load_data
from mmrag.errors import ConfigError


@dataclass(frozen=True)
class RealRow:
    """One search setting on the real vectors."""

    setting: str  # "exact fp32", or "IVF..,PQm + int8 rescore 200, nprobe p"
    bytes_in_ram: float  # per vector at search time: PQ code + id, or the fp32 vector for exact search
    bytes_on_disk: float  # per vector: code + id + rescoring store
    mrr: float | None
    ndcg10: float | None
    overlap10: float
    retention: float  # min(MRR, nDCG@10) ratio to exact; the overlap with exact top 10 without qrels


def matched_config(chosen: LargeIndexConfig, chosen_dim: int, n: int, dim: int) -> LargeIndexConfig:
    """The config choose_large gives n vectors of `dim`, with the chosen code's bytes per dimension,
    store dtype and rescore_k: the same code, sized for the real space."""
    m = int(re.search(r"PQ(\d+)", chosen.factory).group(1))
    per_dim = chosen_dim / m
    if dim % per_dim or dim // per_dim < 1:
        raise ConfigError(
            f"a {dim}-d space cannot take PQ at {per_dim:g} dimensions a byte, as {chosen.factory}"
        )
    own = choose_large(n, dim, 1 << 40)  # lists and nprobe for this size; the code is set below
    factory = re.sub(r"PQ\d+", f"PQ{int(dim // per_dim)}", own.factory)
    return LargeIndexConfig(
        **{
            **asdict(own),
            "factory": factory,
            "store_dtype": chosen.store_dtype,
            "rescore_k": chosen.rescore_k,
        }
    )


def measure_real(
    collection: str,
    chosen: LargeIndexConfig,
    chosen_dim: int,
    *,
    space: str | None = None,
    queries: str | None = None,
    qrels: str | None = None,
) -> tuple[Data, LargeIndexConfig, list[RealRow]]:
    """Exact search, then the matched code at the size's own nprobe and with every list probed
    (the code's loss alone), for both store dtypes when the chosen one is int8."""
    data = load_data(collection, space, queries, qrels, sample=10**9)
    n, dim = data.db.shape
    config = matched_config(chosen, chosen_dim, n, dim)
    if n < min_train(config.factory):
        raise ConfigError(
            f"space {data.space!r} holds {n} vectors; {config.factory} trains on at least "
            f"{min_train(config.factory)} (a PQ codebook needs 256)"
        )
    exact = faiss.knn(data.queries, data.db, DEPTH, metric=faiss.METRIC_INNER_PRODUCT)[1]
    mrr0, ndcg0 = _quality(exact, data)
    rows = [RealRow("exact fp32", 4.0 * dim, 4.0 * dim, mrr0, ndcg0, 1.0, 1.0)]
    nlist = int(re.search(r"IVF(\d+)", config.factory).group(1))
    m = int(re.search(r"PQ(\d+)", config.factory).group(1))
    stores = dict.fromkeys([config.store_dtype, "float16"])
    for store in stores:
        cfg = LargeIndexConfig(**{**asdict(config), "store_dtype": store})
        with tempfile.TemporaryDirectory(prefix="mmrag-scale-real-") as tmp:
            index = OnDiskIndex.create(tmp, dim, cfg)
            index.train(data.db)
            index.add_shard(data.db, np.arange(n, dtype=np.int64))
            index.merge()
            for nprobe in dict.fromkeys([cfg.nprobe, nlist]):
                _, found = index.search(
                    data.queries, DEPTH, nprobe=nprobe, rescore_k=max(cfg.rescore_k, DEPTH)
                )
                mrr, ndcg = _quality(found, data)
                overlap = _overlap(found, exact)
                if mrr is not None and mrr0 and ndcg0:
                    retention = min(mrr / mrr0, ndcg / ndcg0)
                else:
                    retention = overlap
                store_bytes = 2 * dim if store == "float16" else dim + 4
                setting = f"{cfg.factory} + {store} rescore {cfg.rescore_k}, nprobe {nprobe}/{nlist}"
                rows.append(RealRow(setting, m + 8.0, m + 8.0 + store_bytes, mrr, ndcg, overlap, retention))
            del index
    return data, config, rows


def format_real(data: Data, rows: list[RealRow]) -> str:
    """The rows as a table."""
    head = f"real vectors: space {data.space}, {len(data.db):,} x {data.db.shape[1]}, {len(data.queries)} queries"
    lines = [
        head,
        f"{'setting':<58} {'RAM B':>6} {'disk B':>6} {'MRR':>7} {'nDCG@10':>7} {'ovl@10':>6} {'retain':>7}",
    ]
    for r in rows:
        mrr = f"{r.mrr:.4f}" if r.mrr is not None else "-"
        ndcg = f"{r.ndcg10:.4f}" if r.ndcg10 is not None else "-"
        lines.append(
            f"{r.setting:<58} {r.bytes_in_ram:>6.0f} {r.bytes_on_disk:>6.0f} {mrr:>7} {ndcg:>7} "
            f"{r.overlap10:>6.3f} {r.retention:>7.4f}"
        )
    return "\n".join(lines)
