"""Filters through the doors users use: `mmrag index` and `mmrag search --where` as typed (subprocess),
and POST /search's JSON filter over HTTP, on real files: JPEGs with EXIF written by Pillow, code in
src/ and tests/, Markdown and a BEIR JSONL with metadata. What each filter should keep is computed
from the files themselves (Pillow reads the EXIF back, os.stat the sizes), not from mmrag.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from mmrag.api import Engine

_EXIF_IFD, _TAKEN, _MAKE, _MODEL, _ORIENT = 0x8769, 0x9003, 0x010F, 0x0110, 0x0112
PHOTOS = {  # name: (size, taken, make, model, orientation)
    "beach.jpg": ((2400, 1600), "2023:07:14 10:30:00", "Canon", "Canon EOS 5D", 1),
    "snow.jpg": ((800, 600), "2021:01:03 08:00:00", "NIKON CORPORATION", "NIKON D750", 6),
    "city.jpg": ((2048, 1365), "2023:01:01 00:00:00", "FUJIFILM", "X-T4", 8),
}


def mmrag(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mmrag.cli", *args], capture_output=True, text=True, timeout=600, cwd=cwd
    )


def make_corpus(root: Path) -> Path:
    (root / "photos").mkdir(parents=True)
    for name, (size, taken, make, model, orient) in PHOTOS.items():
        exif = Image.Exif()
        exif[_MAKE], exif[_MODEL], exif[_ORIENT] = make, model, orient
        exif.get_ifd(_EXIF_IFD)[_TAKEN] = taken
        Image.new("RGB", size, (hash(name) % 255, 80, 160)).save(root / "photos" / name, exif=exif)
    Image.new("RGB", (300, 300), (0, 200, 0)).save(root / "photos" / "plain.png")  # no EXIF at all
    (root / "proj" / "src" / "pkg").mkdir(parents=True)
    (root / "proj" / "tests").mkdir()
    (root / "proj" / "src" / "pkg" / "io.py").write_text(
        'import json\n\n\ndef read_json(path):\n    """Read a JSON file."""\n    with open(path) as f:\n'
        "        return json.load(f)\n\n\nclass Cache:\n    def get(self, key):\n        return self.data[key]\n"
    )
    (root / "proj" / "tests" / "test_io.py").write_text("def test_read_json():\n    assert read_json('x')\n")
    (root / "proj" / "src" / "app.js").write_text("function readJson(p) {\n  return JSON.parse(p);\n}\n")
    (root / "notes.md").write_text("# Notes\n\nHow to read a json file and cache it.\n")
    with open(root / "corpus.jsonl", "w") as f:
        for i in range(6):
            rec = {"_id": f"d{i}", "text": f"document {i} on reading json", "tags": ["x"] if i < 2 else ["y"]}
            rec["metadata"] = {"year": 2018 + i, "source": "web" if i % 2 else "book"}
            f.write(json.dumps(rec) + "\n")
    return root


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    """The corpus indexed in-process (tiny models): the CLI's own `mmrag index` runs in the slow test."""
    tmp = tmp_path_factory.mktemp("filters")
    corpus = make_corpus(tmp / "corpus")
    coll = tmp / "coll"
    with Engine.open(coll, write=True, models="tiny") as eng:
        assert eng.index([str(corpus), str(corpus / "corpus.jsonl")]).clean
    return corpus, coll


def _rel(corpus: Path, key: str) -> str:
    return os.path.relpath(key, corpus) if key.startswith("/") else key


def cli_keys(corpus: Path, coll: Path, where: str, *extra: str) -> set[str]:
    run = mmrag("search", "read json photo", "-c", str(coll), "-k", "100", "--json", "--where", where, *extra)
    assert run.returncode == 0, run.stderr
    return {_rel(corpus, h["key"]) for h in json.loads(run.stdout)}


def lib_keys(corpus: Path, coll: Path, where: str, *extra: str) -> set[str]:
    modalities = (extra[1],) if extra[:1] == ("-m",) else None
    with Engine.open(coll) as eng:
        res = eng.search("read json photo", k=100, where=where, modalities=modalities)
    return {_rel(corpus, h.key) for h in res.hits}


def exif_of(path: Path) -> dict:
    with Image.open(path) as img:
        exif = img.getexif()
        return {
            "size": img.size,
            "taken": exif.get_ifd(_EXIF_IFD).get(_TAKEN),
            "orientation": exif.get(_ORIENT),
        }


