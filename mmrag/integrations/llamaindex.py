"""mmrag as a LlamaIndex retriever, by text or by image.

    retriever = MmragLlamaRetriever(collection="my.coll", similarity_top_k=4)
    retriever.retrieve("a dog on a beach")                                  # TextNode / ImageNode
    retriever.retrieve(QueryBundle(query_str="", image_path="query.jpg"))   # search by a picture

Image hits come back as ImageNode (image_path set, the caption as text), the rest as TextNode;
each with its score and the metadata of mmrag/integrations/hits.py (modality, path, lines, locator).
"""

from __future__ import annotations

import os
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.schema import ImageNode, NodeWithScore, QueryBundle, TextNode

from mmrag.api import Engine
from mmrag.integrations.hits import SharedEngine, hit_content, hit_metadata, picture_files
from mmrag.items import Hit


class MmragLlamaRetriever(BaseRetriever):
    """Search an mmrag collection; a QueryBundle's `image_path` makes the query a picture."""

    def __init__(
        self,
        collection: str | os.PathLike | None = None,
        *,
        engine: Engine | None = None,
        similarity_top_k: int = 4,
        modalities: tuple[str, ...] | None = None,
        where: str | None = None,
        **kwargs: Any,
    ):
        self._shared = SharedEngine(collection, engine)
        self.similarity_top_k = similarity_top_k
        self.modalities = modalities
        self.where = where
        super().__init__(**kwargs)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        images = [query_bundle.image_path] if query_bundle.image_path else []
        engine = self._shared.get()
        result = engine.search(
            query_bundle.query_str or "",
            images=images,
            k=self.similarity_top_k,
            modalities=self.modalities,
            where=self.where,
        )
        pictures = picture_files(engine, result.hits)
        return [NodeWithScore(node=self._node(h, pictures.get(h.id)), score=h.score) for h in result.hits]

    def _node(self, hit: Hit, picture: str | None) -> TextNode:
        meta = hit_metadata(hit, self._shared.collection, picture)
        meta = {k: v for k, v in meta.items() if v is not None}  # LlamaIndex stores flat, set values
        if hit.modality == "image":
            return ImageNode(
                id_=str(hit.id), text=hit_content(hit), image_path=meta["image_path"], metadata=meta
            )
        return TextNode(id_=str(hit.id), text=hit_content(hit), metadata=meta)

    def close(self) -> None:
        self._shared.close()
