"""`clip:` encoders through open-clip-torch: one model, a text tower and an image tower.

Identifiers: `ARCH/TAG` (an open_clip pretrained tag, e.g. `ViT-B-32/laion2b_s34b_b79k`), `ARCH`
alone (its default tag, where one is set), or `ARCH@/path/to/open_clip_model.safetensors|.bin|.pt`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..atomic import write_text
from ..base import Encoder, EncoderCfg, EncoderConfigError, WeightsNotFoundError
from ..exported.card import ImageCard, QueryCard
from ..exported.towers import clip_tower
from ..runtime.choose import check_backend
from ..weights import (
    cached_hub_file,
    hub_reachable,
    hub_unavailable_reason,
    missing_message,
    resolve_hub_file,
)

if TYPE_CHECKING:
    import torch
    from PIL import Image

# laion2b_s34b_b79k: higher published zero-shot retrieval than openai at the same cost (docs/encoders.md)
DEFAULT_TAGS: dict[str, str] = {"ViT-B-32": "laion2b_s34b_b79k"}
OPEN_CLIP_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
# hub repos of the default tags, to probe the cache without importing open_clip (checked against it in tests)
CACHE_PROBES: dict[str, str] = {
    "ViT-B-32/laion2b_s34b_b79k": "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
    "ViT-B-32/openai": "timm/vit_base_patch32_clip_224.openai",
}
PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")
BACKENDS = ("auto", "torch")


class ClipEncoder(Encoder):
    """Captions and text queries through the text tower, images through the image tower."""

    inputs = frozenset({"text", "image"})

    def __init__(self, model: Any, preprocess: Callable, tokenizer: Callable, cfg: EncoderCfg, *, spec: str):
        import torch

        check_backend(cfg.backend, BACKENDS, "CLIP")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.spec = spec
        self.cfg = cfg
        self.model = model.to(cfg.device).eval()
        self.tokenizer = tokenizer
        self._preprocess = preprocess
        self.dim = int(getattr(self.model.visual, "output_dim", 0) or self._probe_dim())

    def _probe_dim(self) -> int:
        import torch

        with torch.inference_mode():
            return int(self.model.encode_text(self.tokenizer([""]).to(self.cfg.device)).shape[-1])

    @property
    def image_transform(self) -> Callable:
        """The model's own torchvision preprocess (PIL image -> (3, H, W) tensor), for parallel loaders."""
        return self._preprocess

    def encode_text(self, texts: Sequence[str], *, query: bool = False) -> np.ndarray:
        """CLIP pads every text to its context length, so plain batches cost the same as sorted ones."""
        import torch

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        bs = max(1, self.cfg.batch_size)
        with torch.inference_mode():
            for start in range(0, len(texts), bs):
                tokens = self.tokenizer(list(texts[start : start + bs])).to(self.cfg.device)
                out[start : start + bs] = _unit(self.model.encode_text(tokens))
        return out

    def encode_image(self, images: Sequence[Image.Image]) -> np.ndarray:
        import torch

        out = np.zeros((len(images), self.dim), dtype=np.float32)
        bs = max(1, self.cfg.batch_size)
        for start in range(0, len(images), bs):
            chunk = images[start : start + bs]
            pixels = torch.stack([self._preprocess(img.convert("RGB")) for img in chunk])
            out[start : start + len(chunk)] = self.encode_pixels(pixels)
        return out

    def export_query(self, folder: Path) -> QueryCard | None:
        """The text tower as ONNX and the tokenizer as tokenizer.json in `folder` (exported/query.py).

        None when the tokenizer is not open_clip's plain BPE one (its cleaning is only reproduced for that).
        """
        from .clip_export import export_text_tower, tokenizer_json

        tok = tokenizer_json(self.tokenizer)
        if tok is None:
            return None
        text, pattern, flags = tok
        ctx = int(self.tokenizer.context_length)
        on_cpu = self.cfg.device == "cpu"
        model = self.model if on_cpu else self.model.to("cpu")  # the exporter traces on CPU
        try:
            trim = export_text_tower(model, folder / "text.onnx", ctx)
        finally:
            if not on_cpu:
                self.model.to(self.cfg.device)
        write_text(folder / "tokenizer.json", text)
        return QueryCard(
            spec=self.spec,
            kind="clip",
            dim=self.dim,
            max_length=ctx,
            lead=(int(self.tokenizer.sot_token_id),),
            trail=(int(self.tokenizer.eot_token_id),),
            pad_id=0,  # open_clip pads with zeros
            split_pattern=pattern,
            split_flags=flags,
            trim=trim,
            inputs=tuple(sorted(self.inputs)),
            model="text.onnx",
        )

    def export_image(self, folder: Path) -> ImageCard | None:
        """The image tower as ONNX in `folder` and the card of its preprocessing (exported/image.py).

        None when the model's transform has a step exported/image.py does not reproduce exactly.
        """
        from ..runtime.image_export import export_image_onnx
        from .clip_image import cls_tower

        fields = transform_fields(self._preprocess)
        if fields is None:
            return None
        card = ImageCard(spec=self.spec, dim=self.dim, **fields)
        on_cpu = self.cfg.device == "cpu"
        model = self.model if on_cpu else self.model.to("cpu")  # the exporter traces on CPU
        try:
            encode = cls_tower(model) or model.encode_image  # the same numbers, fewer FLOPs where exact
            export_image_onnx(encode, model, folder / card.model, card.size)
        finally:
            if not on_cpu:
                self.model.to(self.cfg.device)
        return card

    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        """(n, 3, H, W) tensors already through `image_transform` -> (n, dim) unit rows."""
        import torch

        if len(pixels) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        with torch.inference_mode():
            return _unit(self.model.encode_image(pixels.to(self.cfg.device)))


