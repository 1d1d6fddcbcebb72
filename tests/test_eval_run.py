"""`mmrag eval --save-run`: the TREC run file scored by ranx gives the metrics eval prints."""

from __future__ import annotations

import json
import random

import pytest

from mmrag.cli import main

ranx = pytest.importorskip("ranx")

WORDS = [
    "json",
    "file",
    "read",
    "write",
    "parse",
    "list",
    "sort",
    "merge",
    "http",
    "request",
    "cache",
    "image",
    "pixel",
    "tree",
    "graph",
    "path",
]


@pytest.fixture(scope="module")
def beir(tmp_path_factory):
    """A 60-document BEIR folder with 25 queries, some with two relevant documents of grade 1 and 2."""
    root = tmp_path_factory.mktemp("beir")
    rng = random.Random(7)
    docs = {f"d{i}": " ".join(rng.choices(WORDS, k=12)) for i in range(60)}
    (root / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in docs.items())
    )
    queries, qrels = {}, []
    for q in range(25):
        target = f"d{rng.randrange(60)}"
        queries[f"q{q}"] = " ".join(rng.sample(docs[target].split(), 4))
        qrels.append((f"q{q}", target, 2 if q % 3 == 0 else 1))
        if q % 4 == 0:
            qrels.append((f"q{q}", f"d{rng.randrange(60)}", 1))
    (root / "q.jsonl").write_text(
        "".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in queries.items())
    )
    (root / "qrels.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{g}\n" for q, d, g in dict.fromkeys(qrels))
    )
    coll = root / "c"
    assert main(["index", str(root / "corpus.jsonl"), "-c", str(coll), "--models", "tiny", "-q"]) == 0
    return root, coll


@pytest.mark.heavy  # ~38 s, nearly all of it numba compiling ranx's metrics
def test_ranx_scores_the_run_file_as_eval_prints(beir, tmp_path, capsys):
    root, coll = beir
    run_file = tmp_path / "run.trec"
    args = ["eval", "-c", str(coll), "--queries", str(root / "q.jsonl"), "--qrels", str(root / "qrels.tsv")]
    assert main([*args, "--json", "--save-run", str(run_file)]) == 0
    printed = json.loads(capsys.readouterr().out)
    lines = run_file.read_text().splitlines()
    assert lines and all(len(line.split()) == 6 and line.split()[1] == "Q0" for line in lines)
    run = ranx.Run.from_file(str(run_file), kind="trec")
    qrels = _qrels(root / "qrels.tsv")  # BEIR's TSV, with its header, read as ranx's dict form
    got = ranx.evaluate(qrels, run, ["mrr", "ndcg@10", "recall@10", "recall@100"])
    assert printed["queries"] == 25
    assert 0 < printed["mrr"] < 1  # a ranking with misses, so the comparison means something
    for name in ("mrr", "ndcg@10", "recall@10", "recall@100"):
        assert printed[name] == pytest.approx(got[name], abs=1e-9), name


def _qrels(path) -> ranx.Qrels:
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:]]
    out: dict[str, dict[str, int]] = {}
    for q, d, g in rows:
        out.setdefault(q, {})[d] = int(g)
    return ranx.Qrels(out)
