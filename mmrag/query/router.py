"""Reading a query: which terms it holds (text, code, images), and which routes to search.

In the manner of rclip, a query may combine terms: "cat + ./ref.jpg - dog" adds the image and
the phrase "cat" and subtracts "dog". A route is one index searched with one encoder's view of
the query; the router is the only place that knows both sides.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from mmrag.errors import QueryError

# what a query term may name as a picture: the readers' formats, phones' HEIF and cameras' RAW
# included (mmrag/ingest/camera.py lists those; tests/test_fusion_routes.py keeps the two in step)
IMAGE_EXTS = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm"}
    | {".heic", ".heif", ".hif"}
    | {".arw", ".cr2", ".cr3", ".nef", ".nrw", ".dng", ".raf", ".orf", ".rw2", ".pef", ".srw"}
)
MAX_QUERY_CHARS = 20_000  # far past any encoder's context; longer input is cut, not rejected

# Signs that a line is source code rather than prose; two hits make it code. Each is searched for,
# never matched whole, so `\w(` stands for `\w+(`: the same lines match, in linear time (with `\w+`
# a 20,000-letter word took 12 s of regex, GIL held, stalling every other request of a server)
_CODE_SIGNS = [
    re.compile(p)
    for p in (
        r"\bdef \w+\s*\(",
        r"\bclass \w+[(:]",
        r"\b(function|func|fn|public|private|static|void|const|let|var|return|import|#include)\b",
        r"[{};]\s*$",
        r"\w\([^()]*\)",
        r"\w\.\w+\(",
        r"(==|!=|<=|>=|=>|->|::|\+=|&&|\|\|)",
        r"^\s{2,}\S",
        r"\w_\w|[a-z][A-Z]",
    )
]
_SPLIT = re.compile(r"\s+([+-])\s+")


@dataclass(frozen=True)
class Term:
    kind: str  # "text" | "code" | "image"
    value: str  # the phrase, snippet, or image path
    sign: float = 1.0


@dataclass(frozen=True)
class ParsedQuery:
    terms: tuple[Term, ...]

    @property
    def kind(self) -> str:
        kinds = {t.kind for t in self.terms if t.sign > 0}
        return kinds.pop() if len(kinds) == 1 else "mixed"

    def texts(self) -> list[Term]:
        return [t for t in self.terms if t.kind != "image"]

    def images(self) -> list[Term]:
        return [t for t in self.terms if t.kind == "image"]


def looks_like_code(text: str) -> bool:
    hits = sum(1 for p in _CODE_SIGNS if any(p.search(line) for line in text.splitlines() or [text]))
    return hits >= 2 or "\n" in text.strip() and hits >= 1


def _is_image_path(s: str) -> bool:
    return os.path.splitext(s)[1].lower() in IMAGE_EXTS and not re.search(r"\s", s)


def parse_query(query: str, images: Sequence[str] = ()) -> ParsedQuery:
    """Split a query into signed terms and classify each; extra `images` are added as terms.

    A code snippet is never split on '+'/'-' (they are its operators); an image term must name
    an existing file, so a typo gives a clear error instead of a text search for a file name.
    """
    query = (query or "").strip()[:MAX_QUERY_CHARS]
    terms: list[Term] = []
    if query:
        if looks_like_code(query):
            terms.append(Term("code", query))
        else:
            parts = _SPLIT.split(" " + query + " ")
            sign = 1.0
            for i, part in enumerate(parts):
                if i % 2 == 1:
                    sign = -1.0 if part == "-" else 1.0
                    continue
                part = part.strip()
                if not part:
                    continue
                kind = "image" if _is_image_path(part) else "text"
                terms.append(Term(kind, part, sign))
    terms += [Term("image", p) for p in images]
    for t in terms:
        if t.kind == "image" and not os.path.isfile(t.value):
            raise QueryError(f"Query image {t.value!r} does not exist or is not a file")
    if not any(t.sign > 0 and _has_content(t) for t in terms):
        raise QueryError("Empty query: give text, a code snippet or an image (--image FILE)")
    return ParsedQuery(tuple(terms))


def _has_content(t: Term) -> bool:
    return t.kind == "image" or any(ch.isalnum() for ch in t.value)


def drop_image_terms(query: ParsedQuery, why: str) -> tuple[ParsedQuery, list[str]]:
    """The query without the image terms no encoder can embed, and a warning naming each one.

    Kept, such a term would embed as nothing, and a query of nothing else would rank the
    collection by a zero vector; a query left without a positive term is an error saying `why`.
    """
    images = query.images()
    if not images:
        return query, []
    rest = tuple(t for t in query.terms if t.kind != "image")
    if not any(t.sign > 0 and _has_content(t) for t in rest):
        shown = ", ".join(repr(t.value) for t in images)
        raise QueryError(f"Cannot search by image ({shown}): {why}")
    return ParsedQuery(rest), [f"image term {t.value!r} left out of the query: {why}" for t in images]


@dataclass(frozen=True)
class RouteSpec:
    """One index and the encoder whose query side searches it."""

    index: str
    encoder: str  # "clip" | "code" | "text" | "joint" (the joint space's encoder) | "lexical"
    modalities: tuple[str, ...]
    reads_images: bool = False  # whether image terms can be embedded for this route


ROUTES: dict[str, RouteSpec] = {
    "image": RouteSpec("image", "clip", ("image",), reads_images=True),
    "caption": RouteSpec("caption", "clip", ("image",), reads_images=True),
    "code": RouteSpec("code", "code", ("code",)),
    "text": RouteSpec("text", "text", ("text",)),
    "joint": RouteSpec("joint", "joint", ("image", "code", "text"), reads_images=True),
    "lexical": RouteSpec("lexical", "lexical", ("image", "code", "text")),
}

# Default weight of each route. The lexical route is off by default: on natural-language code
# search (CoSQA dev) fusing BM25 by rank lowered MRR; `--weights lexical=...` turns it on.
DEFAULT_WEIGHTS: dict[str, float] = {
    "image": 1.0,
    "caption": 1.0,
    "code": 1.0,
    "text": 1.0,
    "joint": 1.0,
    "lexical": 0.0,
}


# The names `--weights` and REST's `weights` accept: [KIND:]ROUTE[@N] or [KIND:]joint.MODALITY
# (mmrag.query.fusion.weights_from); a regular expression, for the OpenAPI schema and form fields
WEIGHT_NAME_PATTERN = (
    r"((prose|code):)?(lexical|(image|caption|code|text|joint)(@[2-9]|@[1-9][0-9]+)?|(code|text)@1"
    r"|joint\.(image|code|text))"
)


def route_spec(name: str) -> RouteSpec | None:
    """A route by name; `code@2` is the code route over the second encoder of an ensemble."""
    base, _, nth = name.partition("@")
    spec = ROUTES.get(base)
    if spec is None or not nth:
        return spec
    if not re.fullmatch(r"[2-9]|[1-9][0-9]+", nth) or base == "lexical":  # code@2, code@10; not @02, @²
        return None
    return replace(spec, index=name, encoder=f"{spec.encoder}@{nth}")


def ensemble_base(name: str) -> str:
    """The route an ensemble member's results are fused into: `code@2` -> `code`."""
    return name.partition("@")[0]