def transform_fields(transform: Any) -> dict[str, Any] | None:
    """An open_clip eval transform as ImageCard fields (size, resize, interpolation, mean, std).

    Known shapes only: Resize(short side, antialiased) + CenterCrop of that side ("shortest"), or
    Resize((s, s)) ("squash"), then an RGB conversion, ToTensor and Normalize. Anything else is None.
    """
    from torchvision import transforms as T

    from ..exported.image import FILTERS

    steps = list(getattr(transform, "transforms", ()))
    tail = {"MaybeConvertMode", "MaybeToTensor", "ToTensor"}
    if not steps or not isinstance(steps[-1], T.Normalize):
        return None
    head = [t for t in steps[:-1] if type(t).__name__ not in tail]
    if not any(type(t).__name__ in ("MaybeToTensor", "ToTensor") for t in steps):
        return None
    resize = head[0] if head else None
    if not isinstance(resize, T.Resize) or resize.max_size is not None or resize.antialias is False:
        return None
    interpolation = resize.interpolation.value
    size = [resize.size] if isinstance(resize.size, int) else list(resize.size)
    if interpolation not in FILTERS:
        return None
    if len(size) == 1 and len(head) == 2 and isinstance(head[1], T.CenterCrop):
        if list(head[1].size) != [size[0], size[0]]:
            return None
        mode = "shortest"
    elif len(size) == 2 and size[0] == size[1] and len(head) == 1:
        mode = "squash"
    else:
        return None
    norm = steps[-1]
    mean, std = tuple(float(v) for v in norm.mean), tuple(float(v) for v in norm.std)
    return {"size": int(size[0]), "resize": mode, "interpolation": interpolation, "mean": mean, "std": std}


def _unit(x: torch.Tensor) -> np.ndarray:
    import torch

    return torch.nn.functional.normalize(x.float(), dim=-1).cpu().numpy()


def load_clip(ident: str, cfg: EncoderCfg) -> Encoder:
    """`clip:` factory: the exported towers where both exist (exported/towers.py), else the weights
    resolved locally first and the open_clip model built."""
    exported = clip_tower(f"clip:{ident}", cfg)  # both towers exported: no torch, no open_clip
    if exported is not None:
        return exported
    arch, tag, path = parse_clip_ident(ident)
    _fail_fast(arch, tag)
    import open_clip

    if arch not in open_clip.list_models():
        raise EncoderConfigError(f"Unknown CLIP architecture {arch!r}; valid: {open_clip.list_models()}")
    kwargs: dict[str, Any] = {}
    if path is None:
        pcfg = open_clip.get_pretrained_cfg(arch, tag)
        if not pcfg:
            tags = open_clip.list_pretrained_tags_by_model(arch)
            raise EncoderConfigError(f"Unknown pretrained tag {tag!r} for {arch}; valid: {tags}")
        path = tag_weights(arch, tag, pcfg)
        kwargs = tag_options(pcfg)
    elif not Path(path).is_file():
        raise WeightsNotFoundError(f"CLIP checkpoint {path!r} (from clip:{ident}) does not exist")
    model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=str(path), **kwargs)
    tokenizer = open_clip.get_tokenizer(arch)
    return ClipEncoder(model, preprocess, tokenizer, cfg, spec=f"clip:{ident}")


