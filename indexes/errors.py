"""Typed errors of the index layer; mmrag wraps them, indexes/ imports nothing from mmrag."""

from __future__ import annotations


class IndexesError(Exception):
    """Base class of every error indexes/ raises on purpose."""


class IndexFileError(IndexesError):
    """An index file or its sidecar is missing, unreadable, corrupt or inconsistent."""


class NotTrainedError(IndexesError, ValueError):
    """The index needs training and was given too few vectors to train on."""


class ReductionError(IndexesError, ValueError):
    """A reduction spec that cannot apply: unknown kind, too many dimensions, too few vectors to fit."""


class NotMatryoshkaError(ReductionError):
    """Truncation asked of a model that was not trained for it (not Matryoshka)."""
