"""Glob patterns for filters, matched in time linear in the text whatever the pattern.

`**/` is any folders or none, `/**` at the end anything below, `**` anything, `*` and `?` stay
within one name (or, on plain text, match anything), `[abc]` / `[!abc]` are classes. A naive
translation to a regex backtracks exponentially on `a*a*a*...b` (a filter arrives over HTTP), so
each wildcard but the last is matched atomically at its first fit, as CPython's fnmatch does:
for globs that is always a fit if any exists. Folder wildcards (`**/`) become a few alternatives.
"""

from __future__ import annotations

import re
from functools import lru_cache

from mmrag.errors import FilterError

MAX_PATTERN = 1_000  # characters in one glob (as many as any filter text value)
MAX_WILDCARDS = 64  # runs of * in one glob: matching costs text length x this
MAX_FOLDER_STARS = 4  # `/**/` inside a pattern: each doubles the alternatives tried


def check_glob(pattern: str) -> None:
    """FilterError for a pattern too long or too wild to be a glob anyone means."""
    if len(pattern) > MAX_PATTERN:
        raise FilterError(
            f"glob pattern of {len(pattern)} characters is over the {MAX_PATTERN}-character limit"
        )
    if len(re.findall(r"\*+", pattern)) > MAX_WILDCARDS:
        raise FilterError(f"glob pattern {pattern[:60]!r} has over {MAX_WILDCARDS} wildcards")
    if pattern.count("/**/") > MAX_FOLDER_STARS:
        raise FilterError(f"glob pattern {pattern[:60]!r} has over {MAX_FOLDER_STARS} `/**/`")


def glob_match(pattern: str, text: str, *, folders: bool) -> bool:
    """Whether the whole of `text` matches; `folders`: `/` separates names (paths), else plain text."""
    return any(rx.match(text) for rx in _compiled(pattern, folders))


@lru_cache(maxsize=512)
def _compiled(pattern: str, folders: bool) -> tuple[re.Pattern, ...]:
    pattern = re.sub(r"\*{3,}", "**", pattern)
    while "**/**/" in pattern:
        pattern = pattern.replace("**/**/", "**/")
    variants = [pattern]
    if folders:
        variants = _folder_variants(pattern)
    return tuple(
        re.compile(_regex(v, folders), re.DOTALL | (0 if folders else re.IGNORECASE)) for v in variants
    )


def _folder_variants(pattern: str) -> list[str]:
    """`**/x` is `x` or `**/x`; `a/**/b` is `a/b` or `a/**/b` (the `**` then spans at least one folder)."""
    out = [pattern]
    if pattern.startswith("**/"):
        out = [pattern[3:], pattern]
    for _ in range(pattern.count("/**/")):
        out = [v2 for v in out for v2 in ({v, v.replace("/**/", "/", 1)} if "/**/" in v else {v})]
    return sorted(set(out))


def _tokens(pattern: str, folders: bool) -> list[tuple[str, str]]:
    """('lit', regex) and ('star', what one wildcard character may be) tokens."""
    one = "[^/]" if folders else "."
    out: list[tuple[str, str]] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if pattern.startswith("**", i):
            out.append(("star", "."))
            i += 2
        elif ch == "*":
            out.append(("star", one))
            i += 1
        elif ch == "?":
            out.append(("lit", one))
            i += 1
        elif ch == "[" and (j := pattern.find("]", i + 2)) > 0 and _valid_class(pattern[i + 1 : j]):
            body = pattern[i + 1 : j]
            neg = body.startswith("!")
            out.append(
                (
                    "lit",
                    "["
                    + ("^" if neg else "")
                    + re.escape(body[1:] if neg else body).replace(r"\-", "-")
                    + "]",
                )
            )
            i = j + 1
        else:
            out.append(("lit", re.escape(ch)))
            i += 1
    return out


def _valid_class(body: str) -> bool:
    body = body[1:] if body.startswith("!") else body
    if not body:
        return False
    try:
        re.compile("[" + re.escape(body).replace(r"\-", "-") + "]")
    except re.error:  # [z-a]: then the brackets are plain characters
        return False
    return True


def _regex(pattern: str, folders: bool) -> str:
    chunks: list[str] = [""]  # literal chunks between wildcards
    stars: list[str] = []
    for kind, value in _tokens(pattern, folders):
        if kind == "star":
            stars.append(value)
            chunks.append("")
        else:
            chunks[-1] += value
    out = chunks[0]
    for n, (star, chunk) in enumerate(zip(stars, chunks[1:]), 1):
        if n < len(stars):  # first fit, atomically: (?=(?P<g>x*?chunk))(?P=g)
            out += f"(?=(?P<g{n}>{star}*?{chunk}))(?P=g{n})"
        else:
            out += f"{star}*{chunk}"  # the last wildcard may take the longest fit the end needs
    return out + r"\Z"
