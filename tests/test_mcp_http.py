"""MCP over streamable HTTP at /mcp of `mmrag serve`: the SDK's client with the token gets the same
tools, and the REST server's guard refuses a request without the token, under a rebinding Host, or
from another site's Origin, before any MCP message is read."""

from __future__ import annotations

import pytest

pytest.importorskip("mcp")
pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

import anyio  # noqa: E402
import httpx2  # noqa: E402
from mcp import Client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from test_server import API_KEY, LiveServer, build_collection  # noqa: E402

from mmrag.http.server import create_app  # noqa: E402

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "0"},
    },
}
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    _, coll = build_collection(tmp_path_factory.mktemp("mcp-http"))
    app = create_app(coll, api_key=API_KEY, ui=False)
    with LiveServer(app) as server:
        yield server
    app.state.service.close()


def test_sdk_client_with_the_token(live):
    async def go():
        http = httpx2.AsyncClient(headers={"X-API-Key": API_KEY}, timeout=60)
        async with http, Client(streamable_http_client(f"{live.url}/mcp", http_client=http)) as client:
            tools = sorted(t.name for t in (await client.list_tools()).tools)
            found = await client.call_tool("search", {"query": "a red square", "modality": "image"})
            return tools, found

    tools, found = anyio.run(go)
    assert tools == ["collection_info", "fetch", "search", "similar"]  # no index tool over HTTP
    assert "image" in [b.type for b in found.content]


@pytest.mark.parametrize(
    "headers, status",
    [
        ({}, 401),  # no token
        ({"X-API-Key": "wrong"}, 401),
        ({"X-API-Key": API_KEY, "Host": "evil.example:7860"}, 400),  # DNS rebinding
        ({"X-API-Key": API_KEY, "Origin": "http://evil.example"}, 403),  # another site's page
    ],
)
def test_guard_refuses(live, headers, status):
    r = httpx.post(f"{live.url}/mcp", json=INIT, headers={**ACCEPT, **headers}, timeout=30)
    assert r.status_code == status, r.text
    assert "mcp-session-id" not in r.headers  # refused before the MCP layer saw it


def test_guard_lets_the_token_through(live):
    r = httpx.post(f"{live.url}/mcp", json=INIT, headers={**ACCEPT, "X-API-Key": API_KEY}, timeout=30)
    assert r.status_code == 200 and r.headers.get("mcp-session-id")