def test_filters_keep_exactly_the_matching_items(indexed):
    check_matrix(*indexed, lib_keys)


@pytest.mark.heavy
def test_cli_filters_keep_exactly_the_matching_items(tmp_path):
    """The same matrix through `mmrag index` and `mmrag search --where` as typed (minutes of subprocesses)."""
    corpus = make_corpus(tmp_path / "corpus")
    coll = tmp_path / "coll"
    run = mmrag("index", str(corpus), str(corpus / "corpus.jsonl"), "-c", str(coll), "--models", "tiny", "-q")
    assert run.returncode == 0, run.stderr
    check_matrix(corpus, coll, cli_keys)


def test_cli_where(indexed):
    corpus, coll = indexed
    assert cli_keys(corpus, coll, "taken >= 2023-01-01") == {"photos/beach.jpg", "photos/city.jpg"}
    src = cli_keys(corpus, coll, 'lang = python and path glob "src/**" and not path glob "**/tests/**"')
    assert src and {k.split("#")[0] for k in src} == {"proj/src/pkg/io.py"}


def check_matrix(corpus: Path, coll: Path, keys) -> None:
    photos = {f"photos/{p.name}": exif_of(p) for p in (corpus / "photos").iterdir()}
    taken_2023 = {k for k, e in photos.items() if e["taken"] and e["taken"] >= "2023:01:01"}
    assert keys(corpus, coll, "taken >= 2023-01-01") == taken_2023 == {"photos/beach.jpg", "photos/city.jpg"}
    wide = {k for k, e in photos.items() if e["size"][0] > 2000}
    assert keys(corpus, coll, "width > 2000") == wide and len(wide) == 2
    assert keys(corpus, coll, "orientation in (6, 8)") == {
        k for k, e in photos.items() if e["orientation"] in (6, 8)
    }
    assert keys(corpus, coll, "camera glob 'nikon*'") == {"photos/snow.jpg"}
    assert keys(corpus, coll, "taken = 2023-07-14 and modality = image") == {"photos/beach.jpg"}

    src = keys(corpus, coll, 'lang = python and path glob "src/**" and not path glob "**/tests/**"')
    assert src and {k.split("#")[0] for k in src} == {"proj/src/pkg/io.py"}
    assert {k.split("#")[0] for k in keys(corpus, coll, 'path glob "**/tests/**"')} == {
        "proj/tests/test_io.py"
    }
    assert keys(corpus, coll, "kind = method") == {"proj/src/pkg/io.py#Cache.get"}
    small = {str(p.relative_to(corpus)) for p in corpus.rglob("*.*") if p.stat().st_size < 120}
    assert {k.split("#")[0] for k in keys(corpus, coll, "size < 120 and modality != text")} == {
        s for s in small if s.endswith((".py", ".js", ".png", ".jpg"))
    }
    assert keys(corpus, coll, "ext in (png, js)") == {"photos/plain.png", "proj/src/app.js#L1-3"}

    assert keys(corpus, coll, "meta.year >= 2021") == {"d3", "d4", "d5"}
    assert keys(corpus, coll, "meta.source = web and meta.tags = y") == {"d3", "d5"}
    assert keys(corpus, coll, "meta.year >= 2021", "-m", "image") == set()  # and the modality option
    assert keys(corpus, coll, "width > 2000", "-m", "image") == wide
    everything = keys(corpus, coll, "modality in (image, code, text)")
    assert keys(corpus, coll, "not taken >= 2023-01-01") == everything - taken_2023  # two-valued not


@pytest.mark.parametrize(
    "where, words",
    [
        ("lnag = python", ["'lnag'", "valid:", "lang", "taken", "meta.year"]),
        ("width > wide", ["'width' is a number"]),
        ("lang python", ["column 6"]),
    ],
)
def test_cli_bad_filter_exits_2_naming_the_field(indexed, where, words):
    _, coll = indexed
    run = mmrag("search", "json", "-c", str(coll), "--where", where)
    assert run.returncode == 2, run.stderr
    assert all(w in run.stderr for w in words), run.stderr


