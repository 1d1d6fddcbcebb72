"""Guards of the local server against its own user's browser.

A server on 127.0.0.1 is still reachable from every web page the user opens: a page can send
simple cross-origin POSTs (CSRF), and a hostile domain that resolves to 127.0.0.1 makes the
browser treat the server as same-origin (DNS rebinding). So, before any route runs:

- the Host header must name this server (loopback names, the bound address, `--allow-host`);
- a request whose Origin is another site's is refused, whatever its method;
- writes need the token (`X-API-Key`, or the SameSite=Strict cookie set by visiting `/?token=T`);
- indexing reads only inside allowed folders, after the real path is resolved.

The token works as Jupyter's does: random per start, printed inside the URL the user opens.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})
TOKEN_PARAM = "token"
TOKEN_COOKIE = "mmrag_token"
TOKEN_HEADER = "x-api-key"


def new_token() -> str:
    """A fresh random token: 32 bytes of entropy, URL-safe."""
    return secrets.token_urlsafe(32)


def host_name(host_header: str) -> str:
    """The name part of a Host header (`[::1]:7860` -> `::1`, `Example.org:80` -> `example.org`)."""
    h = host_header.strip().lower()
    if h.startswith("["):
        return h[1 : h.find("]")] if "]" in h else h
    if h.count(":") == 1:
        h = h.split(":", 1)[0]
    return h.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Guard:
    """Who the server answers and who may write; one per app."""

    token: str | None = None  # None: writes need no token (`--no-auth`, or a library caller's choice)
    hosts: frozenset[str] = LOCAL_HOSTS  # Host names answered; any other name is a rebinding attempt
    any_ip: bool = False  # bound to 0.0.0.0/::: an IP-literal Host is fine (rebinding needs a name)
    extra_hosts: tuple[str, ...] = field(default=())

    @classmethod
    def for_bind(cls, bind: str, token: str | None, allow_hosts: Iterable[str] = ()) -> Guard:
        extra = tuple(host_name(h) for h in allow_hosts)
        bound = host_name(bind) if bind not in WILDCARD_BINDS else ""
        hosts = LOCAL_HOSTS | {h for h in (bound, *extra) if h}
        return cls(token=token, hosts=frozenset(hosts), any_ip=bind in WILDCARD_BINDS, extra_hosts=extra)

    def host_allowed(self, host_header: str | None) -> bool:
        if not host_header:
            return False
        name = host_name(host_header)
        return name in self.hosts or (self.any_ip and _is_ip(name))

    def authorized(self, headers: Mapping[str, str]) -> bool:
        """True when writes are open or the request carries the token (header or cookie)."""
        if self.token is None:
            return True
        given = request_token(headers)
        return given is not None and secrets.compare_digest(given.encode(), self.token.encode())


def request_token(headers: Mapping[str, str]) -> str | None:
    """The token a request carries: `X-API-Key`, `Authorization: token T`, or the cookie."""
    if headers.get(TOKEN_HEADER):
        return headers[TOKEN_HEADER]
    auth = headers.get("authorization", "")
    if auth.lower().startswith(("token ", "bearer ")):
        return auth.split(" ", 1)[1].strip()
    raw = headers.get("cookie")
    if raw:
        try:
            jar = SimpleCookie(raw)
        except CookieError:
            return None
        if TOKEN_COOKIE in jar:
            return jar[TOKEN_COOKIE].value
    return None


def same_origin(origin: str, host_header: str) -> bool:
    """An Origin header names this server: the same host and port as the Host the request used."""
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host_header.strip().lower()


class GuardMiddleware:
    """Host allow-list, foreign-Origin refusal and the token URL, before any route (ASGI)."""

    def __init__(self, app, guard: Guard):
        self.app = app
        self.guard = guard

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        if not self.guard.host_allowed(host):
            known = ", ".join(sorted(self.guard.hosts))
            return await _problem(
                scope,
                send,
                400,
                f"Host {host!r} is not a name this server answers to ({known}); a page that reached it "
                "under another name is refused. Start the server with --allow-host NAME to add one",
                "HostNotAllowed",
            )
        origin = headers.get("origin")
        if origin is not None and not same_origin(origin, host):
            return await _problem(
                scope,
                send,
                403,
                f"Cross-origin request from {origin!r} refused: only this server's own pages may call it",
                "CrossOriginRefused",
            )
        if scope["type"] == "http" and scope.get("method") in ("GET", "HEAD"):
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            if TOKEN_PARAM in query and self.guard.token is not None:
                return await self._token_visit(scope, send, query)
        return await self.app(scope, receive, send)

    async def _token_visit(self, scope, send, query: dict[str, str]) -> None:
        """`/?token=T`: the right token sets the cookie and drops itself from the address bar."""
        if not secrets.compare_digest(query[TOKEN_PARAM].encode(), self.guard.token.encode()):
            return await _problem(
                scope,
                send,
                401,
                "The token in this URL is not this server's: copy the URL it printed",
                "BadToken",
            )
        rest = urlencode({k: v for k, v in query.items() if k != TOKEN_PARAM})
        path = "/" + scope["path"].lstrip("/")  # '//host' would be another site's address
        location = scope.get("root_path", "") + path + (f"?{rest}" if rest else "")
        cookie = f"{TOKEN_COOKIE}={self.guard.token}; Path=/; HttpOnly; SameSite=Strict"
        await send(
            {
                "type": "http.response.start",
                "status": 303,
                "headers": [(b"location", location.encode()), (b"set-cookie", cookie.encode())],
            }
        )
        await send({"type": "http.response.body", "body": b""})


async def _problem(scope, send, status: int, detail: str, error: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    body = json.dumps({"detail": detail, "error": error}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


# --- where indexing may read ----------------------------------------------------------------
def inside_roots(path: str, roots: Sequence[str]) -> Path | None:
    """The real path of `path` when it lies in one of `roots` (after resolving links and `..`)."""
    try:
        os.fsencode(path)  # a NUL byte or an unencodable character names no file
        real = Path(os.path.realpath(path))
    except (ValueError, UnicodeError):
        return None
    for root in roots:
        base = Path(os.path.realpath(root))
        if real == base or base in real.parents:
            return real
    return None


def check_index_paths(paths: Sequence[str], allowed: Sequence[str]) -> None:
    """Raise PermissionError, with the reason, for the first path outside the allowed folders."""
    for p in paths:
        if inside_roots(p, allowed) is None:
            try:
                real = os.path.realpath(p)
            except (ValueError, UnicodeError):
                real = p
            where = ", ".join(allowed) if allowed else "none yet"
            shown = repr(p) if real == p else f"{p!r} (really {real!r})"
            raise PermissionError(
                f"{shown} is outside the folders this server may index ({where}); "
                "start it with --allow-index DIR to allow another folder"
            )
