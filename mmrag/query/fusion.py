"""Merging ranked lists from several routes into one ranking.

A route's result is a list of (item id, score) in rank order. Fusers are registered by name so a
collection or a query can pick one: `rrf` (reciprocal rank fusion, robust to incomparable score
scales, the default) and `zsum` (z-scored weighted sum, which keeps score margins and calibrates
routes with different scales, e.g. BM25 next to cosine).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mmrag.errors import ConfigError

RRF_K = 60  # the constant of Cormack et al. (2009); damps the head so one route cannot dominate


@dataclass(frozen=True)
class RouteResult:
    """What one route returned: ids and scores in rank order, and the weight it carries."""

    name: str
    ids: np.ndarray  # int64 (n,)
    scores: np.ndarray  # float32 (n,)
    weight: float = 1.0


Fused = list[tuple[int, float, dict[str, float]]]  # (id, fused score, route name -> route score)
Fuser = Callable[[Sequence[RouteResult]], Fused]
_FUSERS: dict[str, Fuser] = {}


def register_fuser(name: str, fn: Fuser) -> None:
    _FUSERS[name] = fn


def list_fusers() -> list[str]:
    return sorted(_FUSERS)


def fuse(results: Sequence[RouteResult], method: str = "rrf") -> Fused:
    """Fused (id, score, routes) sorted by score, ties broken by id for a stable order."""
    if method not in _FUSERS:
        raise ConfigError(f"Unknown fusion method {method!r}; valid: {list_fusers()}")
    fused = _FUSERS[method]([r for r in results if r.weight != 0 and len(r.ids)])
    fused.sort(key=lambda t: (-t[1], t[0]))
    return fused


def _accumulate(results: Sequence[RouteResult], contribution: Callable[[RouteResult], np.ndarray]) -> Fused:
    total: dict[int, float] = {}
    routes: dict[int, dict[str, float]] = {}
    for r in results:
        for i, c, s in zip(r.ids.tolist(), contribution(r).tolist(), r.scores.tolist()):
            if i < 0:
                continue
            total[i] = total.get(i, 0.0) + c
            routes.setdefault(i, {})[r.name] = s
    return [(i, total[i], routes[i]) for i in total]


def rrf(results: Sequence[RouteResult], k: int = RRF_K) -> Fused:
    return _accumulate(results, lambda r: r.weight / (k + np.arange(1, len(r.ids) + 1)))


def z_scores(scores: np.ndarray) -> np.ndarray:
    """(s - mean) / std in float64, over the list itself; all zeros when the scores are (nearly) equal."""
    s = scores.astype(np.float64)
    std = s.std()
    return (s - s.mean()) / std if std > 1e-12 else np.zeros_like(s)


def zsum(results: Sequence[RouteResult]) -> Fused:
    """Weighted sum of per-route z-scores; a route's mean/std come from its own returned list."""
    return _accumulate(results, lambda r: r.weight * z_scores(r.scores))


def max_score(results: Sequence[RouteResult]) -> Fused:
    """Best weighted raw score: for routes sharing one scale (all cosine in the joint space)."""
    best: dict[int, float] = {}
    routes: dict[int, dict[str, float]] = {}
    for r in results:
        for i, s in zip(r.ids.tolist(), r.scores.tolist()):
            if i < 0:
                continue
            best[i] = max(best.get(i, -np.inf), r.weight * s)
            routes.setdefault(i, {})[r.name] = s
    return [(i, best[i], routes[i]) for i in best]


register_fuser("rrf", rrf)
register_fuser("zsum", zsum)
register_fuser("max", max_score)


def fuse_ensemble(members: Sequence[RouteResult], name: str, weight: float, method: str = "zsum") -> RouteResult:
    """One route from the spaces of one role's encoders (an ensemble), each weighted by its own weight.

    `zsum` z-scores each member's list; an item a member did not return gets that member's lowest
    z-score, not its mean, so being missing from a list never helps. `rrf` sums weighted
    reciprocal ranks. On CoSQA dev the weighted zsum beat RRF (docs/quality.md)."""
    members = [m for m in members if m.weight != 0 and (m.ids >= 0).any()]
    if method == "rrf":
        fused = rrf(members)
    elif method == "zsum":
        fused = _zsum_floor(members)
    else:
        raise ConfigError(f"Unknown ensemble fusion {method!r}; valid: ['rrf', 'zsum']")
    fused.sort(key=lambda t: (-t[1], t[0]))
    ids = np.array([i for i, _, _ in fused], np.int64)
    scores = np.array([f for _, f, _ in fused], np.float32)
    return RouteResult(name, ids, scores, weight)


def _zsum_floor(members: Sequence[RouteResult]) -> Fused:
    per_member: list[dict[int, float]] = []
    floors: list[float] = []
    for m in members:
        keep = m.ids >= 0
        z = z_scores(m.scores[keep])
        per_member.append(dict(zip(m.ids[keep].tolist(), (m.weight * z).tolist())))
        floors.append(m.weight * float(z.min()) if len(z) else 0.0)
    union = set().union(*per_member) if per_member else set()
    return [(i, sum(d.get(i, f) for d, f in zip(per_member, floors)), {}) for i in union]


def weights_from(spec: str | Mapping[str, float] | None) -> dict[str, float]:
    """'code=2,lexical=0.5' -> {'code': 2.0, 'lexical': 0.5}."""
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        return {k: float(v) for k, v in spec.items()}
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, value = part.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(
                f"Bad route weight {part!r}; write NAME=NUMBER, e.g. 'code=2,lexical=0.5'"
            ) from None
        if not sep:
            raise ConfigError(f"Bad route weight {part!r}; write NAME=NUMBER, e.g. 'code=2,lexical=0.5'")
    return out
