"""`train(cfg)`: the one entry of fine-tuning, which picks the run for `cfg.kind` and `cfg.side`.

text and code, both sides: two_tower.py; the query side only: query_side.py; CLIP: clip.py. Each
run is imported when chosen, so a text run never imports open_clip.
"""

from __future__ import annotations

from ..errors import ConfigError
from .spec import KINDS, SIDES, Progress, TrainCfg, TrainResult


def train(cfg: TrainCfg, progress: Progress | None = None) -> TrainResult:
    """Fine-tune `cfg.base_model` and save it to `cfg.output_dir`; resumes from its last checkpoint."""
    if cfg.kind not in KINDS:
        raise ConfigError(f"Unknown training kind {cfg.kind!r}; valid: {list(KINDS)}")
    if cfg.kind == "clip":
        from .clip import train_clip

        return train_clip(cfg, progress)
    if cfg.side not in SIDES:
        raise ConfigError(f"Unknown training side {cfg.side!r}; valid: {list(SIDES)}")
    if cfg.side == "query":
        from .query_side import train_query_side

        return train_query_side(cfg, progress)
    from .two_tower import train_two_tower

    return train_two_tower(cfg, progress)
