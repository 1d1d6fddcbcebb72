"""Merging ranked lists from several routes into one ranking.

A route's result is a list of (item id, score) in rank order. Fusers are registered by name so a
collection or a query can pick one:

- `calibrated` (the default): each route's scores as spreads above its own last candidate, so a
  far better score in one route is not drowned by middling ranks in two others; an item's fused
  score is its best route's plus a quarter of what its other routes add (docs/quality.md);
- `rrf` (reciprocal rank fusion: ranks only, blind to score margins);
- `zsum` (z-scored weighted sum, which keeps margins and sums them);
- `max` (best weighted raw score: for routes that share one scale).

Padding (id -1, FAISS's answer past the end of a small index) and non-finite scores never enter
any fuser's arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mmrag.errors import ConfigError

RRF_K = 60  # the constant of Cormack et al. (2009); damps the head so one route cannot dominate
AGREEMENT = 0.25  # `calibrated`: what each route past an item's best adds, as a share of its own spread
DEFAULT_FUSION = "calibrated"


@dataclass(frozen=True)
class RouteResult:
    """What one route returned: ids and scores in rank order, and the weight it carries."""

    name: str
    ids: np.ndarray  # int64 (n,)
    scores: np.ndarray  # float32 (n,)
    weight: float = 1.0
    # (floor, spread) of the route's whole candidate list, kept when the list is later split or
    # thinned (the joint route per item modality, repeats of another route dropped) so that
    # `calibrated` reads every piece on the scale of the list it came from
    scale: tuple[float, float] | None = None

    def valid(self) -> RouteResult:
        """Without padding ids and non-finite scores."""
        keep = (self.ids >= 0) & np.isfinite(self.scores)
        if keep.all():
            return self
        return RouteResult(self.name, self.ids[keep], self.scores[keep], self.weight, self.scale)


def route_scale(scores: np.ndarray) -> tuple[float, float]:
    """(floor, spread) of a candidate list: its lowest finite score and its standard deviation;
    the spread is 0 for fewer than two distinct scores."""
    s = scores[np.isfinite(scores)].astype(np.float64)
    if len(s) < 2:
        return (float(s.min()) if len(s) else 0.0, 0.0)
    return float(s.min()), float(s.std())


Fused = list[tuple[int, float, dict[str, float]]]  # (id, fused score, route name -> route score)
Fuser = Callable[[Sequence[RouteResult]], Fused]
_FUSERS: dict[str, Fuser] = {}


def register_fuser(name: str, fn: Fuser) -> None:
    _FUSERS[name] = fn


def list_fusers() -> list[str]:
    return sorted(_FUSERS)


def fuse(results: Sequence[RouteResult], method: str = DEFAULT_FUSION) -> Fused:
    """Fused (id, score, routes) sorted by score, ties broken by id for a stable order."""
    if method not in _FUSERS:
        raise ConfigError(f"Unknown fusion method {method!r}; valid: {list_fusers()}")
    valid = [r.valid() for r in results if r.weight != 0]
    fused = _FUSERS[method]([r for r in valid if len(r.ids)])
    fused.sort(key=lambda t: (-t[1], t[0]))
    return fused


def _accumulate(results: Sequence[RouteResult], contribution: Callable[[RouteResult], np.ndarray]) -> Fused:
    total: dict[int, float] = {}
    routes: dict[int, dict[str, float]] = {}
    for r in results:
        r = r.valid()
        for i, c, s in zip(r.ids.tolist(), contribution(r).tolist(), r.scores.tolist()):
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
    """Weighted sum of per-route z-scores; a route's mean/std come from its own returned list.

    A list of one score (or of equal scores) has no spread: each of its items counts 1, so a
    route that found something still ranks it, on a collection of any size."""
    return _accumulate(results, lambda r: r.weight * _z_or_ones(r.scores))


def _z_or_ones(scores: np.ndarray) -> np.ndarray:
    z = z_scores(scores)
    return z if z.any() else np.ones_like(z)


def calibrated(results: Sequence[RouteResult], agreement: float = AGREEMENT) -> Fused:
    """Best route plus `agreement` x the others, each route's score read as spreads above its floor.

    A route's contribution to an item is weight x (score - floor) / spread over the route's whole
    candidate list (`RouteResult.scale`, else the list itself): how far the item stands above the
    last candidate the route kept, in the route's own units, so cosines of different models and
    BM25 meet on one scale. Taking the best route rather than the sum means an item found by two
    routes (a text chunk by the text and the joint space) does not beat one found far better by a
    single route (a picture by its caption); the agreement share still lifts items that several
    routes find. A route with no spread (one candidate) counts 1 for each item it returned."""
    per_item: dict[int, list[float]] = {}
    routes: dict[int, dict[str, float]] = {}
    for r in results:
        r = r.valid()
        floor, spread = r.scale if r.scale is not None else route_scale(r.scores)
        s = r.scores.astype(np.float64)
        c = (s - floor) / spread if spread > 1e-12 else np.ones_like(s)
        for i, ci, si in zip(r.ids.tolist(), (r.weight * np.maximum(c, 0.0)).tolist(), r.scores.tolist()):
            per_item.setdefault(i, []).append(ci)
            routes.setdefault(i, {})[r.name] = si
    out: Fused = []
    for i, cs in per_item.items():
        best = max(cs)
        out.append((i, best + agreement * (sum(cs) - best), routes[i]))
    return out


def max_score(results: Sequence[RouteResult]) -> Fused:
    """Best weighted raw score: for routes sharing one scale (all cosine in the joint space)."""
    best: dict[int, float] = {}
    routes: dict[int, dict[str, float]] = {}
    for r in results:
        r = r.valid()
        for i, s in zip(r.ids.tolist(), r.scores.tolist()):
            best[i] = max(best.get(i, -np.inf), r.weight * s)
            routes.setdefault(i, {})[r.name] = s
    return [(i, best[i], routes[i]) for i in best]


register_fuser("calibrated", calibrated)
register_fuser("rrf", rrf)
register_fuser("zsum", zsum)
register_fuser("max", max_score)


def fuse_ensemble(
    members: Sequence[RouteResult], name: str, weight: float, method: str = "zsum"
) -> RouteResult:
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
        m = m.valid()
        z = z_scores(m.scores)
        per_member.append(dict(zip(m.ids.tolist(), (m.weight * z).tolist())))
        floors.append(m.weight * float(z.min()) if len(z) else 0.0)
    union = set().union(*per_member) if per_member else set()
    return [(i, sum(d.get(i, f) for d, f in zip(per_member, floors)), {}) for i in union]


WEIGHTS_SYNTAX = (
    "write [KIND:]ROUTE=NUMBER, comma-separated, e.g. 'code=2,lexical=0.5' or 'prose:code=0.3,code:code@2=1,"
    "prose:joint.code=0' (KIND: prose or code, the query's kind; ROUTE: image, caption, code, text, joint, "
    "lexical, ROUTE@N for an ensemble's N-th member, joint.MODALITY for the joint route's items of one modality)"
)
QUERY_KINDS = ("prose", "code")  # as encoders.modelsets and mmrag.query.kinds name them


def weights_from(spec: str | Mapping[str, float] | None) -> dict[str, float]:
    """'code=2,prose:code@2=1,joint.code=0' -> {'code': 2.0, 'prose:code@2': 1.0, 'joint.code': 0.0}.

    A `KIND:` prefix limits a weight to one query kind (the model set's `[weights.KIND]` table from
    the command line); `joint.MODALITY` weighs the joint route's items of that modality."""
    if spec is None:
        return {}
    items = spec.items() if isinstance(spec, Mapping) else (p.partition("=")[::2] for p in _parts(spec))
    out: dict[str, float] = {}
    for name, value in items:
        name = str(name).strip()
        kind, colon, route = name.rpartition(":")
        if not route or (colon and kind not in QUERY_KINDS):
            raise ConfigError(f"Bad route weight {name!r}: {WEIGHTS_SYNTAX}")
        try:
            out[name] = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"Bad route weight {name}={value!r}: {WEIGHTS_SYNTAX}") from None
    return out


def _parts(spec: str) -> list[str]:
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    for p in parts:
        if "=" not in p:
            raise ConfigError(f"Bad route weight {p!r}: {WEIGHTS_SYNTAX}")
    return parts


def weights_for_kind(weights: Mapping[str, float] | None, kind: str | None) -> tuple[dict, dict]:
    """The user's weights that apply to one query kind, as (route -> weight, joint modality -> weight);
    a kind's own `KIND:` entries override the plain ones."""
    routes: dict[str, float] = {}
    joint: dict[str, float] = {}
    ordered = sorted((weights or {}).items(), key=lambda kv: ":" in kv[0])  # plain first
    for name, w in ordered:
        k, _, route = name.rpartition(":")
        if k and k != kind:
            continue
        if route.startswith("joint."):
            joint[route.partition(".")[2]] = w
        else:
            routes[route] = w
    return routes, joint
