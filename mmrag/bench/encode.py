"""Text/code encoding: mmrag against plain sentence-transformers `encode()` in fp32.

Three rows. Whole process: `mmrag index` of the first 3,000 CoSQA functions with `--models offline`
into a new collection (the model's exported files already exist: a warm-up run writes them), against
a fresh python running `SentenceTransformer(path).encode(texts, batch_size=64,
normalize_embeddings=True)`, the script a user would write; both read the same JSONL. Encoder only:
the same texts in chunks, each chunk through both back to back, so the ratio is a paired one.
Roofline: the encoder's achieved FLOP/s (mmrag/bench/roofline.py) over the fp32 and int8 GEMM peaks.
Retrieval quality of the default backend is checked separately on CoSQA dev (`--mrr`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .report import Figure, interleaved, paired_ratio, speed_ratio

COSQA = Path(os.environ.get("MMRAG_COSQA", "/work/shared/data/cosqa"))
REAL_SPEC = "text:sentence-transformers/all-MiniLM-L6-v2"
TARGET_SPEEDUP = 3.0  # encoder only
TARGET_PROCESS = 2.0  # whole process (the goal is 3.0)
PROCESS_TEXTS = 3000
REFERENCE_BATCH = 64
PLAIN_SCRIPT = """import json, sys
from sentence_transformers import SentenceTransformer
texts = [json.loads(line)["text"] for line in open(sys.argv[2], encoding="utf-8")]
SentenceTransformer(sys.argv[1]).encode(texts, batch_size=64, normalize_embeddings=True)
"""
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
    from encoders import parse_spec, resolve_model_dir, tiny_text_dir

    schema, ident = parse_spec(spec)
    return str(tiny_text_dir(int(ident or 0)) if schema == "tiny-text" else resolve_model_dir(ident))


def run(quick: bool = False, *, n: int | None = None, batch_size: int = 32, chunks: int = 6) -> list[Figure]:
    from sentence_transformers import SentenceTransformer

    from encoders import EncoderCfg, create_encoder

    process = [] if quick else [whole_process(PROCESS_TEXTS)]  # first: before this process loads torch
    spec = "tiny-text:0" if quick else REAL_SPEC
    texts = corpus_texts(n or (48 if quick else 600))
    ref = SentenceTransformer(model_dir(spec), device="cpu")
    enc = create_encoder(spec, EncoderCfg(batch_size=batch_size, backend="onnx-int8" if quick else "auto"))
    warm = texts[:batch_size]
    ref.encode(warm, batch_size=REFERENCE_BATCH)
    enc.encode_text(warm)
    parts = np.array_split(np.arange(len(texts)), max(1, min(chunks, len(texts))))
    ref_t: list[float] = []
    mm_t: list[float] = []
    for part in parts:
        chunk = [texts[i] for i in part]
        times = interleaved(
            {
                "reference": lambda c=chunk: ref.encode(
                    c, batch_size=REFERENCE_BATCH, normalize_embeddings=True
                ),
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
        note=f"encoder only: {spec}, backend {getattr(enc, 'backend', '?')}, batch {batch_size} "
        f"(reference {REFERENCE_BATCH}), {len(texts)} texts; "
        f"paired median ratio over {len(parts)} chunks {paired_ratio(ref_t, mm_t):.2f}x",
    )
    lengths = ref.tokenize(texts)["attention_mask"].sum(axis=1).tolist()  # framed and cut, unpadded
    config = ref[0].auto_model.config
    return [*process, fig, *roofline(lengths, config, sum(mm_t), quick), *mrr_figures(quick)]


def whole_process(n: int) -> Figure:
    """`mmrag index` in a fresh process against the plain sentence-transformers script, same texts."""
    import shutil
    import subprocess
    import sys
    import time

    from . import work_dir

    folder = work_dir() / "encode"
    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / f"corpus-{n}.jsonl"
    texts = corpus_texts(n)
    with corpus.open("w", encoding="utf-8") as f:
        for i, text in enumerate(texts):
            f.write(json.dumps({"_id": f"c{i}", "text": text, "modality": "code"}) + "\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    coll = folder / "coll"

    def index(path: Path) -> None:
        shutil.rmtree(coll, ignore_errors=True)
        cmd = [sys.executable, "-m", "mmrag.cli", "index", str(path), "-c", str(coll), "--models", "offline"]
        subprocess.run(cmd, check=True, env=env, capture_output=True)

    def plain() -> None:
        cmd = [sys.executable, "-c", PLAIN_SCRIPT, model_dir(REAL_SPEC), str(corpus)]
        subprocess.run(cmd, check=True, env=env, capture_output=True)

    warm = folder / "warm.jsonl"
    warm.write_text(
        "".join(corpus.read_text(encoding="utf-8").splitlines(keepends=True)[:64]), encoding="utf-8"
    )
    index(warm)  # writes the model's exported files once (the first run's export is a one-time cost)
    times = {"plain": 0.0, "mmrag": 0.0}
    for name, fn in (("plain", plain), ("mmrag", lambda: index(corpus))):
        t0 = time.perf_counter()
        fn()
        times[name] = time.perf_counter() - t0
    shutil.rmtree(coll, ignore_errors=True)
    return Figure(
        "whole process: mmrag index / plain sentence-transformers",
        times["mmrag"],
        "s",
        times["plain"],
        times["plain"] / times["mmrag"],
        TARGET_PROCESS,
        note=f"{len(texts)} CoSQA functions, --models offline, new collection, exported files present; "
        "seconds (lower is better), ratio = plain / mmrag",
    )


def roofline(lengths: list[int], config, seconds: float, quick: bool) -> list[Figure]:
    """Achieved GFLOP/s of the encoder-only run over the fp32 and int8 GEMM peaks."""
    from . import work_dir
    from .roofline import encoder_flops, fp32_gemm_peak, int8_gemm_peak

    achieved = encoder_flops(lengths, config) / seconds
    size = 512 if quick else 2048
    peaks = {"fp32": fp32_gemm_peak(size), "int8": int8_gemm_peak(work_dir() / "encode", size)}
    per_token = encoder_flops([1], config)
    return [
        Figure(
            f"document encoding / {kind} GEMM peak",
            achieved / 1e9,
            "GFLOP/s",
            peak / 1e9,
            achieved / peak,
            None,
            note=f"{per_token / 1e6:.1f} MFLOP/token in dense layers plus attention, "
            f"{sum(lengths)} real tokens (median {sorted(lengths)[len(lengths) // 2]}); "
            f"{kind} peak of one {size}x{size} matmul",
        )
        for kind, peak in peaks.items()
    ]


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
