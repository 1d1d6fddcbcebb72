"""What the MCP server needs of a served collection, and a way to open one without making a client wait.

The server is written against `Backend`, the surface of the REST server's Service
(mmrag/http/service.py): searches on a reader that is reopened when the collection's generation
moves (so a `mmrag watch` or an indexing job shows up without a restart), item files checked to lie
inside the collection's roots, and indexing as a job. `mmrag serve` hands its own Service over;
`mmrag mcp` opens one. mmrag.mcp imports nothing of mmrag.http, so the HTTP server can mount it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from mmrag.query.search import SearchResult


class IndexJobLike(Protocol):
    """An indexing run as the server's job runner reports it (mmrag/http/jobs.py)."""

    stage: str
    done: int
    total: int
    report: Any
    error: BaseException | None
    ended: threading.Event


class Backend(Protocol):
    path: Path
    read_only: bool

    @property
    def image_search(self) -> bool: ...

    def search(self, query: str, images: Sequence[str] = (), **options: Any) -> SearchResult: ...
    def similar(self, item_id: int, k: int = 10) -> SearchResult: ...
    def item(self, item_id: int) -> dict: ...
    def stats(self) -> dict[str, Any]: ...
    def content_file(self, item_id: int) -> tuple[dict, Path | None]: ...
    def snapshot(self) -> contextlib.AbstractContextManager[Any]: ...
    def llm_cfg(self) -> Any: ...
    def ask(
        self, question: str, *, k: int = ..., modalities: Sequence[str] | None = None
    ) -> Iterator[Any]: ...
    def index_roots(self) -> list[str]: ...
    def start_index(self, paths: Sequence[str]) -> IndexJobLike: ...
    def close(self) -> None: ...


class LazyBackend:
    """A backend opened in a thread from `start()` on, waited for on first use.

    Loading a collection's encoders takes seconds; an MCP client that starts the server waits for
    its `initialize` answer meanwhile and gives up after a while, so the handshake goes first.
    `mmrag mcp` starts it once the stdio transport holds stdout, so nothing a loader prints can
    reach the protocol's channel.
    """

    def __init__(self, open_backend: Callable[[], Backend]):
        self._open = open_backend
        self._ready = threading.Event()
        self._backend: Backend | None = None
        self._error: BaseException | None = None
        self._started = False
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
        threading.Thread(target=self._load, name="mmrag-mcp-open", daemon=True).start()

    def _load(self) -> None:
        try:
            self._backend = self._open()
        except BaseException as e:  # raised again at each use, so the agent reads why
            self._error = e
        finally:
            self._ready.set()

    def get(self) -> Backend:
        self.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        assert self._backend is not None
        return self._backend

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)

    def close(self) -> None:
        if not self._started:
            return
        self._ready.wait()
        if self._backend is not None:
            self._backend.close()
