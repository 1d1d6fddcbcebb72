"""Tokenizer and BM25 LexicalIndex: splitting, ranking, removal, persistence, the formula itself."""

from __future__ import annotations

import math

import numpy as np
import pytest

from indexes import IndexFileError, LexicalIndex, tokenize
from indexes.tokenize import light_stem


def test_tokenizer_splits_identifiers_and_keeps_them_whole():
    assert tokenize("getHTTPResponseCode") == ["gethttpresponsecode", "get", "http", "response", "code"]
    assert tokenize("parse_json_file") == ["parse_json_file", "parse", "json", "file"]
    assert tokenize("XMLHttpRequest") == ["xmlhttprequest", "xml", "http", "request"]
    assert tokenize("__init__") == ["init"]


def test_tokenizer_prose_and_stopwords():
    assert tokenize("The Cat, and the HAT!") == ["cat", "hat"]
    assert tokenize("if x is not None: return y") == ["if", "x", "not", "none", "return", "y"]
    assert tokenize("") == [] and tokenize("the of and") == []
    assert tokenize("crème_brûlée") == ["crème_brûlée", "crème", "brûlée"]


def test_light_stem_plurals_only():
    assert [light_stem(w) for w in ["files", "queries", "class", "status", "parsing"]] == [
        "file",
        "query",
        "class",
        "status",
        "parsing",
    ]
    assert tokenize("parse files", stem=True) == ["parse", "file"]


DOCS = {
    10: "def parse_json_file(path): load a json document from disk",
    20: "The cat sat on the mat with another cat",
    30: "class HttpClient: def getHTTPResponseCode(self): send the request",
    40: "a file on disk holds the document",
}


@pytest.fixture()
def lexical() -> LexicalIndex:
    index = LexicalIndex()
    index.add(list(DOCS), list(DOCS.values()))
    return index


def test_rare_terms_rank_first(lexical):
    scores, ids = lexical.search("json document", 4)
    assert ids[0] == 10  # shares the rare "json" and "document"
    assert ids[1] == 40  # shares only "document"
    assert (ids[2:] == -1).all() and np.isneginf(scores[2:]).all()
    assert scores.dtype == np.float32 and ids.dtype == np.int64 and scores[0] > scores[1] > 0
    assert lexical.search("http response code", 2)[1][0] == 30
    assert lexical.search("getHTTPResponseCode", 1)[1][0] == 30


def test_empty_and_stopword_queries_return_nothing(lexical):
    for query in ["", "   ", "the and of", "zebra"]:
        scores, ids = lexical.search(query, 3)
        assert (ids == -1).all() and np.isneginf(scores).all()
    assert (LexicalIndex().search("cat", 2)[1] == -1).all()
    with pytest.raises(ValueError, match="k must be"):
        lexical.search("cat", 0)


def test_remove_and_replace(lexical):
    assert lexical.remove([10, 999]) == 1
    assert 10 not in lexical and len(lexical) == 3
    assert 10 not in lexical.search("json document", 4)[1]
    lexical.add([20], ["json everywhere"])  # replaces the cat text
    assert lexical.search("cat", 3)[1][0] == -1
    assert lexical.search("json", 3)[1][0] == 20
    np.testing.assert_array_equal(lexical.ids(), [20, 30, 40])


def test_save_load_equality(lexical, tmp_path):
    lexical = LexicalIndex(k1=1.2, b=0.6)
    lexical.add(list(DOCS), list(DOCS.values()))
    lexical.save(tmp_path / "lex")
    loaded = LexicalIndex.load(tmp_path / "lex")
    assert (loaded.k1, loaded.b, loaded.stem) == (1.2, 0.6, False)
    np.testing.assert_array_equal(loaded.ids(), lexical.ids())
    assert all(loaded.tokens(i) == lexical.tokens(i) for i in DOCS)
    for query in ["json document", "cat", "http request", "disk file"]:
        s0, i0 = lexical.search(query, 4)
        s1, i1 = loaded.search(query, 4)
        np.testing.assert_array_equal(i0, i1)
        np.testing.assert_array_equal(s0, s1)
    assert not list((tmp_path / "lex").glob(".*.tmp"))


def test_load_errors(tmp_path, lexical):
    with pytest.raises(IndexFileError, match="No lexical index"):
        LexicalIndex.load(tmp_path / "nothing")
    lexical.save(tmp_path / "lex")
    (tmp_path / "lex" / "lexical.npz").write_bytes(b"garbage")
    with pytest.raises(IndexFileError):
        LexicalIndex.load(tmp_path / "lex")


def test_bm25_matches_hand_computed_formula():
    docs = ["apple banana apple", "banana cherry", "cherry cherry durian fig"]
    k1, b = 1.5, 0.75
    index = LexicalIndex(k1=k1, b=b)
    index.add([1, 2, 3], docs)
    tokenized = [d.split() for d in docs]
    n_docs = len(docs)
    avgdl = sum(len(t) for t in tokenized) / n_docs

    def bm25(query_terms: list[str], doc: list[str]) -> float:
        total = 0.0
        for term in set(query_terms):
            df = sum(term in t for t in tokenized)
            idf = math.log(1 + (n_docs - df + 0.5) / (df + 0.5))
            tf = doc.count(term)
            total += idf * tf / (tf + k1 * (1 - b + b * len(doc) / avgdl))
        return total

    for query in ["apple", "banana cherry", "cherry", "durian apple banana"]:
        scores, ids = index.search(query, 3)
        expected = {i + 1: bm25(query.split(), t) for i, t in enumerate(tokenized)}
        for score, id_ in zip(scores, ids):
            if id_ == -1:
                continue
            assert score == pytest.approx(expected[int(id_)], rel=1e-5)
        matched = sorted(i for i, v in expected.items() if v > 0)
        assert sorted(ids[ids >= 0].tolist()) == matched