def test_old_collection_gains_facts_on_next_index_without_reembedding(indexed, tmp_path, capsys):
    corpus, coll = indexed
    old = tmp_path / "old"
    subprocess.run(["cp", "-r", str(coll), str(old)], check=True)
    db = sqlite3.connect(old / "meta.sqlite")  # a collection from before facts were kept
    db.executescript("DROP TABLE item_fields; DROP TABLE item_facts;")
    db.close()
    with Engine.open(old) as eng:  # read-only: the tables are missing, the filter still runs, and says why
        res = eng.search("json", where="width > 2000")
    assert res.hits == [] and len(res.warnings) == 1
    assert "indexed before mmrag kept file metadata" in res.warnings[0] and "mmrag index" in res.warnings[0]
    from mmrag.cli import main

    assert main(["info", "-c", str(old)]) == 0  # mmrag info says so too, until the next index
    assert "items were indexed before mmrag kept file metadata" in capsys.readouterr().out
    with Engine.open(old, write=True) as eng:
        report = eng.index([str(corpus), str(corpus / "corpus.jsonl")])
    assert report.items_added == 0 and report.items_kept > 10, report  # nothing embedded again
    with Engine.open(old) as eng:  # the same filter again: a new generation, so evaluated anew
        assert len(eng.search("json", k=50, where="width > 2000").hits) == 2
        res = eng.search("json", k=50, where="width > 2000 or meta.year = 2019")
    assert {h.key for h in res.hits} == {
        str(corpus / "photos/beach.jpg"),
        str(corpus / "photos/city.jpg"),
        "d1",
    }
    assert not res.warnings


# --- REST -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client(indexed):
    pytest.importorskip("fastapi")
    httpx = pytest.importorskip("httpx")
    from test_server import LiveServer

    from mmrag.http.server import create_app

    app = create_app(indexed[1], api_key="k", ui=False)
    with (
        LiveServer(app) as live,
        httpx.Client(base_url=live.url, timeout=60, headers={"X-API-Key": "k"}) as c,
    ):
        yield c
    app.state.service.close()


def test_rest_filter_is_the_cli_filter(indexed, client):
    corpus, coll = indexed
    body = {
        "query": "read json photo",
        "k": 100,
        "filter": {
            "or": [
                {"and": [{"field": "taken", "op": ">=", "value": "2023-01-01"}, {"field": "width", "op": ">", "value": 2000}]},
                {"and": [
                    {"field": "lang", "op": "=", "value": "python"},
                    {"not": {"field": "path", "op": "glob", "value": "**/tests/**"}},
                ]},
                {"field": "meta.year", "op": "in", "value": [2019, 2020]},
            ]
        },
    }  # fmt: skip
    res = client.post("/search", json=body)
    assert res.status_code == 200, res.text
    got = {
        os.path.relpath(h["key"], corpus) if h["key"].startswith("/") else h["key"]
        for h in res.json()["hits"]
    }
    where = "(taken >= 2023-01-01 and width > 2000) or (lang = python and not path glob '**/tests/**') or meta.year in (2019, 2020)"
    assert got == lib_keys(corpus, coll, where)
    assert {"photos/beach.jpg", "photos/city.jpg", "d1", "d2"} <= got and "photos/snow.jpg" not in got


@pytest.mark.parametrize(
    "flt, words",
    [
        ({"field": "lnag", "op": "=", "value": "python"}, ["lnag", "valid", "lang"]),
        ({"field": "width", "op": "=", "value": "wide"}, ["'width' is a number"]),
        ({"field": "lang", "op": "~", "value": "x"}, ["op"]),
        ({"and": []}, ["non-empty"]),
        ({"field": "taken", "op": ">", "value": "yesterday"}, ["date"]),
    ],
)
def test_rest_bad_filter_is_422_naming_the_field(client, flt, words):
    res = client.post("/search", json={"query": "json", "filter": flt})
    assert res.status_code == 422, res.text
    assert all(w in res.json()["detail"] for w in words), res.text


def test_openapi_documents_the_filter(client):
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    body = spec["paths"]["/search"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"$ref": "#/components/schemas/Filter"} in body["properties"]["filter"]["anyOf"]
    assert {
        "Filter",
        "FilterAnd",
        "FilterOr",
        "FilterNot",
        "FilterText",
        "FilterNumber",
        "FilterDate",
        "FilterMeta",
    } <= set(schemas)
    number = schemas["FilterNumber"]["anyOf"][0]["properties"]
    assert {"width", "height", "size", "orientation"} <= set(number["field"]["enum"])
    assert "glob" not in number["op"]["enum"]
    refs = json.dumps(spec).count('"#/components/schemas/Filter"')
    assert refs >= 4  # the body, and/or/not: the schema is recursive
    assert dt.date.fromisoformat("2023-01-01")  # dates as ISO strings (format date / date-time)
