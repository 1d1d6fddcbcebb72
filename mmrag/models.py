"""The encoders a collection uses, loaded lazily and once per process.

Roles: `clip` (images, captions, the CLIP text tower), `code`, `text`. The joint space is CLIP's
when the model set has CLIP, else the text encoder's, so a collection without image weights
still has one space where every item lives.
"""

from __future__ import annotations

import threading
from dataclasses import replace

from encoders.base import Encoder, EncoderCfg
from encoders.modelsets import ModelSet

from .errors import ConfigError

ROLES = ("clip", "code", "text")


class Models:
    def __init__(self, model_set: ModelSet, cfg: EncoderCfg | None = None):
        self.set = model_set
        self.cfg = cfg or EncoderCfg()
        self._loaded: dict[str, Encoder] = {}
        self._by_spec: dict[str, Encoder] = {}
        self._lock = threading.Lock()

    def spec(self, role: str) -> str | None:
        if role == "joint":
            role = self.joint_role
        if role not in ROLES:
            raise ConfigError(f"Unknown encoder role {role!r}; valid: {ROLES + ('joint',)}")
        return getattr(self.set, role)

    @property
    def joint_role(self) -> str:
        return "clip" if self.set.clip else "text" if self.set.text else "code"

    def has(self, role: str) -> bool:
        return self.spec(role) is not None

    def get(self, role: str) -> Encoder:
        """The encoder for a role; roles sharing one spec share one loaded model."""
        spec = self.spec(role)
        if spec is None:
            raise ConfigError(f"Model set {self.set.name!r} has no {role} encoder")
        with self._lock:
            if spec not in self._by_spec:
                from encoders.registry import create_encoder

                self._by_spec[spec] = create_encoder(spec, self.cfg)
            return self._by_spec[spec]

    def same_encoder(self, a: str, b: str) -> bool:
        return self.spec(a) is not None and self.spec(a) == self.spec(b)

    def with_cfg(self, **changes) -> Models:
        return Models(self.set, replace(self.cfg, **changes))
