"""Text/code encoding: mmrag's encoder against plain sentence-transformers `encode()` in fp32.

Same model, same texts (CoSQA functions), same batch size. Texts are taken in chunks and each chunk
runs through both back to back, so the ratio is a paired one. Retrieval quality of the fast backend
is checked separately on CoSQA dev (`--mrr`), since speed means nothing if MRR drops.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .report import Figure, interleaved, paired_ratio, speed_ratio

COSQA = Path(os.environ.get("MMRAG_COSQA", "/work/shared/data/cosqa"))
REAL_SPEC = "text:sentence-transformers/all-MiniLM-L6-v2"
TARGET_SPEEDUP = 3.0
TARGET_MRR_LOSS = 0.005
FALLBACK_TEXTS = [
    "def add(a, b):\n    return a + b",
    "class Stack:\n    def push(self, x):\n        self.items.append(x)",
    "read a json file and return the parsed dict",
    "for i in range(10):\n    print(i * i)",
]


def corpus_texts(n: int | None) -> list[str]:
    """The first n CoSQA functions (read in place), or generated snippets where CoSQA is absent."""
    path = COSQA / "corpus.jsonl"
    if not path.is_file():
        return [FALLBACK_TEXTS[i % len(FALLBACK_TEXTS)] + f"  # {i}" for i in range(n or 64)]
    texts = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            texts.append(json.loads(line)["text"])
            if n is not None and len(texts) == n:
                break
    return texts


def model_dir(spec: str) -> str:
    from encoders.registry import parse_spec
    from encoders.tiny import tiny_text_dir
    from encoders.weights import resolve_model_dir

    schema, ident = parse_spec(spec)
    return str(tiny_text_dir(int(ident or 0)) if schema == "tiny-text" else resolve_model_dir(ident))


def run(quick: bool = False, *, n: int | None = None, batch_size: int = 32, chunks: int = 6) -> list[Figure]:
    from sentence_transformers import SentenceTransformer

    from encoders import EncoderCfg, create_encoder

    spec = "tiny-text:0" if quick else REAL_SPEC
    texts = corpus_texts(n or (48 if quick else 600))
    ref = SentenceTransformer(model_dir(spec), device="cpu")
    enc = create_encoder(spec, EncoderCfg(batch_size=batch_size, backend="onnx-int8" if quick else "auto"))
    warm = texts[:batch_size]
    ref.encode(warm, batch_size=batch_size)
    enc.encode_text(warm)
    parts = np.array_split(np.arange(len(texts)), max(1, min(chunks, len(texts))))
    ref_t: list[float] = []
    mm_t: list[float] = []
    for part in parts:
        chunk = [texts[i] for i in part]
        times = interleaved(
            {
                "reference": lambda c=chunk: ref.encode(c, batch_size=batch_size),
                "mmrag": lambda c=chunk: enc.encode_text(c),
            },
            rounds=1,
        )
        ref_t += times["reference"]
        mm_t += times["mmrag"]
    fig = speed_ratio(
        "encode texts/s (CoSQA functions)",
        len(texts) / sum(mm_t),
        len(texts) / sum(ref_t),
        "texts/s",
        TARGET_SPEEDUP,
        note=f"{spec}, backend {getattr(enc, 'backend', '?')}, batch {batch_size}, {len(texts)} texts; "
        f"paired median ratio over {len(parts)} chunks {paired_ratio(ref_t, mm_t):.2f}x",
    )
    return [fig, *mrr_figures(quick)]


def mrr_figures(quick: bool, compute: bool = False) -> list[Figure]:
    """Dev MRR of the torch baseline and of the default backend: from the cache, or computed."""
    if quick:
        return []
    cache = _mrr_cache()
    if compute:
        for backend in ("torch", "auto"):
            cache[backend] = cosqa_dev_mrr(backend)
        cache_file().write_text(json.dumps(cache, indent=1))
    if "torch" not in cache or "auto" not in cache:
        return []
    loss = cache["torch"]["mrr"] - cache["auto"]["mrr"]
    return [
        Figure(
            "CoSQA dev MRR loss (torch fp32 - default)",
            loss,
            "",
            target=TARGET_MRR_LOSS,
            higher_is_better=False,
            note=f"MRR torch {cache['torch']['mrr']:.4f}, default ({cache['auto']['backend']}) "
            f"{cache['auto']['mrr']:.4f}, full corpus of {cache['auto']['docs']} functions",
        )
    ]


def cache_file() -> Path:
    from . import work_dir

    return work_dir() / "cosqa-mrr.json"


def _mrr_cache() -> dict:
    path = cache_file()
    return json.loads(path.read_text()) if path.is_file() else {}


def cosqa_dev_mrr(backend: str, spec: str = REAL_SPEC) -> dict:
    """MRR@1000 on CoSQA dev over the full corpus, embedding with `backend` (minutes on 2 cores)."""
    from encoders import EncoderCfg, create_encoder
    from mmrag.metrics import evaluate_run, load_qrels

    docs = [json.loads(line) for line in (COSQA / "corpus.jsonl").open(encoding="utf-8")]
    queries = [json.loads(line) for line in (COSQA / "queries.dev.jsonl").open(encoding="utf-8")]
    enc = create_encoder(spec, EncoderCfg(backend=backend))
    doc_vecs = enc.encode_text([d["text"] for d in docs])
    q_vecs = enc.encode_text([q["text"] for q in queries], query=True)
    top = np.argsort(-(q_vecs @ doc_vecs.T), axis=1)[:, :1000]
    run_ = {q["_id"]: [docs[j]["_id"] for j in top[i]] for i, q in enumerate(queries)}
    scores = evaluate_run(run_, load_qrels(str(COSQA / "qrels.dev.tsv")))
    return {"mrr": scores["mrr"], "backend": getattr(enc, "backend", backend), "docs": len(docs)}
