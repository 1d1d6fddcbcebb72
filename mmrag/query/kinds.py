"""Weights by query kind: a prose query and a code snippet reach code items through different spaces.

A model set may name, per kind (`[weights.prose]`, `[weights.code]`), route weights, one weight per
member of an ensemble role, and a weight per item modality of the joint route's results. The default
set embeds code items with UniXcoder and MiniLM and sends prose through MiniLM's space (the better
natural-language code search) and snippets through UniXcoder's (trained for code-to-code search).
What a kind does not name keeps its usual weight; `--weights` still overrides a route.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from encoders.modelsets import ENSEMBLE_ROLES, ModelSet
from mmrag.query.fusion import RouteResult
from mmrag.query.router import ParsedQuery, Plan, ensemble_base


def query_kind(query: ParsedQuery) -> str | None:
    """`code` for a snippet, `prose` for natural language, None for images only (no text route runs)."""
    positive = [t for t in query.texts() if t.sign > 0]
    if any(t.kind == "code" for t in positive):
        return "code"
    return "prose" if positive else None


def kind_route_weights(model_set: ModelSet, spaces: Sequence[str], kind: str | None) -> dict[str, float]:
    """Route weights before the user's: each ensemble member's (`code@2`), then the kind's routes."""
    members = {
        s: model_set.member_weight(int(s.partition("@")[2]), ensemble_base(s), kind)
        for s in spaces
        if "@" in s
    }
    return {**members, **model_set.kind_weights(kind).routes}


def searched(model_set: ModelSet, route: str, kind: str | None, plan: Plan) -> bool:
    """Whether a route is searched at all: not when it is an ensemble's first member weighted 0 for
    this kind while another member is planned (the role's route stays in the plan: its weight carries
    the other members' fusion). A collection built before its set listed more members keeps its one."""
    n = len(model_set.members(route)) if route in ENSEMBLE_ROLES else 0
    if n < 2 or model_set.member_weight(1, route, kind) != 0.0:
        return True
    return not any(f"{route}@{m}" in plan.routes for m in range(2, n + 1))


def split_joint(
    result: RouteResult, weights: Mapping[str, float], modality_of: Callable[[Sequence[int]], dict[int, str]]
) -> list[RouteResult]:
    """The joint route's results as one list per item modality, each weighted by the kind's weight
    for it (1.0 when not named); a modality weighted 0 is dropped. Ranks restart per modality."""
    keep = result.ids >= 0
    ids, scores = result.ids[keep], result.scores[keep]
    of = modality_of(ids.tolist())
    mods = np.array([of.get(i, "") for i in ids.tolist()], dtype=object)
    out = []
    for modality in dict.fromkeys(mods.tolist()):
        w = weights.get(modality, 1.0)
        if w == 0.0:
            continue
        sel = mods == modality
        out.append(RouteResult(result.name, ids[sel], scores[sel], result.weight * w, result.scale))
    return out
