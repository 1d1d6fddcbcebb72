"""`mmrag bench models`: one row per model set, the quality `mmrag eval` prints, and a PNG plot."""

from __future__ import annotations

import json

import pytest

from mmrag.cli import main

pytest.importorskip("matplotlib")


def test_bench_models_table_matches_eval_and_writes_a_plot(tmp_path, capsys):
    docs = {f"d{i}": f"def f{i}(x):\n    return x * {i} + {i % 4}\n" for i in range(20)}
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "".join(json.dumps({"_id": k, "text": v, "modality": "code"}) + "\n" for k, v in docs.items())
    )
    queries = tmp_path / "q.jsonl"
    queries.write_text(
        "".join(json.dumps({"_id": f"q{i}", "text": f"multiply by {i}"}) + "\n" for i in range(8))
    )
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(8)))
    ens = tmp_path / "ens.toml"
    ens.write_text('code = ["tiny-code:0", "tiny-code:1"]\ntext = "tiny-text:0"\n')
    work, plot = tmp_path / "work", tmp_path / "plot.png"
    args = ["tiny", str(ens), "--corpus", str(corpus), "--queries", str(queries), "--qrels", str(qrels)]
    assert main(["bench", "models", *args, "--work", str(work), "--plot", str(plot), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["tiny", "ens"]
    for r in rows:
        assert r["items"] == 20 and r["docs_per_s"] > 0 and r["query_p50_ms"] > 0 and r["index_mb"] > 0
        assert (
            main(
                [
                    "eval",
                    "-c",
                    str(work / f"{r['name']}.coll"),
                    "--queries",
                    str(queries),
                    "--qrels",
                    str(qrels),
                    "--json",
                ]
            )
            == 0
        )
        printed = json.loads(capsys.readouterr().out)
        assert (r["mrr"], r["ndcg10"], r["recall10"]) == (
            printed["mrr"],
            printed["ndcg@10"],
            printed["recall@10"],
        )
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["bench", "models", "tiny", *args[1:], "--plot", str(plot)]) == 0  # the table form
    out = capsys.readouterr().out
    assert "| model set | MRR | nDCG@10 | R@10 | documents/s | query p50 ms | index MB |" in out
    assert (
        main(
            [
                "bench",
                "models",
                "tiny",
                "--corpus",
                str(corpus),
                "--queries",
                str(queries),
                "--qrels",
                str(qrels),
            ]
        )
        == 1
    )
