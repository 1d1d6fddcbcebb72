"""A CLIP model's text tower as ONNX, and open_clip's BPE tokenizer as a `tokenizers` JSON.

Written once per model (when `mmrag index` first loads it) so that `mmrag search` can embed text
queries with ONNX Runtime alone (exported/query.py), never importing torch or open_clip. The image
tower is exported beside it (runtime/image_export.py, exported/image.py).
"""

from __future__ import annotations

import io
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

from ..atomic import write_file
from ..base import EncoderConfigError

OPSET = 18  # what the dynamo exporter's op library (torchlib) emits; a lower opset is converted down
MAX_BATCH = 4096  # upper bound of the exported batch axis; query batches are far smaller


def tokenizer_json(tokenizer: Any) -> tuple[str, str, int] | None:
    """(tokenizers JSON, word pattern, pattern flags) for open_clip's SimpleTokenizer; None otherwise.

    The JSON holds byte-level BPE with open_clip's vocabulary and merge ranks and its two special
    tokens. Cleaning (ftfy, HTML unescape, whitespace, lower case) and the word split stay in Python
    (exported/query.py), with open_clip's own pattern, so they behave exactly as open_clip does.
    """
    from open_clip.tokenizer import SimpleTokenizer, _clean_lower
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    plain = (
        isinstance(tokenizer, SimpleTokenizer)
        and tokenizer.clean_fn is _clean_lower
        and tokenizer.reduction_fn is None
        and tokenizer.all_special_ids == [tokenizer.sot_token_id, tokenizer.eot_token_id]
    )
    if not plain:
        return None
    merges = sorted(tokenizer.bpe_ranks, key=tokenizer.bpe_ranks.get)  # rank order is merge priority
    bpe = models.BPE(vocab=dict(tokenizer.encoder), merges=merges, end_of_word_suffix="</w>")
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    specials = [tokenizer.decoder[i] for i in tokenizer.all_special_ids]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return tok.to_str(), tokenizer.pat.pattern, int(tokenizer.pat.flags)


def trimmable(model: Any) -> bool:
    """Whether padding after the longest text can be cut: causal attention and pooling at EOT.

    Then no token attends to the padding after it, and the pooled EOT state is the same for any
    width that keeps it, so a 5-token query costs 5 positions instead of the context length.
    """
    return (
        all(hasattr(model, a) for a in ("token_embedding", "positional_embedding", "transformer", "ln_final"))
        and getattr(model, "attn_mask", None) is not None
        and getattr(model, "text_pool_type", None) == "argmax"
    )


def export_text_tower(model: Any, path: Path, context_length: int) -> bool:
    """ONNX of `model.encode_text` (unnormalised): int64 `text` (b, t) -> float32 `features` (b, d).

    Returns whether the sequence axis may be shorter than the context length (see `trimmable`).
    Uses the dynamo exporter: the TorchScript one bakes the sequence length into
    nn.MultiheadAttention's reshapes.
    """
    import torch
    from torch.export import Dim

    trim = trimmable(model)
    full_tower, trimmed_tower = _towers()
    tower = trimmed_tower(model) if trim else full_tower(model)
    example = torch.zeros((2, context_length), dtype=torch.long)
    example[:, 0], example[:, 1] = context_length, context_length + 1  # any ids below the vocab size
    seq = Dim("seq", min=2, max=context_length) if trim else None
    shapes = ({0: Dim("batch", min=1, max=MAX_BATCH), **({1: seq} if seq is not None else {})},)

    def fill(tmp: Path) -> None:
        # the exporter reports its progress on stdout and warns about its internals: not the user's business
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
                torch.onnx.export(
                    tower.eval(),
                    (example[:, :8] if trim else example,),
                    str(tmp),
                    input_names=["text"],
                    output_names=["features"],
                    dynamic_shapes=shapes,
                    opset_version=OPSET,
                    dynamo=True,
                    external_data=False,
                )

    try:
        write_file(path, fill)
    except Exception as err:
        raise EncoderConfigError(f"Could not export the CLIP text tower to ONNX: {err}") from err
    return trim


def _towers() -> tuple[type, type]:
    """The two wrappers, defined on first use so that importing this module does not import torch."""
    import torch
    from open_clip.transformer import text_global_pool

    class FullTower(torch.nn.Module):
        """`encode_text` as is, at the full context length."""

        def __init__(self, model: Any):
            super().__init__()
            self.model = model

        def forward(self, text: torch.Tensor) -> torch.Tensor:
            return self.model.encode_text(text)

    class TrimmedTower(torch.nn.Module):
        """`encode_text` of open_clip's CLIP with positions and causal mask cut to the input width."""

        def __init__(self, model: Any):
            super().__init__()
            self.model = model

        def forward(self, text: torch.Tensor) -> torch.Tensor:
            m = self.model
            t = text.shape[1]
            cast = m.transformer.get_cast_dtype()
            x = m.token_embedding(text).to(cast) + m.positional_embedding[:t].to(cast)  # (b, t, width)
            x = m.transformer(x, attn_mask=m.attn_mask[:t, :t])
            x = m.ln_final(x)
            x = text_global_pool(x, text, m.text_pool_type, eos_token_id=getattr(m, "text_eos_id", None))
            if m.text_projection is None:
                return x
            if isinstance(m.text_projection, torch.nn.Linear):
                return m.text_projection(x)
            return x @ m.text_projection

    return FullTower, TrimmedTower
