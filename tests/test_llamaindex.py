"""MmragLlamaRetriever: a query by text and a query by image, as TextNode/ImageNode with scores that
are the engine's own."""

from __future__ import annotations

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.schema import ImageNode, QueryBundle, TextNode  # noqa: E402
from test_server import build_collection  # noqa: E402

from mmrag.api import Engine  # noqa: E402
from mmrag.integrations.llamaindex import MmragLlamaRetriever  # noqa: E402


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    corpus, coll = build_collection(tmp_path_factory.mktemp("llamaindex"))
    retriever = MmragLlamaRetriever(coll, similarity_top_k=20)
    yield corpus, coll, retriever
    retriever.close()


def test_by_text(collection):
    _, coll, retriever = collection
    nodes = retriever.retrieve("reciprocal rank fusion")
    with Engine.open(coll) as eng:
        hits = eng.search("reciprocal rank fusion", k=20).hits
    assert [n.node.node_id for n in nodes] == [str(h.id) for h in hits]
    assert [n.score for n in nodes] == pytest.approx([h.score for h in hits])
    for n, h in zip(nodes, hits):
        assert isinstance(n.node, ImageNode if h.modality == "image" else TextNode)
        assert n.node.metadata["modality"] == h.modality and n.node.metadata["path"] == h.path
    code = next(n for n in nodes if n.node.metadata["modality"] == "code")
    assert code.node.metadata["start_line"] >= 1 and "def " in code.node.text


def test_by_image(collection):
    corpus, coll, _ = collection
    query = str(corpus / "img" / "blue.png")
    retriever = MmragLlamaRetriever(coll, similarity_top_k=3, modalities=("image",))
    try:
        nodes = retriever.retrieve(QueryBundle(query_str="", image_path=query))
    finally:
        retriever.close()
    with Engine.open(coll) as eng:
        hits = eng.search("", images=[query], k=3, modalities=("image",)).hits
    assert [n.node.node_id for n in nodes] == [str(h.id) for h in hits]
    assert all(isinstance(n.node, ImageNode) and n.node.image_path for n in nodes)
    assert nodes[0].node.image_path == query  # the picture itself ranks first
