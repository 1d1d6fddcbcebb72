"""Ignore rules as git applies them: `.gitignore` at every level, `.git/info/exclude`, and `.ignore`.

A repository's `build/`, `dist/`, vendored copies and data dumps are not its content; ripgrep and
git itself leave them out, and so does the walk (mmrag/ingest/walk.py asks `DirRules.ignores` for
every folder and file it would otherwise take). Patterns are parsed by `pathspec` (git's wildmatch:
negation, anchoring, `dir/` patterns, `**`), and matched the way git matches them during its own
walk: a folder that is ignored is never entered, so nothing under it can be re-included, and a
pattern is tested against the path itself, not against its parent folders (those were tested when
the walk reached them). Precedence, highest first: the deepest folder's `.ignore`, its
`.gitignore`, then the folders above it up to the repository's top, then `.git/info/exclude`;
inside one file the last matching line wins.

`.gitignore` and `info/exclude` apply inside a git work tree (a folder with a `.git` entry, here
or above the walked folder; a nested repository starts afresh, as git treats it); `.ignore` is
honoured everywhere, as ripgrep does. The user's global excludes file (`core.excludesFile`) is not
read: it lists one person's editor files, and a collection should not depend on whose account
indexed it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from pathspec import GitIgnoreSpec

GITIGNORE = ".gitignore"
IGNORE = ".ignore"  # ripgrep's: same syntax, honoured outside repositories too, above .gitignore
_DIR_GROUP = "ps_d"  # pathspec's name for the part of a match that is a parent folder's trailing '/'


class Ignored(NamedTuple):
    """A file or folder the walk left out because an ignore rule matched it."""

    path: str
    root: str  # the walked path it was found under
    is_dir: bool


class _Pattern(NamedTuple):
    regex: object  # re.Pattern[str]
    negated: bool


@dataclass(frozen=True)
class _Level:
    """The patterns of one ignore file, matched against paths relative to `base`."""

    base: str  # absolute folder, no trailing separator
    patterns: tuple[_Pattern, ...]
    any_match: re.Pattern[str]  # all patterns in one regex: most paths match none, and one search says so

    def decide(self, path: str, is_dir: bool) -> bool | None:
        """True ignored, False re-included by a '!' line, None no line matches; last match wins."""
        rel = path[len(self.base) + 1 :]
        if os.sep != "/":
            rel = rel.replace(os.sep, "/")
        if is_dir:
            rel += "/"
        if not self.any_match.search(rel):
            return None
        for pat in reversed(self.patterns):
            if _matches_itself(pat.regex, rel, is_dir):
                return not pat.negated
        return None


def _matches_itself(regex, rel: str, is_dir: bool) -> bool:
    """Whether the pattern matches `rel` itself, not only one of its parent folders.

    pathspec's regexes also match everything under a matching folder (its `ps_d` group is the
    folder's trailing '/'); the walk has already decided about the parents, so such a match is
    not this path's. A folder is spelled with a trailing '/', so a match of it ends with that '/'.
    """
    first = regex.search(rel)
    if first is None:
        return False
    if _DIR_GROUP not in regex.groupindex:  # e.g. '*': it matches every path itself
        return True
    for m in (first, *regex.finditer(rel, first.start() + 1)):
        end = m.end(_DIR_GROUP) if m.group(_DIR_GROUP) is not None else -1
        if end == -1 or (is_dir and end == len(rel)):
            return True
    return False


def parse(lines: Iterable[str], base: str) -> _Level | None:
    """An ignore file's lines as a level; None when it holds no pattern (blank, comments only)."""
    spec = GitIgnoreSpec.from_lines(lines)
    pats = tuple(_Pattern(p.regex, not p.include) for p in spec.patterns if p.include is not None)
    if not pats:
        return None
    anonymous = (p.regex.pattern.replace(f"(?P<{_DIR_GROUP}>", "(?:") for p in pats)  # one name per regex
    return _Level(base.rstrip(os.sep) or os.sep, pats, re.compile("|".join(f"(?:{a})" for a in anonymous)))


def _read(path: str, base: str) -> _Level | None:
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError:  # unreadable or vanished: as git does, the folder is walked without it
        return None
    return parse(text.splitlines(), base)


