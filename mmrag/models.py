"""The encoders a collection uses, loaded lazily and once per process.

Roles: `clip` (images, captions, the CLIP text tower), `code`, `text`. The joint space is CLIP's
when the model set has CLIP, else the text encoder's, so a collection without image weights
still has one space where every item lives.

Queries go through `query(role)`: a light encoder (ONNX Runtime and `tokenizers`, no torch; see
encoders/exported/) when the role's query files were exported, which `export_queries` does at the
end of indexing; else the full encoder of `get(role)`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from encoders.base import Encoder, EncoderCfg, EncoderError, WeightsNotFoundError
from encoders.modelsets import ModelSet

from .errors import ConfigError

ROLES = ("clip", "code", "text")
log = logging.getLogger(__name__)


class Models:
    def __init__(self, model_set: ModelSet, cfg: EncoderCfg | None = None):
        self.set = model_set
        self.cfg = cfg or EncoderCfg()
        self._by_spec: dict[str, Encoder] = {}
        self._query: dict[str, Encoder] = {}
        self._lock = threading.RLock()  # query() may load the full encoder through get()

    def spec(self, role: str) -> str | None:
        """A role's spec; `code@2` names the second member of the code role's ensemble."""
        base, _, nth = role.partition("@")
        if base == "joint":
            base = self.joint_role
        if base not in ROLES or (nth and not nth.isdigit()):
            raise ConfigError(f"Unknown encoder role {role!r}; valid: {ROLES + ('joint',)}, or ROLE@N")
        if nth:
            members = self.set.members(base)
            return members[int(nth) - 1] if 2 <= int(nth) <= len(members) else None
        return getattr(self.set, base)

    def ensemble_spaces(self) -> list[str]:
        """The extra spaces of ensembles (`code@2`, ...), with `joint@N` when the joint role has one."""
        spaces = list(self.set.ensemble_spaces())
        j = self.joint_role
        return spaces + [f"joint@{n}" for n in range(2, len(self.set.members(j)) + 1)]

    @property
    def joint_role(self) -> str:
        return "clip" if self.set.clip else "text" if self.set.text else "code"

    def has(self, role: str) -> bool:
        return self.spec(role) is not None

    def get(self, role: str) -> Encoder:
        """The full encoder for a role; roles sharing one spec share one loaded model."""
        spec = self._require(role)
        with self._lock:
            if spec not in self._by_spec:
                from encoders.registry import create_encoder

                self._by_spec[spec] = create_encoder(spec, self.cfg)
            return self._by_spec[spec]

    def query(self, role: str) -> Encoder:
        """The encoder that embeds queries for a role: light where its files exist, else `get(role)`.

        Both give the same vectors (cosine >= 0.9999, checked when the files are written); the light
        one loads in milliseconds instead of seconds and hands images to the full encoder.
        """
        spec = self._require(role)
        with self._lock:
            if spec not in self._query:
                from encoders import create_query_encoder

                self._query[spec] = create_query_encoder(spec, self.cfg, full=lambda: self.get(role))
            return self._query[spec]

    def export_queries(
        self, roles: Sequence[str] | None = None, *, quiet_missing: bool = False
    ) -> dict[str, Path | None]:
        """Write the light query files of `roles` (default all; loading the full encoders); role ->
        card path or None.

        A failed export is logged and leaves that role on its full encoder: indexing never fails for it.
        `quiet_missing` skips the log for missing weights, where the caller reports them itself.
        """
        from encoders import export_towers

        out: dict[str, Path | None] = {}
        for role in roles if roles is not None else (*ROLES, *self.set.ensemble_spaces()):
            spec = self.spec(role)
            if spec is None:
                continue
            try:  # files already written: the full encoder is not loaded
                out[role] = export_towers(spec, lambda role=role: self.get(role))
            except WeightsNotFoundError as err:
                if not quiet_missing:
                    log.warning("%s", err)
                out[role] = None
            except EncoderError as err:
                log.warning("%s", err)
                out[role] = None
        return out

    def forget(self, role: str) -> None:
        """Drop a role's loaded encoders, so the next `get` builds it again: after `export_queries`,
        from the files just written where they serve it (CLIP's towers), without torch."""
        spec = self.spec(role)
        with self._lock:
            self._by_spec.pop(spec, None)
            self._query.pop(spec, None)

    def same_encoder(self, a: str, b: str) -> bool:
        return self.spec(a) is not None and self.spec(a) == self.spec(b)

    def with_cfg(self, **changes) -> Models:
        return Models(self.set, replace(self.cfg, **changes))

    def _require(self, role: str) -> str:
        spec = self.spec(role)
        if spec is None:
            raise ConfigError(f"Model set {self.set.name!r} has no {role} encoder")
        return spec
