"""Running mmrag on an existing distributed engine (Ray); optional, imported only when asked for."""

from __future__ import annotations

from mmrag.distributed.ray_index import RayIndexCfg, run_ray_index

__all__ = ["RayIndexCfg", "run_ray_index"]