def git_dir(folder: str) -> str | None:
    """The git directory of a work tree whose top is `folder` (a `.git` folder, or the folder a
    `.git` file names, as worktrees and submodules have); None when `folder` is no work tree top."""
    dot = os.path.join(folder, ".git")
    if os.path.isdir(dot):
        return dot
    try:
        with open(dot, encoding="utf-8", errors="replace") as f:
            first = f.readline().strip()
    except OSError:
        return None
    if not first.startswith("gitdir:"):
        return None
    gd = os.path.normpath(os.path.join(folder, first[len("gitdir:") :].strip()))
    try:  # a linked worktree keeps info/exclude in the main repository's git directory
        with open(os.path.join(gd, "commondir"), encoding="utf-8") as f:
            return os.path.normpath(os.path.join(gd, f.read().strip()))
    except OSError:
        return gd


def repo_top(path: str) -> str | None:
    """The top of the git work tree holding `path` (a folder), or None."""
    here = path
    while True:
        if git_dir(here) is not None:
            return here
        up = os.path.dirname(here)
        if up == here:
            return None
        here = up


@dataclass(frozen=True)
class DirRules:
    """The rules in force inside one folder: levels from the most specific to the least."""

    levels: tuple[_Level, ...] = ()
    in_repo: bool = False

    def ignores(self, path: str, is_dir: bool) -> bool:
        """Whether `path`, an entry of this folder, is left out."""
        for level in self.levels:
            decided = level.decide(path, is_dir)
            if decided is not None:
                return decided
        return False

    def enter(self, folder: str, names: Iterable[str] | None = None) -> DirRules:
        """The rules inside `folder`, a child of the folder these are for; `names` are its entries,
        when the caller has listed it (saves looking for ignore files that are not there)."""
        names = set(os.listdir(folder)) if names is None else set(names)
        levels, in_repo = self.levels, self.in_repo
        if ".git" in names and git_dir(folder) is not None:  # a repository of its own: git starts afresh
            levels, in_repo = _exclude_level(folder), True
        own = [IGNORE] + ([GITIGNORE] if in_repo else [])  # .ignore ranks above .gitignore
        new = tuple(lv for n in own if n in names and (lv := _read(os.path.join(folder, n), folder)))
        if not new and levels is self.levels and in_repo == self.in_repo:
            return self
        return DirRules(new + levels, in_repo)


def _exclude_level(top: str) -> tuple[_Level, ...]:
    gd = git_dir(top)
    level = _read(os.path.join(gd, "info", "exclude"), top) if gd else None
    return (level,) if level else ()


@dataclass
class IgnoreRules:
    """The rules for one walk: `at(folder, names)` gives a folder's DirRules, built from its
    parent's, so the walk must visit a folder after its parent (any top-down walk does)."""

    root: str
    _by_dir: dict[str, DirRules] = field(default_factory=dict)

    @classmethod
    def for_root(cls, root: str) -> IgnoreRules:
        """Rules of the repository above `root` read down to it. A root that those rules ignore
        was named on purpose: it is walked with only the rules found inside it."""
        rules = cls(root)
        top = repo_top(root)
        parent_of_root = DirRules()
        if top is not None and top != root:
            here: DirRules | None = DirRules().enter(top)
            parts = os.path.relpath(root, top).split(os.sep)
            folder = top
            for part in parts[:-1]:
                folder = os.path.join(folder, part)
                if here.ignores(folder, True):
                    here = None
                    break
                here = here.enter(folder)
            if here is not None and not here.ignores(root, True):
                parent_of_root = here
            else:
                parent_of_root = DirRules((), True)
        rules._by_dir[os.path.dirname(root)] = parent_of_root
        return rules

    def at(self, folder: str, names: Iterable[str]) -> DirRules:
        """The rules inside `folder`. Kept per folder for its subfolders; folders without ignore
        files share their parent's object, so this costs one dict entry per folder."""
        parent = self._by_dir.get(os.path.dirname(folder)) or DirRules()
        rules = parent.enter(folder, names)
        self._by_dir[folder] = rules
        return rules
