"""Running a planned query: embed once per space, search each route, fuse, attach metadata."""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from encoders.base import l2_normalize
from mmrag.errors import IngestError, QueryError
from mmrag.items import MODALITIES, Hit, Locator
from mmrag.models import Models
from mmrag.query.filtered import allowed_for, dense_search
from mmrag.query.fusion import (
    DEFAULT_FUSION,
    RouteResult,
    fuse,
    fuse_ensemble,
    route_scale,
    weights_for_kind,
)
from mmrag.query.kinds import kind_route_weights, query_kind, searched, split_joint
from mmrag.query.router import ROUTES, ParsedQuery, Plan, ensemble_base, parse_query, plan_routes, route_spec
from mmrag.query.threads import search_threads, threads_set
from mmrag.storage.collection import Collection

QUERY_THREADS = (
    1  # a query is a batch of one: thread fan-out costs more than it saves, most of all on busy cores
)
MAX_K = 10_000  # past this a ranking is an export; `mmrag eval` uses 1,000
ROUTE_DEPTH = 100  # candidates per route before fusion: fusion needs more than the k shown
# Weight of each dense space's hubness prior (indexes/hubness.py): scores - 0.25 x (neighbour
# density - its mean). On CoSQA dev MRR rose 0.541 -> 0.553; weights 0.1-0.5 all helped
# (docs/quality.md). 0 turns it off.
HUBNESS_WEIGHT = 0.25
# An image query's own picture, or a copy of it, ranks first whatever the other routes say: a match
# in the image space at this cosine or above is pinned to the top. Re-saved and resized copies of a
# photo stay above 0.99 under CLIP; distinct look-alike photos measured 0.95-0.99 on random
# ViT-B-32-256 weights, which are far more uniform than trained ones (docs/quality.md).
EXACT_IMAGE_MATCH = 0.995
EXACT_IMAGE_K = 5  # matches looked up per query image


@dataclass
class SearchResult:
    hits: list[Hit]
    timings: dict[str, float] = field(default_factory=dict)  # stage -> milliseconds
    routes: dict[str, float] = field(default_factory=dict)  # route -> weight used
    warnings: list[str] = field(default_factory=list)  # e.g. items a filter could not judge yet
    query: str = ""  # the query as given, for views that mark its words (_repr_html_)

    def _repr_html_(self) -> str:
        """Jupyter's view: thumbnails and snippets with the query's words marked (mmrag/query/notebook.py)."""
        from mmrag.query.notebook import result_html

        return result_html(self.hits, getattr(self, "query", ""), self.warnings)


@dataclass(frozen=True)
class SearchOptions:
    k: int = 10
    modalities: tuple[str, ...] | None = None
    weights: Mapping[str, float] | None = None
    fusion: str = DEFAULT_FUSION
    min_score: float | None = None  # drop route results under this raw score (cosine for dense routes)
    path_glob: str | None = None
    depth: int | None = None  # per-route candidates; default max(k, ROUTE_DEPTH)
    hubness: float | None = None  # dense scores minus this x neighbourhood density; None: HUBNESS_WEIGHT
    where: object = None  # a filter (mmrag/query/filters.py): its string, its JSON form or its AST

    def check(self) -> None:
        if not 1 <= self.k <= MAX_K:
            raise QueryError(f"k must be between 1 and {MAX_K}, got {self.k}")
        if self.hubness is not None and not 0 <= self.hubness <= 1:
            raise QueryError(f"hubness weight must be between 0 and 1, got {self.hubness}")
        bad = set(self.modalities or ()) - set(MODALITIES)
        if bad:
            raise QueryError(f"Unknown modality {sorted(bad)}; valid: {list(MODALITIES)}")


