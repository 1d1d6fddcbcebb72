"""One tokenizer for code and prose, so a query like "http response" finds getHTTPResponseCode.

Lowercases, splits on anything that is not a letter or digit, splits snake_case and
camelCase identifiers into their words while keeping the whole identifier too (an exact
identifier query then scores higher), and drops a small list of English stopwords.
No stemming unless asked; the optional one only strips plural endings.
"""

from __future__ import annotations

import re

# Function words only: code keywords such as "if", "not" or "return" stay searchable.
_STOPWORD_TEXT = """a an and are as at be been but by for from has have in into is it its of on or that the
their then there these this to was were will with"""
STOPWORDS: frozenset[str] = frozenset(_STOPWORD_TEXT.split())

_WORD_RE = re.compile(r"[^\W_]+(?:_+[^\W_]+)*", re.UNICODE)  # words, joined by underscores into identifiers
_CAMEL_RE = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")  # HTTPResponse -> HTTP, Response


def tokenize(text: str, *, stem: bool = False) -> list[str]:
    """Tokens of `text` in order: each identifier whole, then its parts (if it has several)."""
    tokens: list[str] = []
    for word in _WORD_RE.findall(text):
        parts = _split_identifier(word)
        whole = word.lower()
        if len(parts) > 1:
            tokens.append(whole)
        tokens.extend(parts if len(parts) > 1 else [whole])
    if stem:
        tokens = [light_stem(t) for t in tokens]
    return [t for t in tokens if t not in STOPWORDS]


def _split_identifier(word: str) -> list[str]:
    parts: list[str] = []
    for piece in word.split("_"):
        if not piece:
            continue
        sub = _CAMEL_RE.findall(piece) if piece.isascii() else []
        parts.extend(s.lower() for s in sub or [piece])
    return parts


def light_stem(token: str) -> str:
    """Harman's S-stemmer: plural endings only, so 'files' meets 'file' and little else changes."""
    if len(token) > 3 and token.endswith("ies") and not token.endswith(("eies", "aies")):
        return token[:-3] + "y"
    if len(token) > 3 and token.endswith("es") and not token.endswith(("aes", "ees", "oes")):
        return token[:-1]
    if len(token) > 2 and token.endswith("s") and not token.endswith(("us", "ss")) and not token.isdigit():
        return token[:-1]
    return token
