"""The MCP server: mmrag as tools and resources for agents (Claude Code, Claude Desktop, Cursor, VS Code).

`mmrag mcp -c C` serves one collection over stdio; `mmrag serve` also answers MCP over streamable
HTTP at /mcp, behind the REST server's token, Host and Origin checks. Needs `mmrag[mcp]`; this
package's own __init__ imports nothing of the SDK, so the HTTP server can ask whether it is there.

- server.py: the tools (search, fetch, similar, collection_info; answer and index when allowed)
  and the item links (`mmrag://item/N`) read back through resources/read
- render.py: hits as quoted file content, resource links and downscaled pictures
- content.py: one item whole, its file checked to lie inside the collection's roots
- backend.py: what the server needs of a served collection (the REST server's Service)
- http.py: mounting the streamable HTTP transport into the REST app
"""

from __future__ import annotations
