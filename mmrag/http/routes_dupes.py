"""GET /dupes: groups of near-duplicate items (mmrag/dupes.py) over REST.

The route finds the server's Service on `app.state.service`, so the app includes it with one
`include_router`; errors take the app's problem shape (mmrag/http/routes.py, mmrag/http/openapi.py): a bad parameter is 422,
a query the library refuses is 400.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool

from mmrag.http.openapi import WHOLE, errors

MAX_GROUPS = 1000  # a page of groups; more is an export, which `mmrag dupes --json` does

router = APIRouter()


@router.get(
    "/dupes",
    summary="Groups of near-duplicate items (re-encoded or resized images, copied code, repeated text)",
    description="Pairs of items of one space whose cosine reaches the threshold are linked; each "
    "connected group of two or more is returned with its members, their sources and similarity. "
    "The default threshold is per space (docs/quality.md).",
    responses=errors(422),
)
async def dupes(
    request: Request,
    modality: Annotated[
        list[Literal["image", "code", "text"]] | None,
        Query(description="spaces to search (repeatable); default all three"),
    ] = None,
    threshold: Annotated[float | None, Query(gt=0, le=1, description="cosine; default per space")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_GROUPS, description="groups returned at most"), WHOLE] = 100,
) -> dict[str, Any]:
    svc = request.app.state.service
    groups = await run_in_threadpool(svc.dupe_groups, modality, threshold, limit)
    return {"groups": groups}
