"""Vectors to ids (FAISS) and text to ids (BM25); nothing here knows about models."""

from __future__ import annotations

from indexes.errors import IndexesError, IndexFileError, NotTrainedError
from indexes.factory import (
    choose_factory,
    default_params,
    estimate_bytes,
    min_training_vectors,
    validate_factory,
)
from indexes.lexical import LexicalIndex
from indexes.tokenize import tokenize
from indexes.vector import VectorIndex

__all__ = [
    "IndexFileError",
    "IndexesError",
    "LexicalIndex",
    "NotTrainedError",
    "VectorIndex",
    "choose_factory",
    "default_params",
    "estimate_bytes",
    "min_training_vectors",
    "tokenize",
    "validate_factory",
]
