"""CLIP's image tower in the form that is exported: the last block computes the class token only.

A ViT pooled by its class token ('tok') reads nothing of the last block's other 64 outputs: their
queries, attention rows, output projection and MLP are thrown away by the pool. `cls_tower`
gives `encode_image` with that last block cut to the class token (its keys and values still come
from every token), the same numbers per image at ~7% fewer FLOPs for ViT-B-32 at 256 px.
Any other tower shape (attention pooling, average pooling, timm trunks, custom blocks) is
exported as `encode_image` itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def cls_tower(model: Any) -> Callable[[Any], Any] | None:
    """`model.encode_image` with a class-token-only last block, or None where that is not exact."""
    from open_clip.transformer import ResidualAttentionBlock, VisionTransformer

    visual = getattr(model, "visual", None)
    if not isinstance(visual, VisionTransformer):
        return None
    trunk = visual.transformer
    blocks = list(getattr(trunk, "resblocks", ()))
    plain = (
        blocks
        and all(type(b) is ResidualAttentionBlock for b in blocks)
        and not hasattr(blocks[-1], "ln_1_kv")
        and getattr(trunk, "batch_first", False)
        and visual.attn_pool is None
        and visual.pool_type == "tok"
        and not visual.final_ln_after_pool
        and not visual.output_tokens
    )
    if not plain:
        return None
    head, last = blocks[:-1], blocks[-1]

    def encode(pixels: Any) -> Any:
        x = visual._embeds(pixels)  # (b, 1 + grid**2, width), ln_pre applied
        for block in head:
            x = block(x)
        h = last.ln_1(x)
        cls = x[:, :1] + last.ls_1(last.attn(h[:, :1], h, h, need_weights=False)[0])
        cls = cls + last.ls_2(last.mlp(last.ln_2(cls)))
        pooled = visual.ln_post(cls[:, 0])
        return pooled @ visual.proj if visual.proj is not None else pooled

    return encode