class Searcher:
    def __init__(self, coll: Collection, models: Models):
        self.coll = coll
        self.models = models

    def available_routes(self) -> list[str]:
        return [*self.coll.spaces(), "lexical"]

    def _without_unseen_images(self, parsed: list[ParsedQuery]) -> tuple[list[ParsedQuery], list[list[str]]]:
        """Without CLIP no encoder sees pixels: image terms leave each query with a warning, and a
        query of images only is an error (mmrag.query.router.drop_image_terms)."""
        if self.models.has("clip"):
            return parsed, [[] for _ in parsed]
        from mmrag.items import ENABLE_IMAGE_SEARCH
        from mmrag.query.router import drop_image_terms

        why = f"this collection's models ({self.models.set.name!r}) have no image encoder; {ENABLE_IMAGE_SEARCH}"
        pairs = [drop_image_terms(p, why) for p in parsed]
        return [p for p, _ in pairs], [w for _, w in pairs]

    def search(
        self, query: str, images: Sequence[str] = (), options: SearchOptions = SearchOptions()
    ) -> SearchResult:
        return self.search_many([query], [images], options)[0]

    def search_many(
        self,
        queries: Sequence[str],
        images: Sequence[Sequence[str]] | None = None,
        options: SearchOptions = SearchOptions(),
        with_metadata: bool = True,
    ) -> list[SearchResult]:
        """Search several queries at once: each encoder runs once over the whole batch."""
        options.check()
        t0 = time.perf_counter()
        allowed = allowed_for(self.coll, options.where, options.modalities)  # None without a filter
        parsed = [parse_query(q, imgs) for q, imgs in zip(queries, images or [()] * len(queries))]
        parsed, dropped = self._without_unseen_images(parsed)
        kinds = [query_kind(p) for p in parsed]  # prose and code snippets may weigh routes apart
        plans = [
            plan_routes(p, self.available_routes(), options.modalities, self._weights(kind, options))
            for p, kind in zip(parsed, kinds)
        ]
        t_parse = time.perf_counter()
        depth = options.depth or max(options.k, ROUTE_DEPTH)
        if options.path_glob or options.modalities:
            depth *= 4  # post-filtering discards candidates
        per_query: list[list[RouteResult]] = [[] for _ in plans]
        memo: dict[tuple, np.ndarray] = {}  # routes sharing one encoder embed the query once
        hubness = HUBNESS_WEIGHT if options.hubness is None else options.hubness
        for route in dict.fromkeys(r for p in plans for r in p.routes):
            ms = self.models.set
            users = [i for i, p in enumerate(plans) if route in p.routes and searched(ms, route, kinds[i], p)]
            if not users:
                continue
            if route == "lexical":
                lex = self.coll.lexical_index()
                for i in users:
                    text = " ".join(t.value for t in parsed[i].texts() if t.sign > 0)
                    s, ids = lex.search(text, depth, allowed=None if allowed is None else allowed.ids)
                    r = RouteResult(route, ids, s, plans[i].routes[route], route_scale(s[ids >= 0]))
                    per_query[i].append(r if options.min_score is None else _cut(r, options.min_score))
                continue
            vecs = self._embed([parsed[i] for i in users], route, memo)
            with search_threads(route, len(vecs)):  # one query: threads by measurement
                scores, ids = dense_search(self.coll, route, vecs, depth, allowed)
            prior = self.coll.hubness_prior(route) if hubness else None
            for row, i in enumerate(users):
                r = RouteResult(route, ids[row], scores[row], plans[i].routes[route])
                if options.min_score is not None:  # a cut on the raw cosine, before the prior
                    r = _cut(r, options.min_score)
                if prior is not None:
                    adj_scores, adj_ids = prior.apply(r.scores, r.ids, hubness)
                    r = RouteResult(route, adj_ids, adj_scores, r.weight)
                per_query[i].append(
                    RouteResult(r.name, r.ids, r.scores, r.weight, route_scale(r.scores[r.ids >= 0]))
                )
        t_search = time.perf_counter()
        out = []
        pinned = [self._exact_image_matches(p, allowed, memo) for p in parsed]
        for plan, kind, results, pins, query in zip(plans, kinds, per_query, pinned, queries):
            routes = self._by_modality(self._fuse_ensembles(results, plan, kind, options), kind, options)
            fused = _pin(fuse(routes, options.fusion), pins)
            hits = (
                self._hits(fused, options)
                if with_metadata or options.path_glob or options.modalities
                else [
                    Hit(id=i, key="", modality="", score=s, source="", routes=r)
                    for i, s, r in fused[: options.k]
                ]
            )
            filter_notes = list(allowed.warnings) if allowed else []  # one list per result
            out.append(SearchResult(hits, routes=dict(plan.routes), warnings=filter_notes, query=query))
        for r, notes in zip(out, dropped):
            r.warnings = [*notes, *r.warnings]
        t_end = time.perf_counter()
        for r in out:
            r.timings = {
                "parse_ms": 1e3 * (t_parse - t0),
                "embed_search_ms": 1e3 * (t_search - t_parse),
                "fuse_ms": 1e3 * (t_end - t_search),
                "total_ms": 1e3 * (t_end - t0),
            }
        return out

    def similar(self, item_id: int, k: int = 10) -> SearchResult:
        """More like this: the item's own vector searched in its own modality's index."""
        SearchOptions(k=k).check()
        meta = self.coll.store.fetch_items([item_id]).get(item_id)
        if meta is None:
            raise QueryError(f"No item with id {item_id}")
        space = meta["modality"] if meta["modality"] in self.coll.spaces() else "joint"
        t0 = time.perf_counter()
        ids, vecs = self.coll.store.vectors(space, [item_id])
        if not len(ids):
            raise QueryError(f"Item {item_id} has no vector in the {space!r} index")
        scores, found = self.coll.vector_index(space).search(vecs, k + 1)
        keep = found[0] != item_id
        result = RouteResult(space, found[0][keep][:k], scores[0][keep][:k])
        fused = [(i, s, {space: s}) for i, s in zip(result.ids.tolist(), result.scores.tolist()) if i >= 0]
        hits = self._hits(fused, SearchOptions(k=k))
        return SearchResult(hits, {"total_ms": 1e3 * (time.perf_counter() - t0)}, {space: 1.0})

    def _weights(self, kind: str | None, options: SearchOptions) -> dict[str, float]:
        """Route weights for one query: the model set's for its kind (ensemble members such as
        `code@2` included), then the caller's `weights` over them (`KIND:ROUTE` for this kind only)."""
        user, joint = weights_for_kind(options.weights, kind)
        bad = set(joint) - set(MODALITIES)
        firsts = {r.partition("@")[0] for r in user if r.endswith("@1")} - {"code", "text"}
        if firsts:
            raise QueryError(
                f"ROUTE@1 weighs an ensemble's first member: code@1 or text@1, not {sorted(firsts)}"
            )
        if bad:
            raise QueryError(
                f"Unknown modality in joint.MODALITY weights: {sorted(bad)}; valid: {list(MODALITIES)}"
            )
        return {
            **kind_route_weights(self.models.set, self.coll.spaces(), kind),
            **{r: w for r, w in user.items() if not r.endswith("@1")},  # first members: _fuse_ensembles
        }

    def _by_modality(
        self, results: list[RouteResult], kind: str | None, options: SearchOptions = SearchOptions()
    ) -> list[RouteResult]:
        """The joint route split per item modality where the query's kind (or the caller) weighs them
        apart, without the items whose joint vector repeats a route searched beside it."""
        weights = {**self.models.set.kind_weights(kind).joint, **weights_for_kind(options.weights, kind)[1]}
        searched_routes = {r.name for r in results}
        for modality in self._repeated_in_joint():
            if modality in searched_routes:  # counted once, by its own route (and its own prior)
                weights[modality] = 0.0
        if not weights:
            return results
        out: list[RouteResult] = []
        for r in results:
            out += split_joint(r, weights, self.coll.store.modalities) if r.name == "joint" else [r]
        return out

    def _repeated_in_joint(self) -> list[str]:
        """Item modalities whose joint vectors are the very vectors of their own route, the same
        encoder behind both: pictures when the joint space is CLIP's, code and text items when the
        joint encoder is their own and no fitted projection maps them."""
        out = ["image"] if self.models.joint_role == "clip" else []
        joint_info = self.coll.manifest.joint or {}
        for modality in ("code", "text"):
            fitted = (
                isinstance(joint_info.get(modality), dict) and joint_info[modality].get("kind") == "fitted"
            )
            if not fitted and self.models.has(modality) and self.models.same_encoder(modality, "joint"):
                out.append(modality)
        return out

    def _exact_image_matches(self, query: ParsedQuery, allowed, memo: dict) -> list[tuple[int, float]]:
        """Items of the image space that are (near-)exact copies of one of the query's pictures,
        best first: found by each positive image term alone, whatever else the query says."""
        images = [t for t in query.images() if t.sign > 0]
        if not images or "image" not in self.coll.spaces() or not self.models.has("clip"):
            return []
        vecs = self._embed([ParsedQuery((t,)) for t in images], "image", memo)
        scores, ids = dense_search(self.coll, "image", vecs, EXACT_IMAGE_K, allowed)
        best: dict[int, float] = {}
        for i, s in zip(ids.ravel().tolist(), scores.ravel().tolist()):
            if i >= 0 and s >= EXACT_IMAGE_MATCH:
                best[i] = max(best.get(i, -1.0), s)
        return sorted(best.items(), key=lambda t: (-t[1], t[0]))

    def _fuse_ensembles(
        self,
        results: list[RouteResult],
        plan: Plan,
        kind: str | None,
        options: SearchOptions = SearchOptions(),
    ) -> list[RouteResult]:
        """One route per role: an ensemble's member routes (`code`, `code@2`) fused into `code`,
        which keeps the role route's weight in the fusion across routes."""
        groups: dict[str, list[RouteResult]] = {}
        for r in results:
            groups.setdefault(ensemble_base(r.name), []).append(r)
        out: list[RouteResult] = []
        for base, members in groups.items():
            if len(members) == 1 and members[0].name == base:
                out.append(members[0])
                continue
            first = next((m for m in members if m.name == base), None)
            # the role's weight, also when its first member was not searched (weighted 0 for this kind)
            weight = plan.routes.get(base, first.weight if first is not None else 1.0)
            user = weights_for_kind(options.weights, kind)[0]
            first_weight = user.get(f"{base}@1", self.models.set.member_weight(1, base, kind))
            scaled = [
                RouteResult(m.name, m.ids, m.scores, first_weight) if m is first else m for m in members
            ]
            out.append(fuse_ensemble(scaled, base, weight, self.models.set.ensemble_fusion))
        return out

    def _embed(
        self, queries: list[ParsedQuery], route: str, memo: dict[tuple, np.ndarray] | None = None
    ) -> np.ndarray:
        """One unit vector per query in the route's space: the signed sum of its terms' vectors.

        `memo` maps (encoder spec, query side, texts) to vectors, so the caption, image and joint
        routes of one CLIP model embed a query's text once between them."""
        memo = {} if memo is None else memo
        spec = route_spec(route)
        if spec is None:
            raise QueryError(f"Unknown route {route!r}; valid: {sorted(ROUTES)}")
        enc = self.models.query(spec.encoder)
        text_terms = [(qi, t) for qi, q in enumerate(queries) for t in q.texts()]
        image_terms = (
            [(qi, t) for qi, q in enumerate(queries) for t in q.images()] if "image" in enc.inputs else []
        )
        acc = np.zeros((len(queries), enc.dim), np.float32)
        if text_terms:
            is_code = [t.kind == "code" for _, t in text_terms]
            # a code snippet is embedded like the documents it should find; prose on the query side
            values = tuple(t.value for _, t in text_terms)

            def embed(query_side: bool) -> np.ndarray:
                key = (enc.spec, query_side, values)
                if key not in memo:
                    with threads_set(QUERY_THREADS if len(values) <= 8 else None):
                        memo[key] = enc.encode_text(list(values), query=query_side)
                return memo[key]

            vec_q = embed(True) if not all(is_code) else None
            vec_d = embed(False) if any(is_code) else None
            for n, (qi, t) in enumerate(text_terms):
                v = vec_d[n] if is_code[n] else vec_q[n]
                acc[qi] += t.sign * v
        if image_terms:
            key = (enc.spec, "image", tuple(t.value for _, t in image_terms))
            if key not in memo:
                from mmrag.ingest import (
                    load_image,  # Pillow and the readers: only queries with images need them
                )

                imgs = []
                for _, t in image_terms:
                    try:
                        imgs.append(load_image(t.value, max_pixels=178_956_970))
                    except IngestError as e:
                        raise QueryError(f"Cannot read query image {t.value!r}: {e.reason}") from e
                with threads_set(QUERY_THREADS if len(imgs) <= 8 else None):
                    memo[key] = enc.encode_image(imgs)
            vecs = memo[key]
            for n, (qi, t) in enumerate(image_terms):
                acc[qi] += t.sign * vecs[n]
        return l2_normalize(acc)

    def _hits(self, fused, options: SearchOptions) -> list[Hit]:
        """The first k hits that pass the filters; an image whose bytes an earlier hit already
        shows is folded into that hit's `also` instead of taking a place of its own."""
        hits: list[Hit] = []
        shown: dict[str, Hit] = {}  # image sha256 -> the hit that shows it
        wanted = set(options.modalities or MODALITIES)
        for start in range(0, len(fused), max(options.k, 50)):
            chunk = fused[start : start + max(options.k, 50)]
            meta = self.coll.store.fetch_items([i for i, _, _ in chunk])
            for i, score, routes in chunk:
                m = meta.get(i)
                if m is None or m["modality"] not in wanted:  # a vector whose item is gone: skip
                    continue
                if options.path_glob and not fnmatch.fnmatch(m["source"], options.path_glob):
                    continue
                hit = _hit(m, score, routes)
                sha = (m.get("meta") or {}).get("image_sha256") if m["modality"] == "image" else None
                if sha in shown:
                    shown[sha].also.append(hit.where())
                    continue
                if sha:
                    shown[sha] = hit
                hits.append(hit)
                if len(hits) == options.k:
                    return hits
        return hits


