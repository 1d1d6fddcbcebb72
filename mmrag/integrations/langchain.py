"""mmrag as a LangChain retriever: `MmragRetriever(collection="my.coll", k=4).invoke("query")`.

Each Document's page_content is the item's text (an image's caption) and its metadata carries the
modality, path, lines, locator, score and, for image hits, `image_path` (mmrag/integrations/hits.py).
`k`, `modalities` and `where` (a filter: docs/filters.md) may also be given per call:
`retriever.invoke("query", k=10, where="lang = python")`.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field, PrivateAttr

from mmrag.integrations.hits import SharedEngine, hit_content, hit_metadata, picture_files

SEARCH_KWARGS = ("k", "modalities", "where")


class MmragRetriever(BaseRetriever):
    """Search an mmrag collection of images, code and documents with one query."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    collection: str | None = Field(default=None, description="the collection folder (opened read-only)")
    engine: Any = Field(default=None, exclude=True, description="an open mmrag Engine, instead of a path")
    k: int = Field(default=4, ge=1, description="documents returned")
    modalities: list[str] | None = Field(default=None, description="subset of image, code, text")
    where: str | None = Field(default=None, description="a filter on the items' fields (docs/filters.md)")

    _shared: SharedEngine = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        self._shared = SharedEngine(self.collection, self.engine)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        unknown = set(kwargs) - set(SEARCH_KWARGS)
        if unknown:
            raise TypeError(f"Unknown search arguments {sorted(unknown)}; valid: {list(SEARCH_KWARGS)}")
        modalities = kwargs.get("modalities", self.modalities)
        engine = self._shared.get()
        result = engine.search(
            query,
            k=kwargs.get("k", self.k),
            modalities=tuple(modalities) if modalities else None,
            where=kwargs.get("where", self.where),
        )
        pictures = picture_files(engine, result.hits)
        return [
            Document(
                page_content=hit_content(h),
                metadata=hit_metadata(h, self.collection, pictures.get(h.id)),
                id=str(h.id),
            )
            for h in result.hits
        ]

    def close(self) -> None:
        """Close the collection this retriever opened (an engine passed in stays open)."""
        self._shared.close()
