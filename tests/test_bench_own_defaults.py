"""`mmrag bench images`'s second table: each tool with its own default model, the published
retrieval of each beside the measured speed. Built here from made-up runs: no process is started."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mmrag.bench import clip_hub
from mmrag.bench.images import OWN_TABLE, PUBLISHED_R1, own_default_figures
from mmrag.bench.report import ProcessRun, format_table


def _runs(*seconds: float, rss: float = 1.0) -> list[ProcessRun]:
    return [ProcessRun(s, int(rss * 2**30), s, "") for s in seconds]


def test_the_default_model_is_the_default_sets_clip():
    from encoders.modelsets import resolve_model_set

    own = clip_hub.mmrag_default()
    assert own.spec == resolve_model_set("default").clip
    assert own.repo == "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"  # open_clip's hf_hub for the tag
    assert (own.arch, own.tag) in PUBLISHED_R1 and (clip_hub.ARCH, clip_hub.TAG) in PUBLISHED_R1


def test_own_default_table():
    setup = SimpleNamespace(own=clip_hub.mmrag_default(), size=256, size_own=224, flops=11.6e9, flops_own=8.8e9,
                            rclip_note="")  # fmt: skip
    index = {(4000, 3000): {"mmrag_own": _runs(20, 30, 25, rss=0.9), "rclip": _runs(50, 40, 60, rss=2.0)}}
    queries = {"mmrag_own": _runs(1.0, 1.2), "rclip": _runs(3.0, 2.0)}
    texts = {"mmrag_own": _runs(0.8), "rclip": _runs(1.6)}
    figures = {f.name: f for f in own_default_figures(setup, 100, index, queries, texts)}
    assert all(f.extra["table"].startswith(OWN_TABLE) for f in figures.values())
    rate = figures["index 100 JPEGs 4000x3000, whole process"]
    assert (rate.value, rate.reference, rate.ratio) == (4.0, 2.0, 2.0)  # 100 / median seconds
    rss = figures["peak RSS indexing 100 JPEGs 4000x3000"]
    assert (rss.value, rss.reference, rss.ratio) == pytest.approx((0.9, 2.0, 2.0 / 0.9))
    assert figures["cold query by image, whole process"].ratio == pytest.approx(2.5 / 1.1)
    assert figures["cold text query, whole process"].ratio == 2.0
    assert figures["image tower GMACs per image"].value == 4.4
    flickr = figures["Flickr30k text-to-image R@1, published"]
    coco = figures["MSCOCO text-to-image R@1, published"]
    assert (flickr.value, flickr.reference, coco.value, coco.reference) == (66.78, 64.92, 39.34, 39.93)
    assert "openclip_retrieval_results.csv" in flickr.note
    text = format_table(list(figures.values()))
    assert text.startswith(f"{OWN_TABLE}: mmrag ViT-B-32/laion2b_s34b_b79k 224 px / rclip ViT-B-32-256")