def _fail_fast(arch: str, tag: str) -> None:
    """Missing weights of a known tag, hub unreachable: say so before importing open_clip (~10 s)."""
    repo = CACHE_PROBES.get(f"{arch}/{tag}")
    if repo and cached_hub_file(repo, OPEN_CLIP_WEIGHT_FILES) is None and not hub_reachable():
        reason = hub_unavailable_reason()
        raise WeightsNotFoundError(
            missing_message(
                repo,
                [f"{repo}: not in the cache", reason],
                schema_hint=f"clip:{arch}@/path/to/open_clip_model.safetensors",
            )
        )


def tag_options(pcfg: dict[str, Any]) -> dict[str, Any]:
    """open_clip's own options for a pretrained tag, as `create_model_and_transforms` kwargs.

    Loading by file path skips open_clip's tag lookup, so what the tag would set is passed
    explicitly: QuickGELU (openai weights are trained with it) and the tag's preprocessing
    (mean, std, interpolation, resize mode), which the function takes as `image_*` arguments.
    """
    options: dict[str, Any] = {"force_quick_gelu": bool(pcfg.get("quick_gelu", False))}
    options.update({f"image_{k}": pcfg[k] for k in PREPROCESS_KEYS if k in pcfg})
    return options


def parse_clip_ident(ident: str) -> tuple[str, str, str | None]:
    """'ViT-B-32/openai' -> (arch, tag, None); 'ViT-B-32@/w.safetensors' -> (arch, '', path)."""
    if "@" in ident:
        arch, _, path = ident.partition("@")
        return arch, "", os.path.expanduser(path)
    arch, _, tag = ident.partition("/")
    tag = tag or DEFAULT_TAGS.get(arch, "")
    if not arch or not tag:
        raise EncoderConfigError(
            f"CLIP spec {ident!r} needs ARCH/TAG or ARCH@/path/to/weights, e.g. "
            f"'ViT-B-32/{DEFAULT_TAGS['ViT-B-32']}'"
        )
    return arch, tag, None


def hub_location(pcfg: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    """open_clip's `hf_hub` field is 'org/repo/' (default file names) or 'org/repo/file'."""
    repo, filename = os.path.split(pcfg.get("hf_hub", ""))
    return repo, (filename,) if filename else OPEN_CLIP_WEIGHT_FILES


def url_cache_file(url: str) -> Path:
    """Where open_clip's URL downloads (the openai release) are cached: `~/.cache/clip/<file name>`."""
    return Path.home() / ".cache" / "clip" / os.path.basename(url)


def tag_weights(arch: str, tag: str, pcfg: dict[str, Any]) -> Path:
    """Local file of a pretrained tag: HF cache or open_clip's URL cache, else a short download."""
    repo, files = hub_location(pcfg)
    if repo:
        return resolve_hub_file(repo, files, model=f"clip:{arch}@/path/to/open_clip_model.safetensors")
    url = pcfg.get("url", "")
    cached = url_cache_file(url)
    if url and cached.is_file():
        return cached
    if not url or not hub_reachable():
        raise WeightsNotFoundError(
            missing_message(f"{arch}/{tag}", ["not in the local caches"], schema_hint="")
        )
    try:
        from open_clip.pretrained import download_pretrained_from_url

        return Path(download_pretrained_from_url(url))
    except Exception as err:
        raise WeightsNotFoundError(f"Could not download CLIP weights {arch}/{tag} from {url}: {err}") from err


def cached_clip_spec(candidates: Sequence[str] = ()) -> str | None:
    """The first `clip:ARCH/TAG` whose weights are already in the local HF cache (no network, no torch)."""
    for ident in candidates or tuple(CACHE_PROBES):
        if cached_hub_file(CACHE_PROBES[ident], OPEN_CLIP_WEIGHT_FILES) is not None:
            return f"clip:{ident}"
    return None
