"""Typed errors of the engine: the CLI, server and demo turn these into messages and exit codes."""

from __future__ import annotations


class MMRagError(Exception):
    """Base class of every error mmrag raises on purpose."""


class ConfigError(MMRagError, ValueError):
    """A bad option, spec or config value; the message names it and the valid choices."""


class CollectionError(MMRagError):
    """The collection on disk is missing, locked, from another schema or inconsistent."""


class CollectionLockedError(CollectionError):
    """Another writer holds the collection's lock."""


class QueryError(MMRagError, ValueError):
    """A query that cannot be run: empty, unreadable image, bad k."""


class FilterError(QueryError):
    """A filter that cannot be run: bad syntax, an unknown field (the message lists the valid ones),
    or a value of the wrong type for its field. The CLI exits 2 and the server answers 422."""


class IngestError(MMRagError):
    """One source could not be read; indexing records it and goes on."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class MissingExtraError(MMRagError, ImportError):
    """A feature whose optional packages are not installed; the message names the pip extra to add."""

    def __init__(self, feature: str, extra: str, missing: list[str]):
        super().__init__(
            f"{feature} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not "
            f"installed: pip install 'mmrag[{extra}]'"
        )
        self.extra = extra
        self.missing = missing


class ClusterError(MMRagError):
    """The Ray cluster named by --address cannot be reached; the message says what to check."""


class ClusterAuthError(ClusterError):
    """The Ray cluster requires a token this driver does not have; the message names the variables to set."""
