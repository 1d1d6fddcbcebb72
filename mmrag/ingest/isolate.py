"""Native parsers in a child process with a time box: a document that hangs or crashes its parser
fails alone, with a reason, and the indexer goes on.

PDFium is C++ and not thread-safe; a malformed file can loop, crash or allocate without bound. So
`run_isolated("module:function", path, *args)` sends the call to a worker process (`python -m
mmrag.ingest.isolate`), waits at most `timeout` seconds and kills the worker on a timeout or when it
dies; the next call starts a fresh one. Workers are kept between calls (a start costs ~0.2 s of
imports), one per concurrent caller, and their address space is capped (RLIMIT_AS), so a
decompression bomb is a MemoryError in the child, not an out-of-memory kill of the indexer.

Frames on the pipes are an 8-byte length and a pickle; only mmrag's own code is ever on either end,
and each end unpickles with an allowlist (`_loads`): plain data and mmrag's own item classes, no
other global, so even a worker subverted by a hostile file cannot make the indexer run code.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import io
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from typing import Any

from mmrag.errors import IngestError

_HEADER = struct.Struct("<Q")
# the only globals a frame may name: what the parsers take and return
_ALLOWED = frozenset(
    {("mmrag.items", "Item"), ("mmrag.items", "Locator"), ("mmrag.ingest.spec", "IngestCfg")}
)


class _Restricted(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a worker's frame")
        return super().find_class(module, name)


def _loads(body: bytes) -> Any:
    """A frame's value, refusing any global outside _ALLOWED."""
    return _Restricted(io.BytesIO(body)).load()


class RetireWorker(IngestError):
    """An IngestError after which the worker is not reused: native state it leaves behind would
    mislead the next call (PDFium keeps its last error code per process, and sets none for some
    failures, so the next file's failure could read this one's)."""


class _Worker:
    """One child process and its pipes."""

    def __init__(self, memory_bytes: int):
        self.memory_bytes = memory_bytes
        self.retired = False  # its last call asked for a fresh worker next time
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mmrag.ingest.isolate", str(memory_bytes)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # PDFium's warnings about damaged files are not the user's output
            close_fds=True,
            # one thread: no BLAS thread pool reserving address space the memory cap should keep for parsing
            env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
        )

    def call(self, path: str, target: str, args: tuple, timeout: float) -> Any:
        """The target's result; IngestError when it raised one, timed out or the worker died."""
        body = pickle.dumps((target, args), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self.proc.stdin.write(_HEADER.pack(len(body)) + body)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise IngestError(path, self._death()) from None
        deadline = time.monotonic() + timeout
        header = self._read(_HEADER.size, deadline, path, timeout)
        try:
            status, value = _loads(self._read(_HEADER.unpack(header)[0], deadline, path, timeout))
        except pickle.UnpicklingError as e:
            self.kill()
            raise IngestError(path, f"the parser's worker sent something other than a result ({e})") from None
        if status == "ok":
            return value
        self.retired = status == "retire"
        raise IngestError(path, value)

    def _read(self, n: int, deadline: float, path: str, timeout: float) -> bytes:
        fd = self.proc.stdout.fileno()
        chunks, left = [], n
        while left:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                self.kill()
                raise IngestError(path, f"parser timed out after {timeout:g} s (the file is skipped; "
                                        "IngestCfg.doc_timeout_s sets the time box)")  # fmt: skip
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                raise IngestError(path, self._death())
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _death(self) -> str:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.proc.returncode
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"parser crashed ({name}); the file is skipped"
        return f"parser exited with status {code}; the file is skipped"

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        for pipe in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                pipe.close()


_idle: list[_Worker] = []
_busy: set[_Worker] = set()  # workers in a call now
_lock = threading.Lock()


def run_isolated(target: str, path: str, *args: Any, timeout: float, memory_bytes: int) -> Any:
    """`target(path, *args)` ("package.module:function") in a worker process, time-boxed."""
    with _lock:
        worker = next((w for w in _idle if w.memory_bytes == memory_bytes and w.alive), None)
        if worker is not None:
            _idle.remove(worker)
    if worker is None:
        try:
            worker = _Worker(memory_bytes)
        except OSError as e:
            raise IngestError(path, f"cannot start the parser process: {e}") from e
    with _lock:
        _busy.add(worker)
    sound = False
    try:
        result = worker.call(path, target, (path, *args), timeout)
        sound = True
        return result
    except IngestError as e:
        # a reason from the parser leaves the worker sound; a time-out or a death does not
        sound = (
            worker.alive
            and not worker.retired
            and not e.reason.startswith(("parser timed out", "parser crashed", "parser exited"))
        )
        raise
    finally:  # an interrupted call (Ctrl-C) leaves half a frame in the pipe: that worker goes too
        with _lock:
            _busy.discard(worker)
            if sound:
                _idle.append(worker)
        if not sound:
            worker.kill()


@atexit.register
def shutdown() -> None:
    """Stop the idle workers (their stdin closes and they exit; a stuck one is killed)."""
    with _lock:
        workers, _idle[:] = list(_idle), []
    for w in workers:
        try:
            w.proc.stdin.close()
            w.proc.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            w.kill()


# --- the child -----------------------------------------------------------------------------------
def _serve(memory_bytes: int) -> None:
    import resource

    # run as __main__, this file's classes are copies: the parsers raise the package module's
    from mmrag.ingest.isolate import RetireWorker as retire

    with contextlib.suppress(ValueError, OSError):  # a lower hard limit is already set: keep it
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the frames
    while True:
        header = stdin.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return
        target, args = _loads(stdin.read(_HEADER.unpack(header)[0]))
        try:
            module, _, name = target.partition(":")
            reply = ("ok", getattr(importlib.import_module(module), name)(*args))
        except IngestError as e:
            reply = ("retire" if isinstance(e, retire) else "err", e.reason)
        except MemoryError:
            reply = (
                "err",
                f"out of memory (the parser's limit is {memory_bytes >> 20} MiB); the file is skipped",
            )
        except RecursionError:
            reply = ("err", "structure nested too deeply (recursion limit); the file is skipped")
        except Exception as e:  # a parser's own error: a reason for this file, never the indexer's crash
            reply = ("err", f"cannot parse ({type(e).__name__}: {e})")
        try:
            body = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        except MemoryError:
            body = pickle.dumps(("err", "out of memory while returning the result; the file is skipped"))
        stdout.write(_HEADER.pack(len(body)) + body)
        stdout.flush()
        if reply[0] == "retire":
            return


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
