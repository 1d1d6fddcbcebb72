"""Measure `mmrag dupes` thresholds per space on planted near-duplicates (docs/quality.md).

Code: functions of a BEIR code corpus (e.g. CoSQA), a share of them copied with their local
variables and arguments renamed. Text: paragraphs of this repository's docs, a share copied with
light edits (case, punctuation, one word dropped, one typo). Images: the demo's sample images,
each copied re-encoded as a quality-40 JPEG and resized to half size. Everything is indexed
through the product (`Engine.index`) and grouped by `mmrag.dupes.find_dupes`; a pair counts as
found when both items land in one group. Pairs of distinct items grouped together are the false
positives (a corpus's own natural duplicates count among them).

Usage: python scripts/dupes_thresholds.py CORPUS.jsonl [--functions 400] [--models offline]
       [--image-models tiny] [--out DIR]
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import random
import re
import tempfile
import tokenize
from pathlib import Path

from PIL import Image

from mmrag.api import Engine
from mmrag.dupes import find_dupes
from mmrag.storage.collection import Collection

THRESHOLDS = (0.70, 0.75, 0.80, 0.85, 0.90, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99, 0.995, 0.999)
ROOT = Path(__file__).resolve().parent.parent


def rename_locals(code: str, rng: random.Random) -> str | None:
    """The function with its arguments and assigned names renamed (tokens only: layout kept)."""
    try:
        toks = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None
    names: set[str] = set()
    for a, b in itertools.pairwise(toks):
        if a.type == tokenize.NAME and b.type == tokenize.OP and b.string in ("=", ",", ")", ":"):
            names.add(a.string)
    keywords = {"def", "self", "cls", "return", "if", "else", "for", "in", "not", "and", "or", "None", "True"}
    names = {n for n in names if n not in keywords and not n.startswith("__") and len(n) > 1}
    if not names:
        return None
    mapping = {
        n: f"{rng.choice('abcdefghkmnpqrstuvwxyz')}{i}_{rng.choice(['val', 'tmp', 'x', 'item'])}"
        for i, n in enumerate(sorted(names))
    }
    out = [t._replace(string=mapping.get(t.string, t.string)) if t.type == tokenize.NAME else t for t in toks]
    new = tokenize.untokenize(out)
    return new if new != code else None


def edit_text(text: str, rng: random.Random) -> str:
    words = text.split()
    if len(words) > 6:
        del words[rng.randrange(len(words))]
    i = rng.randrange(len(words))
    w = words[i]
    if len(w) > 3:
        j = rng.randrange(len(w) - 1)
        words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2 :]  # one transposition typo
    out = " ".join(words)
    out = re.sub(r"[,;:]", "", out)
    return out.lower() if rng.random() < 0.5 else out


def score(
    coll_path: Path, modality: str, planted: set[frozenset[str]]
) -> list[tuple[float, float, float, int]]:
    rows = []
    with Collection.open(coll_path) as coll:
        for t in THRESHOLDS:
            groups = find_dupes(coll, [modality], t)
            pairs = {
                frozenset((a.key, b.key)) for g in groups for a, b in itertools.combinations(g.members, 2)
            }
            hit = len(pairs & planted)
            precision = hit / len(pairs) if pairs else 1.0
            rows.append((t, precision, hit / len(planted), len(pairs)))
    return rows


def code_case(corpus: Path, n: int, models: str, work: Path, rng: random.Random):
    funcs = [json.loads(line) for line in corpus.open(encoding="utf-8")]
    funcs = [f for f in funcs if f.get("modality", "code") == "code"]
    funcs = rng.sample(funcs, min(n, len(funcs)))
    planted, out = set(), []
    for f in funcs:
        out.append({"_id": f["_id"], "text": f["text"], "modality": "code", "language": "python"})
    for f in funcs[: n // 4]:
        copy = rename_locals(f["text"], rng)
        if copy:
            out.append({"_id": f["_id"] + "-renamed", "text": copy, "modality": "code", "language": "python"})
            planted.add((f["_id"], f["_id"] + "-renamed"))
    return _index_jsonl(out, work / "code", models), planted


def text_case(models: str, work: Path, rng: random.Random):
    paras = []
    for path in sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]:
        for p in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")):
            p = " ".join(p.split())
            if len(p) > 120 and not p.startswith(("|", "```", "#")):
                paras.append(p)
    paras = list(dict.fromkeys(paras))
    rng.shuffle(paras)
    out = [{"_id": f"p{i}", "text": p, "modality": "text"} for i, p in enumerate(paras)]
    planted = set()
    for i, p in enumerate(paras[: len(paras) // 4]):
        out.append({"_id": f"p{i}-edited", "text": edit_text(p, rng), "modality": "text"})
        planted.add((f"p{i}", f"p{i}-edited"))
    return _index_jsonl(out, work / "text", models), planted


def _index_jsonl(records: list[dict], where: Path, models: str) -> tuple[Path, dict[str, str]]:
    where.mkdir(parents=True)
    corpus = where / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    coll = where / "coll"
    with Engine.open(coll, write=True, models=models) as eng:
        eng.index([str(corpus)])
    with Collection.open(coll) as c:  # BEIR ids -> the keys the collection gives its items
        keys = {k.rsplit("#", 1)[-1]: k for k in _all_keys(c)}
    return coll, keys


def _all_keys(c: Collection) -> list[str]:
    return [r[0] for r in c.store.db.execute("SELECT key FROM items")]


def image_case(models: str, work: Path):
    src = work / "images"
    src.mkdir()
    planted = set()
    for path in sorted((ROOT / "demo" / "sample" / "images").glob("*.png")):
        im = Image.open(path).convert("RGB")
        im.save(src / path.name)
        im.save(src / f"{path.stem}-q40.jpg", quality=40)
        im.resize((max(1, im.width // 2), max(1, im.height // 2))).save(src / f"{path.stem}-half.png")
        names = [path.name, f"{path.stem}-q40.jpg", f"{path.stem}-half.png"]
        planted |= {frozenset(str(src / n) for n in pair) for pair in itertools.combinations(names, 2)}
    coll = work / "images-coll"
    with Engine.open(coll, write=True, models=models) as eng:
        eng.index([str(src)])
    return coll, planted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", help="a BEIR corpus.jsonl of code (CoSQA)")
    ap.add_argument("--functions", type=int, default=400)
    ap.add_argument("--models", default="offline", help="model set for code and text")
    ap.add_argument("--image-models", default="tiny", help="model set for images")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cases = []
        (coll, keys), pairs = code_case(Path(args.corpus), args.functions, args.models, work, rng)
        cases.append(("code", coll, {frozenset((keys[a], keys[b])) for a, b in pairs}, len(keys)))
        (coll, keys), pairs = text_case(args.models, work, rng)
        cases.append(("text", coll, {frozenset((keys[a], keys[b])) for a, b in pairs}, len(keys)))
        coll, planted = image_case(args.image_models, work)
        with Collection.open(coll) as c:
            src_of = {k: k for k in _all_keys(c)}
        cases.append(("image", coll, {p for p in planted if p <= set(src_of)}, len(src_of)))
        print("| space | items | planted pairs | threshold | precision | recall | pairs grouped |")
        print("|---|---|---|---|---|---|---|")
        for modality, coll, planted, n in cases:
            for t, p, r, npairs in score(coll, modality, planted):
                print(f"| {modality} | {n} | {len(planted)} | {t:.3f} | {p:.3f} | {r:.3f} | {npairs} |")


if __name__ == "__main__":
    main()
