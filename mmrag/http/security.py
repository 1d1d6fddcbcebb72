"""Guards of the local server against its own user's browser.

A server on 127.0.0.1 is still reachable from every web page the user opens: a page can send
simple cross-origin POSTs (CSRF), and a hostile domain that resolves to 127.0.0.1 makes the
browser treat the server as same-origin (DNS rebinding). So, before any route runs:

- the Host header must name this server (loopback names, the bound address, `--allow-host`);
- a request whose Origin is another site's is refused, whatever its method;
- every route but /health needs a token (`X-API-Key`, `Authorization: token T`, or the
  SameSite=Strict cookie set by visiting `/?token=T`): the write token may index, the read token
  (`--read-token`) may search and read only; the role found is passed on in `X-Mmrag-Role`;
- indexing reads only inside allowed folders, after the real path is resolved.

The token works as Jupyter's does: random per start, printed inside the URL the user opens. The
cookie is named after the bound host and port (`mmrag-token-127.0.0.1-7860`), as Jupyter names
its own, so two servers on one machine keep their sessions. Browsers send a host's cookies to
every port of it (RFC 6265 has no port isolation), so a web server on another port of this host
still receives them: that is why the token is random per start and never a password.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.requests import ClientDisconnect

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})
TOKEN_PARAM = "token"
TOKEN_COOKIE = "mmrag-token"  # the prefix: the cookie itself is named per host and port (cookie_name)
TOKEN_HEADER = "x-api-key"
ROLE_HEADER = "x-mmrag-role"  # set by GuardMiddleware only (a client's own is dropped): write | read
PUBLIC_PATHS = frozenset({"/health"})  # answered without a token, like Jupyter's health check
WRITE, READ = "write", "read"


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


def cookie_name(bind: str, port: int | str) -> str:
    """The token cookie of the server bound to `bind`:`port` (`mmrag-token-127.0.0.1-7860`)."""
    shown = re.sub(r"[^A-Za-z0-9.]", "_", bind or "all")
    return f"{TOKEN_COOKIE}-{shown}-{port}"


def request_role(headers: Mapping[str, str]) -> str | None:
    """The role GuardMiddleware found for this request: WRITE, READ, or None (not through it)."""
    return headers.get(ROLE_HEADER)


def may_write(headers: Mapping[str, str]) -> bool:
    return request_role(headers) == WRITE


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Guard:
    """Who the server answers, who may read and who may write; one per app."""

    token: str | None = None  # None: no token at all, everyone may read and write (`--no-auth`)
    hosts: frozenset[str] = LOCAL_HOSTS  # Host names answered; any other name is a rebinding attempt
    any_ip: bool = False  # bound to 0.0.0.0/::: an IP-literal Host is fine (rebinding needs a name)
    extra_hosts: tuple[str, ...] = field(default=())
    read_token: str | None = None  # a second token that may search and read, never index
    bind: str = "127.0.0.1"  # the address bound: part of the cookie's name

    @classmethod
    def for_bind(
        cls, bind: str, token: str | None, allow_hosts: Iterable[str] = (), read_token: str | None = None
    ) -> Guard:
        extra = tuple(host_name(h) for h in allow_hosts)
        bound = host_name(bind) if bind not in WILDCARD_BINDS else ""
        hosts = LOCAL_HOSTS | {h for h in (bound, *extra) if h}
        return cls(
            token=token,
            hosts=frozenset(hosts),
            any_ip=bind in WILDCARD_BINDS,
            extra_hosts=extra,
            read_token=read_token if token is not None else None,
            bind=bind,
        )

    def host_allowed(self, host_header: str | None) -> bool:
        if not host_header:
            return False
        name = host_name(host_header)
        return name in self.hosts or (self.any_ip and _is_ip(name))

    def role_of(self, token: str | None) -> str | None:
        """WRITE for the token, READ for the read token, None for anything else (compared in constant time)."""
        if self.token is None:
            return WRITE
        if not token:
            return None
        given = token.encode()
        if secrets.compare_digest(given, self.token.encode()):
            return WRITE
        if self.read_token is not None and secrets.compare_digest(given, self.read_token.encode()):
            return READ
        return None

    def role(self, headers: Mapping[str, str], port: int | str) -> str | None:
        """The role the request's token gives it on the server at `port` (header first, then cookie)."""
        return self.role_of(request_token(headers, cookie_name(self.bind, port)))

    def authorized(self, headers: Mapping[str, str], port: int | str = "") -> bool:
        """True when writes are open or the request carries the write token."""
        return self.role(headers, port) == WRITE


