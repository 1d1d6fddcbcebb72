"""MCP over streamable HTTP at /mcp, inside the REST app and behind its guard.

The route is added to the app itself, so the app's middleware (Host allow-list, foreign-Origin
refusal, the token: mmrag/http/security.py) runs before any MCP message is read. The SDK's own
DNS-rebinding check is off here: the guard already does it, and knows the `--allow-host` names.
The session manager's task group lives as long as the app, through the app's lifespan; each
start of the app gets a new one (a manager runs only once).
"""

from __future__ import annotations

import contextlib
import importlib.util
from typing import Any

MCP_PATH = "/mcp"


def sdk_installed() -> bool:
    """Whether the `mcp` SDK (mmrag[mcp]) can be imported, found without importing it."""
    try:
        return importlib.util.find_spec("mcp") is not None
    except (ImportError, ValueError):
        return False


def mount_mcp(app: Any, backend: Any, path: str = MCP_PATH) -> bool:
    """Serve the MCP server over `backend` at `path` of the Starlette/FastAPI `app`.

    Returns False, mounting nothing, when mmrag[mcp] is not installed. Indexing is not offered
    over HTTP (the read token could otherwise index): POST /index is the write route.
    """
    if not sdk_installed():
        return False
    from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
    from mcp.server.transport_security import TransportSecuritySettings
    from starlette.routing import Route

    from mmrag.mcp.server import McpCfg, build_server

    server = build_server(backend, McpCfg(allow_index=False))

    def new_manager():
        """A session manager runs once: each start of the app (a test client's, say) gets its own."""
        server.streamable_http_app(
            streamable_http_path=path,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        return server.session_manager

    endpoint = StreamableHTTPASGIApp(new_manager())
    app.router.routes.append(Route(path, endpoint=endpoint))
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a):
        endpoint.session_manager = manager = new_manager()
        async with manager.run(), inner(a) as state:
            yield state

    app.router.lifespan_context = lifespan
    app.state.mcp = server
    return True
