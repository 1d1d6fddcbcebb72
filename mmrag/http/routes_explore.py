"""GET /map, /clusters, /outliers: see the collection (mmrag/explore/) over REST, and the map page.

Each answer is computed by a job (mmrag/http/explore_jobs.py) on its own read-only view of the
collection, so a map computed for minutes never holds the lock searches share. A request waits a
few seconds for its job; a longer one is answered 202 with the job's progress, and asking again
gives the result once it is there (the map page polls so). Errors take the app's problem shape
(mmrag/http/openapi.py): a bad parameter is 422, a space the collection does not have is 404; k
above the item count gives one cluster per item (the answer's `k` says so). The map page
(`/map/view`) and the plotly.js it loads are the UI's, not the API's, and stay out of the spec.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from mmrag.http import explore_jobs
from mmrag.http.explore_jobs import ExploreJob
from mmrag.http.openapi import WHOLE, Whole, errors

MAX_HIGHLIGHT = 1000  # hits ringed on the map: a page of results, never the collection
MAX_OUTLIERS = 1000
MAX_EXAMPLES = 50
SPACE_PATTERN = r"^(image|caption|code|text|joint)(@[0-9]{1,3})?$"

router = APIRouter()

Modality = Literal["image", "code", "text"]
_COMPUTING = {
    "description": "still computing (a large collection's first map takes minutes): the job's state "
    "and progress; ask again after `Retry-After` seconds",
    "content": {"application/json": {"schema": {"type": "object"}}},
}


def _open(request: Request):
    from mmrag.storage.collection import Collection

    return Collection.open(request.app.state.service.path)


def _question(request: Request, modality: str | None, space: str | None) -> tuple[str, int]:
    """(the space asked about, the collection's generation); 404 for a space it does not have."""
    from mmrag.explore import space_for

    with _open(request) as coll:
        return space_for(coll, modality, space), coll.store.generation()


async def _answer(
    request: Request, what: str, key: tuple, work: Callable[[ExploreJob], Any]
) -> tuple[ExploreJob, bool] | JSONResponse:
    """(the job, done before this request) once its result is there, else 202 with its progress."""
    runner = request.app.state.service.explore
    job = runner.submit(what, (what, str(request.app.state.service.path), *key), work)
    earlier = job.ended.is_set()
    waited = 0.0
    while not job.ended.is_set() and waited < explore_jobs.WAIT_S:
        await asyncio.sleep(0.05)
        waited += 0.05
    if not job.ended.is_set():
        return JSONResponse(
            {"detail": f"Computing the {what} of this collection: ask again", "job": job.to_dict()},
            status_code=202,
            headers={"Retry-After": "1"},
        )
    if job.error is not None:
        raise job.error
    return job, earlier


def _map_work(request: Request, space: str) -> Callable[[ExploreJob], Any]:
    def work(job: ExploreJob) -> tuple[bytes, float, bool]:
        from mmrag.explore.points import map_json

        with _open(request) as coll:
            return map_json(coll, space, progress=job.progress)

    return work


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
        202: _COMPUTING,
        **errors(404, 422),
    },
)
async def map_data(
    request: Request,
    space: Annotated[str, Query(pattern=SPACE_PATTERN, description="the space to map")] = "joint",
    highlight: Annotated[
        list[Whole] | None, Query(max_length=MAX_HIGHLIGHT, description="item ids to ring (repeatable)")
    ] = None,
) -> Response:
    from mmrag.explore.points import close_json

    space, generation = await run_in_threadpool(_question, request, None, space)
    answer = await _answer(request, "map", (space, generation), _map_work(request, space))
    if isinstance(answer, JSONResponse):
        return answer
    job, earlier = answer
    body, seconds, cached = job.result
    if earlier:  # computed for an earlier request: this one only reads it
        seconds, cached = 0.0, True
    return Response(close_json(body, seconds, cached, list(highlight or [])), media_type="application/json")


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


def _clusters_work(request: Request, space: str, k: str, examples: int) -> Callable[[ExploreJob], Any]:
    def work(job: ExploreJob) -> dict[str, Any]:
        from mmrag.explore import find_clusters

        with _open(request) as coll:
            out = find_clusters(coll, None, k, examples, space=space, progress=job.progress).to_dict()
        for c in out["clusters"]:
            for m in c["examples"]:
                m["content_url"] = f"/items/{m['id']}/content"
        return out

    return work


@router.get(
    "/clusters",
    summary="Groups of similar items (faiss k-means), each with its size, label and typical members",
    description="Spherical k-means over the modality's space (default: the joint space). A cluster's "
    "label is the terms most distinctive of its members (BM25 weights against the rest); `k=auto` "
    "picks k by the best cosine silhouette among k up to about the square root of the item count.",
    responses={202: _COMPUTING, **errors(404, 422)},
)
async def clusters(
    request: Request,
    modality: Annotated[Modality | None, Query(description="this modality's own space")] = None,
    k: Annotated[
        str, Query(pattern=r"^(auto|[1-9][0-9]{0,2}|1000)$", description="clusters (1 to 1000), or auto")
    ] = "auto",
    examples: Annotated[
        int, Query(ge=0, le=MAX_EXAMPLES, description="members shown per cluster"), WHOLE
    ] = 5,
) -> Any:
    space, generation = await run_in_threadpool(_question, request, modality, None)
    k = k.lower()
    answer = await _answer(
        request, "clusters", (space, k, examples, generation), _clusters_work(request, space, k, examples)
    )
    return answer if isinstance(answer, JSONResponse) else answer[0].result


def _outliers_work(request: Request, space: str, limit: int, method: str) -> Callable[[ExploreJob], Any]:
    def work(job: ExploreJob) -> dict[str, Any]:
        from mmrag.explore import find_outliers

        with _open(request) as coll:
            found = find_outliers(coll, None, limit, method=method, space=space, progress=job.progress)
        return {"outliers": [{**o.to_dict(), "content_url": f"/items/{o.id}/content"} for o in found]}

    return work


@router.get(
    "/outliers",
    summary="The items least like their nearest neighbours, most isolated first",
    description="`knn`: 1 - the mean cosine to the 10 nearest items; `density`: that distance over "
    "the neighbours' own (LOF-like). Useful for cleaning a dataset.",
    responses={202: _COMPUTING, **errors(404, 422)},
)
async def outliers(
    request: Request,
    modality: Annotated[Modality | None, Query(description="this modality's own space")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_OUTLIERS, description="items returned at most"), WHOLE] = 20,
    method: Annotated[Literal["knn", "density"], Query(description="the score")] = "knn",
) -> Any:
    space, generation = await run_in_threadpool(_question, request, modality, None)
    answer = await _answer(
        request, "outliers", (space, limit, method, generation), _outliers_work(request, space, limit, method)
    )
    return answer if isinstance(answer, JSONResponse) else answer[0].result
