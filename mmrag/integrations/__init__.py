"""Retrievers for the frameworks RAG pipelines are built on; each imports its framework only when used.

- langchain.py: `MmragRetriever`, a LangChain `BaseRetriever` (extra `mmrag[langchain]`)
- llamaindex.py: `MmragLlamaRetriever`, a LlamaIndex `BaseRetriever` (extra `mmrag[llamaindex]`)
- hits.py: what both put in a document's metadata, and the engine they share
"""

from __future__ import annotations
