"""POST /index and GET /index/{job}: indexing as a job that runs beside the searches.

POST /index checks the token's role, the paths and the writer lock, then starts a job
(mmrag/http/jobs.py). By default (`wait=true`) it answers when the job ends, with its report and
the collection's stats, as it always has; `wait=false` answers 202 at once with the job, whose
progress GET /index/{job} reports. Either way searches go on while it runs.
"""

from __future__ import annotations

import asyncio
import errno
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from mmrag.http.jobs import IndexJob, JobStopped
from mmrag.http.openapi import errors, json_body
from mmrag.http.routes import HTTPProblem, IndexRequest, _read_json, report_dict
from mmrag.http.security import READ, request_role

router = APIRouter()

_JOB = {"description": "the job: state, progress, and its report once done", "model": None}


def job_dict(job: IndexJob) -> dict[str, Any]:
    return job.to_dict(report_dict)


@router.post(
    "/index",
    summary="Index folders or files on the server (needs the server's write token)",
    description="Only inside the collection's roots and the folders allowed at start (--allow-index); "
    "paths are resolved first, so `..` and symlinks that lead out are refused (403). The read token "
    "may not index (403). With `wait=false` the answer is 202 and the job's URL; searches go on meanwhile.",
    openapi_extra=json_body(IndexRequest),
    responses={
        200: {"description": "the job ended: its report, the collection's stats and the job"},
        202: {"description": "the job started (`wait=false`): poll its `url`"},
        **errors(401, 404, 409, 413, 415, 422, 503, 507),
    },
)
async def index(
    request: Request,
    wait: Annotated[bool, Query(description="answer when the job ends (default) or at once")] = True,
) -> Any:
    role = request_role(request.headers)
    if role == READ:
        raise HTTPProblem(403, "This token may search and read but not index: use the server's write token")
    if role is None:
        raise HTTPProblem(
            401,
            "Indexing needs the server's token: the X-API-Key header, or open the URL the server "
            "printed at start (it sets a cookie)",
        )
    req = await _read_json(request, IndexRequest)
    svc = request.app.state.service
    job = await run_in_threadpool(svc.start_index, req.paths)
    if not wait:
        return JSONResponse({"job": job_dict(job)}, status_code=202, headers={"Location": f"/index/{job.id}"})
    while not job.ended.is_set():  # the event loop stays free: no thread waits for the job
        await asyncio.sleep(0.1)
    if isinstance(job.error, JobStopped):
        raise HTTPProblem(503, f"{job.error}; what was committed is kept: index again to finish")
    if isinstance(job.error, OSError) and job.error.errno == errno.ENOSPC:
        raise HTTPProblem(507, f"The disk is full: {job.error}; what was committed is kept")
    if job.error is not None:
        raise job.error
    return {"report": report_dict(job.report), "stats": svc.stats(), "job": job_dict(job)}


@router.get(
    "/index/{job_id}",
    summary="An indexing job: its state, progress and, once done, its report",
    responses={200: _JOB, **errors(401, 404, 422)},
)
def index_job(request: Request, job_id: str) -> dict[str, Any]:
    return job_dict(request.app.state.service.jobs.get(job_id))
