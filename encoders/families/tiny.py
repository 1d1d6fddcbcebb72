"""`tiny-*:SEED` encoders: random-initialised, built from configs in a second, no download.

They exist so tests and demos run the real loading code offline: tiny-code and tiny-text are
written once to the mmrag cache as ordinary checkpoint directories (a transformers dir, a
sentence-transformers dir) and loaded through the same `code:` and `text:` paths as real models.
The same seed gives the same weights in every process, so an index built in one process matches
queries embedded in another. Their rankings mean nothing.
"""

from __future__ import annotations

import json
import string
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..atomic import build_dir
from ..base import Encoder, EncoderCfg
from ..checkpoint import TINY_CLIP_CFG, WIDTH, parse_seed, tiny_dir
from ..exported.towers import clip_tower
from .clip import ClipEncoder
from .hf import load_code
from .sentence import SentenceEncoder

__all__ = [
    "TINY_CLIP_CFG",
    "tiny_clip",
    "tiny_code",
    "tiny_code_dir",
    "tiny_dir",
    "tiny_text",
    "tiny_text_dir",
]

TINY_ENCODER_CFG: dict[str, Any] = {
    "hidden_size": WIDTH,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 2 * WIDTH,
}
TINY_TEXT_MAX_LENGTH = 128  # sentence-transformers' usual cut for small models
WORDS = """
the of and to in is was for on that with as by at from it be this are an or not have has had
but which one all were can will there their more when if about what so out up into than them
some other time only new also these two may first any like then over such our most after made
used many where through back much before good very how well people work world find here make
get use day year way man woman child life water food house city car road tree dog cat bird
fish horse sky sun moon sea river mountain street beach snow rain night light red blue green
black white small large big old young long short happy sad fast slow open close read write
search query index image photo picture text code file data model vector score rank result
def class return import from self none true false null int str float list dict set tuple
print len range for while try except raise with yield lambda async await function const let
var void static public private new this null undefined string number array object map sort
filter reduce key value name path line error test main init args kwargs config load save
"""


@contextmanager
def seeded(seed: int):
    """torch's global RNG seeded for one build, restored afterwards."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def tiny_clip(ident: str, cfg: EncoderCfg) -> Encoder:
    """An open_clip CLIP from TINY_CLIP_CFG, with the model's own eval preprocess and tokenizer."""
    seed = parse_seed(ident, "tiny-clip")
    exported = clip_tower(f"tiny-clip:{seed}", cfg)  # both towers exported: no torch
    if exported is not None:
        return exported
    import open_clip

    c = TINY_CLIP_CFG
    with seeded(seed):
        model = open_clip.CLIP(
            embed_dim=c["embed_dim"],
            vision_cfg=open_clip.CLIPVisionCfg(**c["vision_cfg"]),
            text_cfg=open_clip.CLIPTextCfg(**c["text_cfg"]),
        )
    preprocess = open_clip.image_transform(c["vision_cfg"]["image_size"], is_train=False)
    tokenizer = open_clip.SimpleTokenizer(context_length=c["text_cfg"]["context_length"])
    return ClipEncoder(model, preprocess, tokenizer, cfg, spec=f"tiny-clip:{seed}")


def tiny_code(ident: str, cfg: EncoderCfg) -> Encoder:
    seed = parse_seed(ident, "tiny-code")
    return load_code(str(tiny_code_dir(seed)), cfg, spec=f"tiny-code:{seed}")


def tiny_text(ident: str, cfg: EncoderCfg) -> SentenceEncoder:
    seed = parse_seed(ident, "tiny-text")
    return SentenceEncoder(str(tiny_text_dir(seed)), cfg, spec=f"tiny-text:{seed}")


def tiny_code_dir(seed: int) -> Path:
    """A transformers RoBERTa checkpoint directory, written on first use."""
    return build_dir(tiny_dir("tiny-code", seed), lambda d: _write_tiny_code(d, seed))


def tiny_text_dir(seed: int) -> Path:
    """A sentence-transformers directory, written on first use."""
    return build_dir(tiny_dir("tiny-text", seed), lambda d: _write_tiny_text(d, seed))


def _write_tiny_code(out: Path, seed: int) -> None:
    """RoBERTa (like CodeBERT) with a byte-level BPE of the 256 byte symbols and no merges."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizer

    symbols = ["<s>", "<pad>", "</s>", "<unk>", *sorted(ByteLevel.alphabet()), "<mask>"]
    vocab = {tok: i for i, tok in enumerate(symbols)}
    tokenizer = RobertaTokenizer(vocab=vocab, merges=[], model_max_length=512)
    config = RobertaConfig(
        vocab_size=len(vocab),
        max_position_embeddings=514,  # 512 tokens after RoBERTa's padding offset, as in CodeBERT
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        **TINY_ENCODER_CFG,
    )
    with seeded(seed):
        model = RobertaModel(config)  # with its pooler, as real checkpoints ship
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _write_tiny_text(out: Path, seed: int) -> None:
    """A small BERT saved as a sentence-transformers dir: Transformer, mean Pooling, Normalize."""
    from transformers import BertConfig, BertModel, BertTokenizer

    chars = string.ascii_lowercase + string.digits + string.punctuation
    words = sorted(set(WORDS.split()) - set(chars))
    symbols = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *("##" + c for c in chars), *words]
    vocab = {tok: i for i, tok in enumerate(symbols)}
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=TINY_TEXT_MAX_LENGTH)
    config = BertConfig(
        vocab_size=len(vocab), max_position_embeddings=TINY_TEXT_MAX_LENGTH, **TINY_ENCODER_CFG
    )
    with seeded(seed):
        model = BertModel(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    pooling = {"word_embedding_dimension": WIDTH, "pooling_mode_mean_tokens": True}
    pooling |= {f"pooling_mode_{k}": False for k in ("cls_token", "max_tokens", "mean_sqrt_len_tokens")}
    (out / "1_Pooling").mkdir()
    (out / "2_Normalize").mkdir()
    _write_json(out / "modules.json", modules)
    _write_json(out / "1_Pooling" / "config.json", pooling)
    _write_json(
        out / "sentence_bert_config.json", {"max_seq_length": TINY_TEXT_MAX_LENGTH, "do_lower_case": False}
    )


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")
