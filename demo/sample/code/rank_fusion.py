"""Reciprocal rank fusion: merge several ranked lists into one."""

from __future__ import annotations

from collections import defaultdict


def reciprocal_rank_fusion(rankings: list[list[str]], k: int = 60) -> list[tuple[str, float]]:
    """Score each document by the sum of 1 / (k + rank) over the lists that contain it."""
    scores: dict[str, float] = defaultdict(float)
    for ranking in rankings:
        for rank, doc_id in enumerate(ranking, start=1):
            scores[doc_id] += 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: pair[1], reverse=True)


class HybridSearcher:
    """Combine a keyword search and a vector search with rank fusion."""

    def __init__(self, keyword_search, vector_search):
        self.keyword_search = keyword_search
        self.vector_search = vector_search

    def search(self, query: str, limit: int = 10) -> list[tuple[str, float]]:
        lists = [self.keyword_search(query, limit * 3), self.vector_search(query, limit * 3)]
        return reciprocal_rank_fusion(lists)[:limit]
