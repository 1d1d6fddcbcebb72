"""BM25 over int64 ids, for hybrid search next to the vector indexes.

Scores follow Lucene's BM25 as bm25s computes it: for each distinct query term t in
document d, idf(t) * tf / (tf + k1 * (1 - b + b * |d| / avgdl)) with
idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5)). bm25s builds a static index, so the token
lists are kept per id and the bm25s model is rebuilt lazily on the first search after a change.
The files hold the tokens themselves (vocabulary in JSON, token numbers in .npz), never pickle.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from indexes.atomic import atomic_save_npz, atomic_write_json
from indexes.errors import IndexFileError
from indexes.tokenize import tokenize

if TYPE_CHECKING:  # bm25s pulls in scipy (0.2 s): imported when a lexical search first runs
    import bm25s

FORMAT_VERSION = 1
META_FILE = "lexical.json"
TOKENS_FILE = "lexical.npz"


class LexicalIndex:
    """BM25 index: add(ids, texts), remove(ids), search(query, k) -> (scores, ids), save/load a folder."""

    def __init__(self, k1: float = 1.5, b: float = 0.75, *, stem: bool = False):
        # k1=1.5, b=0.75: the Lucene/Elasticsearch-era defaults; good on mixed prose and code
        if not k1 >= 0 or not 0 <= b <= 1:
            raise ValueError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1!r}, b={b!r}")
        self._k1 = float(k1)
        self._b = float(b)
        self._stem = bool(stem)
        self._docs: dict[int, list[str]] = {}
        self._model: bm25s.BM25 | None = None
        self._order = np.zeros(0, dtype=np.int64)  # id of each bm25s document row
        self._dirty = False

    @property
    def k1(self) -> float:
        return self._k1

    @property
    def b(self) -> float:
        return self._b

    @property
    def stem(self) -> bool:
        return self._stem

    @property
    def ntotal(self) -> int:
        return len(self._docs)

    def __len__(self) -> int:
        return len(self._docs)

    def __contains__(self, id_: object) -> bool:
        return isinstance(id_, (int, np.integer)) and not isinstance(id_, bool) and int(id_) in self._docs

    def ids(self) -> np.ndarray:
        return np.sort(np.fromiter(self._docs, dtype=np.int64, count=len(self._docs)))

    def tokens(self, id_: int) -> list[str]:
        """The tokens stored for one id (what BM25 sees); KeyError when absent."""
        return list(self._docs[int(id_)])

    def add(self, ids: Sequence[int] | np.ndarray, texts: Sequence[str]) -> None:
        """Index texts under ids; an id already present is replaced."""
        ids_arr = _as_ids(ids)
        if isinstance(texts, str) or len(ids_arr) != len(texts):
            raise ValueError(
                f"Got {len(ids_arr)} ids for {1 if isinstance(texts, str) else len(texts)} texts"
            )
        if len(np.unique(ids_arr)) != len(ids_arr):
            raise ValueError("Duplicate ids in one add")
        for id_, text in zip(ids_arr.tolist(), texts):
            if not isinstance(text, str):
                raise ValueError(f"Text for id {id_} is {type(text).__name__}, expected str")
            self._docs[id_] = tokenize(text, stem=self._stem)
        self._dirty = self._dirty or len(ids_arr) > 0

    def remove(self, ids: Sequence[int] | np.ndarray) -> int:
        """Remove ids; returns how many were present."""
        removed = sum(self._docs.pop(id_, None) is not None for id_ in _as_ids(ids).tolist())
        self._dirty = self._dirty or removed > 0
        return removed

    def search(self, query: str, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k documents sharing a term with `query`: scores float32 (k,), ids int64 (k,), -inf/-1 padded.

        `allowed`: only these ids are scored, so a filter keeps k results where there are k."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise ValueError(f"k must be a positive int, got {k!r}")
        scores = np.full(int(k), -np.inf, dtype=np.float32)
        out = np.full(int(k), -1, dtype=np.int64)
        model = self._fitted()
        if model is None:
            return scores, out
        terms = [t for t in dict.fromkeys(tokenize(query, stem=self._stem)) if t in model.vocab_dict]
        if not terms:
            return scores, out
        all_scores = np.asarray(model.get_scores(terms), dtype=np.float32)
        rows = np.flatnonzero(all_scores > 0)
        if allowed is not None:
            rows = rows[np.isin(self._order[rows], np.asarray(allowed, dtype=np.int64))]
        rows = rows[np.lexsort((self._order[rows], -all_scores[rows]))][:k]  # ties broken by id
        scores[: len(rows)] = all_scores[rows]
        out[: len(rows)] = self._order[rows]
        return scores, out

    def _fitted(self) -> bm25s.BM25 | None:
        """The bm25s model of the current documents, rebuilt if they changed since the last search."""
        if self._dirty or (self._model is None and self._docs):
            self._order = np.fromiter(self._docs, dtype=np.int64, count=len(self._docs))
            self._model = None
            if any(self._docs.values()):
                import bm25s

                model = bm25s.BM25(k1=self._k1, b=self._b, method="lucene")
                model.index(list(self._docs.values()), show_progress=False)
                self._model = model
            self._dirty = False
        return self._model

    def save(self, folder: str | os.PathLike[str]) -> None:
        """Write lexical.npz (ids, offsets, token numbers) then lexical.json (params, vocabulary)."""
        folder = Path(folder)
        vocab: dict[str, int] = {}
        ids = np.fromiter(self._docs, dtype=np.int64, count=len(self._docs))
        lengths = np.fromiter((len(t) for t in self._docs.values()), dtype=np.int64, count=len(ids))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        numbers = [vocab.setdefault(tok, len(vocab)) for toks in self._docs.values() for tok in toks]
        atomic_save_npz(
            folder / TOKENS_FILE, ids=ids, offsets=offsets, tokens=np.asarray(numbers, dtype=np.int32)
        )
        meta = {
            "format_version": FORMAT_VERSION,
            "k1": self._k1,
            "b": self._b,
            "stem": self._stem,
            "n_docs": len(ids),
            "n_tokens": len(numbers),
            "vocab": list(vocab),
        }
        atomic_write_json(folder / META_FILE, meta)

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> LexicalIndex:
        folder = Path(folder)
        meta = _read_meta(folder / META_FILE)
        try:
            with np.load(folder / TOKENS_FILE, allow_pickle=False) as data:
                ids, offsets, numbers = data["ids"], data["offsets"], data["tokens"]
        except (OSError, ValueError, KeyError) as e:
            raise IndexFileError(f"Unreadable {folder / TOKENS_FILE}: {e}") from e
        vocab = meta["vocab"]
        if (
            len(ids) != meta["n_docs"]
            or len(numbers) != meta["n_tokens"]
            or len(offsets) != len(ids) + 1
            or (len(numbers) and (numbers.min() < 0 or numbers.max() >= len(vocab)))
        ):
            raise IndexFileError(f"{folder}: {TOKENS_FILE} and {META_FILE} come from different saves")
        self = cls(k1=meta["k1"], b=meta["b"], stem=meta["stem"])
        words = np.asarray(vocab, dtype=object)
        for i, id_ in enumerate(ids.tolist()):
            self._docs[id_] = words[numbers[offsets[i] : offsets[i + 1]]].tolist()
        self._dirty = bool(self._docs)
        return self


def _as_ids(ids: Sequence[int] | np.ndarray) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(ids))
    if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise ValueError(f"Ids must be a 1-D integer array, got shape {arr.shape} dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _read_meta(path: Path) -> dict:
    if not path.is_file():
        raise IndexFileError(f"No lexical index at {path.parent} ({path.name} missing)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IndexFileError(f"Unreadable {path}: {e}") from e
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        version = meta.get("format_version") if isinstance(meta, dict) else None
        raise IndexFileError(f"{path} has format_version {version!r}; this code reads {FORMAT_VERSION}")
    missing = [k for k in ("k1", "b", "stem", "n_docs", "n_tokens", "vocab") if k not in meta]
    if missing:
        raise IndexFileError(f"{path} lacks keys {missing}")
    return meta
