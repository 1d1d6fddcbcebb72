from __future__ import annotations

import pytest

from mmrag.errors import QueryError
from mmrag.query.router import looks_like_code, parse_query, plan_routes


def test_prose_is_text():
    q = parse_query("a dog running on the beach")
    assert [t.kind for t in q.terms] == ["text"] and q.kind == "text"


@pytest.mark.parametrize(
    "snippet",
    [
        "def read_json(path):\n    return json.load(open(path))",
        "for (int i = 0; i < n; i++) { sum += a[i]; }",
        "df.groupby('a').agg(np.mean)",
        "x = foo_bar(y) + baz(z)",
    ],
)
def test_code_snippets_are_code_and_not_split(snippet):
    assert looks_like_code(snippet)
    q = parse_query(snippet)
    assert [t.kind for t in q.terms] == ["code"] and q.terms[0].value == snippet.strip()


@pytest.mark.parametrize(
    "prose",
    ["how to read a json file in python", "python check if a variable is iterable", "sunset over the sea"],
)
def test_questions_are_not_code(prose):
    assert not looks_like_code(prose)


def test_mixed_query_with_image_and_negation(tmp_path):
    img = tmp_path / "ref.jpg"
    img.write_bytes(b"x")
    q = parse_query(f"cat + {img} - dog")
    assert [(t.kind, t.sign) for t in q.terms] == [("text", 1.0), ("image", 1.0), ("text", -1.0)]
    assert q.kind == "mixed"


def test_missing_image_and_empty_queries_are_errors(tmp_path):
    with pytest.raises(QueryError, match="does not exist"):
        parse_query(f"cat + {tmp_path}/nope.png")
    for bad in ("", "   ", "?!...", "- dog"):
        with pytest.raises(QueryError, match="Empty query"):
            parse_query(bad)


def test_huge_query_is_cut_not_rejected():
    q = parse_query("word " * 50_000)
    assert len(q.terms[0].value) <= 20_000


def test_plan_routes_respects_modalities_and_images(tmp_path):
    avail = ["image", "caption", "code", "text", "joint", "lexical"]
    text = parse_query("red car")
    assert set(plan_routes(text, avail).routes) == {"image", "caption", "code", "text", "joint"}
    assert set(plan_routes(text, avail, modalities=["code"]).routes) == {"code", "joint"}
    assert "lexical" in plan_routes(text, avail, weights={"lexical": 0.5}).routes
    img = tmp_path / "q.png"
    img.write_bytes(b"x")
    only_image = parse_query("", images=[str(img)])
    assert set(plan_routes(only_image, avail).routes) == {"image", "caption", "joint"}
    assert set(plan_routes(text, ["code", "text", "joint"]).routes) == {"code", "text", "joint"}
    with pytest.raises(QueryError, match="Unknown route"):
        plan_routes(text, avail, weights={"nope": 1})
