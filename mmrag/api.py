"""The library surface: open a collection with its models, index paths, search.

from mmrag import Engine
with Engine.open("my.coll", write=True, models="tiny") as eng:
    eng.index(["photos/", "src/"])
    hits = eng.search("a dog on a beach").hits
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from encoders.base import EncoderCfg
from encoders.modelsets import ModelSet, resolve_model_set
from mmrag.query.search import Searcher, SearchOptions, SearchResult
from mmrag.storage.collection import MANIFEST, Collection

from .errors import ConfigError
from .models import Models

if TYPE_CHECKING:  # the indexer pulls in the readers (Pillow, parsers): searching needs none of it
    from mmrag.indexing.indexer import IndexCfg, IndexReport, Progress


class Engine:
    def __init__(self, coll: Collection, models: Models):
        self.collection = coll
        self.models = models
        self.searcher = Searcher(coll, models)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        *,
        write: bool = False,
        models: str | ModelSet | None = None,
        encoder_cfg: EncoderCfg | None = None,
        lock_timeout: float = 0.0,
    ) -> Engine:
        """Open (or, with write=True and models given, create) a collection.

        An existing collection's own model set is used unless `models` names the same one; a new
        collection needs `models`.
        """
        exists = os.path.exists(os.path.join(path, MANIFEST))
        coll = Collection.open(path, write=write, create=write, lock_timeout=lock_timeout)
        try:
            if models is None:
                if not coll.manifest.models:
                    raise ConfigError(
                        f"New collection {path}: choose its encoders with models=... (--models)"
                    )
                ms = ModelSet.from_dict(coll.manifest.models)
            else:
                ms = models if isinstance(models, ModelSet) else resolve_model_set(models)
                if exists and coll.manifest.models:
                    old = ModelSet.from_dict(coll.manifest.models)
                    if (old.clip, old.code, old.text) != (ms.clip, ms.code, ms.text):
                        raise ConfigError(
                            f"Collection {path} was built with model set {old.name!r} "
                            f"(clip={old.clip}, code={old.code}, text={old.text}), not {ms.name!r}: "
                            "vectors of different models cannot be mixed. Use the same --models or a new collection."
                        )
        except BaseException:
            coll.close()
            raise
        return cls(coll, Models(ms, encoder_cfg))

    def close(self) -> None:
        self.collection.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def index(
        self, paths: Sequence[str], cfg: IndexCfg | None = None, progress: Progress | None = None
    ) -> IndexReport:
        """Index `paths`, then write the encoders' light query files so searches start without torch.

        With CLIP they are written first: its exported towers then embed this run's photos too,
        instead of torch (the first run of a model only; later ones find the files).
        """
        from mmrag.indexing.indexer import Indexer

        if self.models.has("clip") and paths:  # missing weights: the indexer's own error says so, once
            self.models.export_queries(quiet_missing=True)
            self.models.forget("clip")
        report = Indexer(self.collection, self.models, cfg, progress).run(paths)
        self.models.export_queries()
        return report

    def search(self, query: str, images: Sequence[str] = (), **options) -> SearchResult:
        return self.searcher.search(query, images, SearchOptions(**options))

    def similar(self, item_id: int, k: int = 10) -> SearchResult:
        return self.searcher.similar(item_id, k)

    def search_many(self, queries: Sequence[str], **options) -> list[SearchResult]:
        return self.searcher.search_many(queries, None, SearchOptions(**options))


def open_collection(path: str | os.PathLike, **kwargs) -> Engine:
    return Engine.open(path, **kwargs)
