"""How a code item and a query are represented as text before embedding.

A code encoder sees one string per function. Which string matters: the docstring is the
closest thing to a natural-language query that a function carries, identifiers in
camelCase or snake_case tokenize badly for WordPiece models, and web queries carry noise
words ("python", "how to"). Each choice is a named mode so that experiments and the index
can record which one they used.
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Callable

from mmrag.errors import ConfigError

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SPACES = re.compile(r"[ \t]+")


def split_docstring(source: str) -> tuple[str | None, str]:
    """(docstring, source without it) of the first function in `source`.

    The docstring is cut out by its exact AST span, so the rest of the code keeps its
    layout. Source that does not parse, or has no docstring, comes back whole with None.
    """
    text = textwrap.dedent(source)
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None, source
    func = next(
        (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))),
        None,
    )
    if func is None:
        return None, source
    doc = ast.get_docstring(func, clean=True)
    first = func.body[0] if func.body else None
    if doc is None or not isinstance(first, ast.Expr) or first.end_lineno is None:
        return None, source
    lines = text.splitlines(keepends=True)
    before = lines[: first.lineno - 1]
    head = lines[first.lineno - 1][: first.col_offset]
    tail = lines[first.end_lineno - 1][first.end_col_offset :]
    after = lines[first.end_lineno :]
    kept = [head + tail] if (head + tail).strip() else []
    body = "".join(before + kept + after)
    if len(func.body) == 1:
        # A function that is only a docstring still needs a body to stay valid Python.
        body = body.rstrip("\n") + "\n" + " " * first.col_offset + "...\n"
    return doc, body.rstrip("\n")


def split_identifiers(text: str) -> str:
    """`getUserName` and `get_user_name` both become `get user name` (WordPiece-friendly)."""

    def words(match: re.Match[str]) -> str:
        parts = _CAMEL.sub(" ", match.group(0)).replace("_", " ").split()
        return " ".join(parts) if parts else match.group(0)

    return _IDENT.sub(words, text)


def _compact(text: str) -> str:
    """Collapse runs of blanks and empty lines: indentation costs tokens, not meaning."""
    lines = (_SPACES.sub(" ", line).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def _docstring_first(text: str) -> str:
    doc, code = split_docstring(text)
    return f"{doc}\n{code}" if doc else text


def _no_docstring(text: str) -> str:
    return split_docstring(text)[1]


def _signature_docstring(text: str) -> str:
    doc, code = split_docstring(text)
    signature = code.split(":\n", 1)[0] if code.lstrip().startswith(("def ", "async def")) else code
    return f"{signature}\n{doc}" if doc else text


_CODE_VIEWS: dict[str, Callable[[str], str]] = {
    "raw": lambda t: t,
    "compact": _compact,
    "no_docstring": _no_docstring,
    "docstring_first": _docstring_first,
    "signature_docstring": _signature_docstring,
    "identifiers": split_identifiers,
    "compact_identifiers": lambda t: split_identifiers(_compact(t)),
    "docstring_first_identifiers": lambda t: split_identifiers(_compact(_docstring_first(t))),
}

_PYTHON_NOISE = re.compile(r"\b(?:in|with|using|from)\s+python\s*[23]?(?:\.\d+)?\b|\bpython\s*[23]?\b|\bpy\b")
_PUNCT = re.compile(r"[^\w\s]")


def _strip_python(text: str) -> str:
    out = _PYTHON_NOISE.sub(" ", text.lower())
    return " ".join(out.split()) or text


_QUERY_VIEWS: dict[str, Callable[[str], str]] = {
    "raw": lambda t: t,
    "lower": lambda t: " ".join(t.lower().split()),
    "strip_python": _strip_python,
    "strip_python_punct": lambda t: " ".join(_PUNCT.sub(" ", _strip_python(t)).split()) or t,
}


def code_view(text: str, mode: str = "raw") -> str:
    """The string a code encoder embeds for the function `text`, under `mode`."""
    if mode not in _CODE_VIEWS:
        raise ConfigError(f"Unknown code view {mode!r}; valid: {sorted(_CODE_VIEWS)}")
    return _CODE_VIEWS[mode](text)


def query_view(text: str, mode: str = "raw") -> str:
    """The string a code encoder embeds for the query `text`, under `mode`."""
    if mode not in _QUERY_VIEWS:
        raise ConfigError(f"Unknown query view {mode!r}; valid: {sorted(_QUERY_VIEWS)}")
    return _QUERY_VIEWS[mode](text)


def code_views() -> list[str]:
    return sorted(_CODE_VIEWS)


def query_views() -> list[str]:
    return sorted(_QUERY_VIEWS)
