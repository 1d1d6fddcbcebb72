"""GET /map, /clusters, /outliers: see the collection (mmrag/explore/) over REST, and the map page.

Each request opens its own read-only view of the collection, so a map computed for minutes never
holds the lock searches share; one exploration computes at a time per server (the rest wait and
then load its cached result). Errors take the app's problem shape (mmrag/http/openapi.py): a bad
parameter is 422, a space the collection does not have is 404; k above the item count gives one
cluster per item (the answer's `k` says so). The map page (`/map/view`) and
the plotly.js it loads are the UI's, not the API's, and stay out of the OpenAPI spec.
"""

from __future__ import annotations

import threading
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, Response

from mmrag.http.openapi import errors

MAX_HIGHLIGHT = 1000  # hits ringed on the map: a page of results, never the collection
MAX_OUTLIERS = 1000
MAX_EXAMPLES = 50
SPACE_PATTERN = r"^(image|caption|code|text|joint)(@[0-9]{1,3})?$"

router = APIRouter()
_computing = threading.Lock()  # one map / clustering / outlier pass at a time
_points: dict[tuple, bytes] = {}  # (collection, space, generation) -> the map's points as JSON, last one kept

Modality = Literal["image", "code", "text"]


def _open(request: Request):
    from mmrag.storage.collection import Collection

    return Collection.open(request.app.state.service.path)


def _map_json(request: Request, space: str, highlight: list[int]) -> bytes:
    from mmrag.explore import space_for
    from mmrag.explore.points import close_json, map_json

    with _computing, _open(request) as coll:
        space = space_for(coll, space=space)
        key = (str(coll.path), space, coll.store.generation())
        if key in _points:
            body, seconds, cached = _points[key], 0.0, True
        else:
            body, seconds, cached = map_json(coll, space)
            _points.clear()
            _points[key] = body
    return close_json(body, seconds, cached, highlight)


@router.get(
    "/map",
    summary="The collection's 2-D map (t-SNE of one space): points, colour fields, hits to ring",
    description="Points by column (id, x, y, and per colour field a code into `categories`: "
    "modality, cluster, folder, language). Computed once and cached in the collection folder; "
    "recomputed after the collection changed, which can take minutes on 100k items.",
    response_class=Response,
    responses={
        200: {
            "description": "the map's points",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        **errors(404, 422),
    },
)
async def map_data(
    request: Request,
    space: Annotated[str, Query(pattern=SPACE_PATTERN, description="the space to map")] = "joint",
    highlight: Annotated[
        list[int] | None, Query(max_length=MAX_HIGHLIGHT, description="item ids to ring (repeatable)")
    ] = None,
) -> Response:
    body = await run_in_threadpool(_map_json, request, space, list(highlight or []))
    return Response(body, media_type="application/json")


@router.get("/map/view", response_class=HTMLResponse, include_in_schema=False)
async def map_view(
    space: Annotated[str, Query(pattern=SPACE_PATTERN)] = "joint",
    highlight: Annotated[str, Query(pattern=r"^[0-9,]{0,12000}$")] = "",
    colour: Literal["modality", "cluster", "folder", "language"] = "modality",
) -> HTMLResponse:
    from urllib.parse import urlencode

    from mmrag.explore.page import map_html

    ids = [int(i) for i in highlight.split(",") if i][:MAX_HIGHLIGHT]
    query = urlencode([("space", space), *(("highlight", i) for i in ids)])
    return HTMLResponse(map_html(data_url=f"/map?{query}", plotly_src="/map/plotly.js", colour=colour))


@router.get("/map/plotly.js", include_in_schema=False)
async def plotly_js() -> FileResponse:
    from mmrag.explore.page import PLOTLY_JS

    return FileResponse(PLOTLY_JS, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})


def _clusters(request: Request, modality: str | None, k: str, examples: int) -> dict[str, Any]:
    from mmrag.explore import find_clusters

    with _computing, _open(request) as coll:
        out = find_clusters(coll, modality, k, examples).to_dict()
    for c in out["clusters"]:
        for m in c["examples"]:
            m["content_url"] = f"/items/{m['id']}/content"
    return out


@router.get(
    "/clusters",
    summary="Groups of similar items (faiss k-means), each with its size, label and typical members",
    description="Spherical k-means over the modality's space (default: the joint space). A cluster's "
    "label is the terms most distinctive of its members (BM25 weights against the rest); `k=auto` "
    "picks k by the best cosine silhouette.",
    responses=errors(404, 422),
)
async def clusters(
    request: Request,
    modality: Annotated[Modality | None, Query(description="this modality's own space")] = None,
    k: Annotated[
        str, Query(pattern=r"^(auto|[1-9][0-9]{0,2}|1000)$", description="clusters (1 to 1000), or auto")
    ] = "auto",
    examples: Annotated[int, Query(ge=0, le=MAX_EXAMPLES, description="members shown per cluster")] = 5,
) -> dict[str, Any]:
    return await run_in_threadpool(_clusters, request, modality, k, examples)


def _outliers(request: Request, modality: str | None, limit: int, method: str) -> dict[str, Any]:
    from mmrag.explore import find_outliers

    with _computing, _open(request) as coll:
        found = find_outliers(coll, modality, limit, method=method)
    return {"outliers": [{**o.to_dict(), "content_url": f"/items/{o.id}/content"} for o in found]}


@router.get(
    "/outliers",
    summary="The items least like their nearest neighbours, most isolated first",
    description="`knn`: 1 - the mean cosine to the 10 nearest items; `density`: that distance over "
    "the neighbours' own (LOF-like). Useful for cleaning a dataset.",
    responses=errors(404, 422),
)
async def outliers(
    request: Request,
    modality: Annotated[Modality | None, Query(description="this modality's own space")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_OUTLIERS, description="items returned at most")] = 20,
    method: Annotated[Literal["knn", "density"], Query(description="the score")] = "knn",
) -> dict[str, Any]:
    return await run_in_threadpool(_outliers, request, modality, limit, method)
