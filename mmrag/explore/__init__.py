"""See a collection: a 2-D map of one space, clusters with labels, and outliers.

Each result is computed from the stored vectors and cached inside the collection folder
(`explore/`), keyed by the store generation, so it is recomputed only after the collection changed.
"""

from __future__ import annotations

from .clusters import Cluster, ClusterResult, find_clusters
from .map import MapCfg, MapLayout, load_map, place, trustworthiness
from .outliers import Outlier, find_outliers
from .spaces import space_for

__all__ = [
    "Cluster",
    "ClusterResult",
    "MapCfg",
    "MapLayout",
    "Outlier",
    "find_clusters",
    "find_outliers",
    "load_map",
    "place",
    "space_for",
    "trustworthiness",
]