@dataclass(frozen=True)
class Plan:
    query: ParsedQuery
    routes: dict[str, float] = field(default_factory=dict)  # route name -> weight


def plan_routes(
    query: ParsedQuery,
    available: Sequence[str],
    modalities: Sequence[str] | None = None,
    weights: Mapping[str, float] | None = None,
) -> Plan:
    """Pick the routes a query can use: the index exists, it holds a wanted modality, and the
    query has a positive term its encoder can embed."""
    w = {**DEFAULT_WEIGHTS, **(weights or {})}
    unknown = {name for name in weights or {} if route_spec(name) is None}
    if unknown:
        raise QueryError(
            f"Unknown route(s) {sorted(unknown)} in weights; valid: {sorted(ROUTES)}, or ROUTE@N for "
            "the N-th encoder of an ensemble"
        )
    wanted = set(modalities or ("image", "code", "text"))
    has_text = any(t.sign > 0 for t in query.texts())
    has_image = any(t.sign > 0 for t in query.images())
    routes: dict[str, float] = {}
    names = [*ROUTES, *(a for a in available if "@" in a)]
    for name in names:
        spec = route_spec(name)
        # an ensemble member is searched only while its role's route is on: `code=0` turns off all
        weight = w.get(name, 1.0) if w.get(ensemble_base(name), 0.0) != 0.0 else 0.0
        if spec is None or name not in available or weight == 0.0 or not wanted.intersection(spec.modalities):
            continue
        if has_text or (has_image and spec.reads_images):
            routes[name] = weight
    return Plan(query, routes)