def _pin(fused: list, pins: list[tuple[int, float]]) -> list:
    """`fused` with the pinned ids first, in the pins' order, scored above every other hit so the
    scores still fall down the list; their route scores gain the exact match's cosine."""
    if not pins:
        return fused
    top = max((s for _, s, _ in fused), default=0.0)
    by_id = {i: r for i, _, r in fused}
    head = [(i, top + 1.0 + cos, {**by_id.get(i, {}), "image": cos}) for i, cos in pins]
    pinned = {i for i, _ in pins}
    return head + [t for t in fused if t[0] not in pinned]


def _cut(r: RouteResult, min_score: float) -> RouteResult:
    keep = r.scores >= min_score
    return RouteResult(r.name, r.ids[keep], r.scores[keep], r.weight, r.scale)


def _hit(m: dict, score: float, routes: dict[str, float]) -> Hit:
    from_jsonl = m["source"].endswith(".jsonl")
    return Hit(
        id=m["id"],
        key=m["key"],
        modality=m["modality"],
        score=float(score),
        source=m["key"] if from_jsonl else m["source"],
        routes={k: float(v) for k, v in routes.items()},
        title=m["title"] or "",
        text=m["text"] or "",
        path=None if from_jsonl else m["source"],
        language=m["language"],
        symbol=m["symbol"],
        start_line=m["start_line"],
        end_line=m["end_line"],
        locator=Locator.from_dict((m.get("meta") or {}).get("locator")),  # documents: page, cell, bbox
    )