def request_token(headers: Mapping[str, str], cookie: str | None = None) -> str | None:
    """The token a request carries: `X-API-Key`, `Authorization: token T`, or the cookie named `cookie`."""
    if headers.get(TOKEN_HEADER):
        return headers[TOKEN_HEADER]
    auth = headers.get("authorization", "")
    if auth.lower().startswith(("token ", "bearer ")):
        return auth.split(" ", 1)[1].strip()
    raw = headers.get("cookie")
    if raw and cookie:
        try:
            jar = SimpleCookie(raw)
        except CookieError:
            return None
        if cookie in jar:
            return jar[cookie].value
    return None


def same_origin(origin: str, host_header: str) -> bool:
    """An Origin header names this server: the same host and port as the Host the request used."""
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host_header.strip().lower()


class GuardMiddleware:
    """Host allow-list, foreign-Origin refusal, the token URL and the token itself, before any route (ASGI)."""

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
        port = _port(scope, host)
        if scope["type"] == "http" and scope.get("method") in ("GET", "HEAD"):
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            if TOKEN_PARAM in query and self.guard.token is not None:
                return await self._token_visit(scope, send, query, port)
        role = self.guard.role(headers, port)
        if role is None and scope.get("path") not in PUBLIC_PATHS:
            return await _unauthorized(scope, send, headers)
        raw = [(k, v) for k, v in scope.get("headers", []) if k.lower() != ROLE_HEADER.encode()]
        if role is not None:
            raw.append((ROLE_HEADER.encode(), role.encode()))
        return await self.app({**scope, "headers": raw}, receive, send)

    async def _token_visit(self, scope, send, query: dict[str, str], port: int | str) -> None:
        """`/?token=T`: a right token sets this server's cookie and drops itself from the address bar."""
        token = query[TOKEN_PARAM]
        if self.guard.role_of(token) is None:
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
        cookie = f"{cookie_name(self.guard.bind, port)}={token}; Path=/; HttpOnly; SameSite=Strict"
        await send(
            {
                "type": "http.response.start",
                "status": 303,
                "headers": [(b"location", location.encode()), (b"set-cookie", cookie.encode())],
            }
        )
        await send({"type": "http.response.body", "body": b""})


UNAUTHORIZED = (
    "This server needs its token: open the URL it printed at start (it ends in ?token=…), "
    "or send the token as the X-API-Key header"
)

_UNAUTHORIZED_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>mmrag: token needed</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 4em auto">
<h1>mmrag needs its token</h1>
<p>Open the URL the server printed when it started: it ends in <code>?token=…</code>.
Your browser then keeps the token in a cookie for this server only.</p></body></html>"""


def _port(scope, host_header: str) -> int | str:
    """The port the request reached: the socket's, else the Host header's."""
    server = scope.get("server")
    if server and len(server) > 1 and server[1]:
        return server[1]
    tail = host_header.rsplit("]", 1)[-1]
    return tail.rsplit(":", 1)[1] if ":" in tail else ""


async def _unauthorized(scope, send, headers: Mapping[str, str]) -> None:
    """401: a page that says what to open for a browser, the problem JSON for every other client."""
    if scope["type"] == "http" and "text/html" in headers.get("accept", ""):
        body = _UNAUTHORIZED_PAGE.encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"text/html; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return
    await _problem(scope, send, 401, UNAUTHORIZED, "TokenRequired")


MAX_BODY_BYTES = 21 * 1024 * 1024  # the largest body any route takes: a 20 MB query image and its form


class BodyLimit:
    """413 for a body over MAX_BODY_BYTES before it is read: a declared length at once, a chunked
    body as soon as it passes the limit (the rest is never read; the connection then closes).
    A client that hangs up mid-body is no error of the server's: it ends the request quietly."""

    def __init__(self, app, limit: int = MAX_BODY_BYTES):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length", b"")
        detail = f"Request body over the {self.limit >> 20} MB limit"
        if declared.isdigit() and int(declared) > self.limit:
            return await _problem(
                scope, send, 413, f"{detail} ({int(declared)} bytes declared)", "BodyTooLarge"
            )
        state = {"received": 0, "refused": False, "started": False}

        async def limited_receive():
            if state["refused"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.limit:
                    state["refused"] = True
                    if not state["started"]:
                        state["started"] = True
                        await _problem(scope, send, 413, detail, "BodyTooLarge")
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if state["refused"]:
                return  # the 413 was the answer
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except ClientDisconnect:
            return  # the client hung up mid-request: no one is left to answer, nothing went wrong here
        except Exception:
            if not state["refused"]:
                raise  # after the 413, the route's complaint about the cut body is no news


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
