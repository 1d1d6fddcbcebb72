from __future__ import annotations

import ast

import pytest

from mmrag.errors import ConfigError
from mmrag.train.views import (
    code_view,
    code_views,
    query_view,
    query_views,
    split_docstring,
    split_identifiers,
)

FUNC = '''def getUserName(self, user_id):
        """Return the user's display name.

        :param user_id: the id
        """
        row = self.db.fetch(user_id)
        return row.display_name'''


def test_split_docstring_cuts_exactly_the_docstring():
    doc, code = split_docstring(FUNC)
    assert doc.startswith("Return the user's display name.")
    assert ":param user_id" in doc
    assert '"""' not in code and "display name." not in code
    assert "row = self.db.fetch(user_id)" in code and code.startswith("def getUserName")


def test_split_docstring_keeps_docstring_only_functions_valid():
    doc, code = split_docstring('def f():\n    """Only a docstring."""\n')
    assert doc == "Only a docstring."
    ast.parse(code)


def test_split_docstring_leaves_undocumented_or_broken_source_alone():
    assert split_docstring("def f(x):\n    return x") == (None, "def f(x):\n    return x")
    broken = "def f(:\n  pass"
    assert split_docstring(broken) == (None, broken)


def test_split_identifiers_handles_camel_and_snake_case():
    assert split_identifiers("getUserName") == "get User Name"
    assert split_identifiers("get_user_name") == "get user name"
    assert split_identifiers("HTTPServer") == "HTTP Server"
    assert split_identifiers("x = 1") == "x = 1"


def test_code_views_differ_where_they_should():
    assert code_view(FUNC, "raw") == FUNC
    assert "display name" not in code_view(FUNC, "no_docstring")
    first = code_view(FUNC, "docstring_first")
    assert first.startswith("Return the user's display name.") and "row = self.db" in first
    sig = code_view(FUNC, "signature_docstring")
    assert sig.startswith("def getUserName(self, user_id)") and "row =" not in sig
    assert "get User Name" in code_view(FUNC, "compact_identifiers")
    assert "\n\n" not in code_view(FUNC, "compact") and "    " not in code_view(FUNC, "compact")


@pytest.mark.parametrize("mode", code_views())
def test_every_code_view_returns_nonempty_text(mode):
    assert code_view(FUNC, mode).strip()


def test_query_views_strip_python_noise():
    q = "How to check if a variable is iterable in Python 3?"
    assert query_view(q, "raw") == q
    assert query_view(q, "lower") == q.lower()
    assert query_view(q, "strip_python") == "how to check if a variable is iterable ?"
    assert query_view(q, "strip_python_punct") == "how to check if a variable is iterable"
    assert query_view("python", "strip_python") == "python"  # never empties a query


@pytest.mark.parametrize("mode", query_views())
def test_every_query_view_keeps_the_words(mode):
    assert "iterable" in query_view("python check if iterable", mode)


def test_unknown_modes_name_the_valid_ones():
    with pytest.raises(ConfigError, match="docstring_first"):
        code_view("x", "nope")
    with pytest.raises(ConfigError, match="strip_python"):
        query_view("x", "nope")
