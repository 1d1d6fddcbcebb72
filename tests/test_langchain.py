"""MmragRetriever through langchain-tests' standard retriever suite, unmodified, over a tiny-models
collection; and its Documents' metadata against the engine's own hits."""

from __future__ import annotations

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_tests")

from langchain_tests.integration_tests import RetrieversIntegrationTests  # noqa: E402
from test_server import build_collection  # noqa: E402

from mmrag.api import Engine  # noqa: E402
from mmrag.integrations.langchain import MmragRetriever  # noqa: E402


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> str:
    _, coll = build_collection(tmp_path_factory.mktemp("langchain"))
    return str(coll)


class TestMmragRetriever(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _collection(self, collection):
        self._path = collection

    @property
    def retriever_constructor(self) -> type[MmragRetriever]:
        return MmragRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"collection": self._path}

    @property
    def retriever_query_example(self) -> str:
        return "a red square"


def test_documents_carry_the_hits(collection):
    retriever = MmragRetriever(collection=collection, k=20)
    try:
        docs = retriever.invoke("a red square")
        with Engine.open(collection) as eng:
            hits = eng.search("a red square", k=20).hits
        assert [d.id for d in docs] == [str(h.id) for h in hits]
        for d, h in zip(docs, hits):
            assert d.metadata["modality"] == h.modality and d.metadata["score"] == pytest.approx(h.score)
            assert d.metadata["path"] == h.path and d.metadata["start_line"] == h.start_line
            assert d.metadata["locator"] == (h.locator.to_dict() if h.locator else None)
            assert d.page_content == (h.text or h.title)
            if h.modality == "image":
                assert d.metadata["image_path"] == h.path
        code = retriever.invoke("fusion", modalities=["code"], where="lang = python", k=2)
        assert len(code) == 2 and {d.metadata["language"] for d in code} == {"python"}
    finally:
        retriever.close()
