"""`mmrag bench images`: indexing photos and querying by image, side by side with rclip and open_clip.

Every run is a whole fresh process, as a user starts it, timed by wall clock with its own peak RSS
and CPU seconds (mmrag/bench/report.py `run_process`), the tools alternating round by round so
load drifts hit all of them alike:

- rclip 4 (PyPI, ONNX Runtime) in its own virtual environment, indexing the photo folder from an
  empty database (`rclip -f QUERY` in that folder), then `rclip -n -f ./photo.jpg` for a query by
  image and `rclip -n -f "a photo of a dog"` for a text query;
- `mmrag index` into a new collection with `clip:ViT-B-32-256/datacomp_s34b_b86k`, then
  `mmrag search "" --image photo.jpg` and `mmrag search "a photo of a dog" -m image`;
- the plain open_clip loop a user would write (open, convert, preprocess, `encode_image` in
  batches of 32), for scale.

All three run the same network: one seeded random ViT-B-32-256 (rclip's model) written into a
hub-layout cache (mmrag/bench/clip_hub.py), exported to rclip's ONNX files from that state dict.
A second table puts each tool with its own default model, as a user gets it: mmrag with the CLIP
of its `default` set (ViT-B-32/laion2b_s34b_b79k, 224 px input), also random and real-size, in the
same rounds as rclip; beside the speed, the published text-to-image retrieval of each model.
Photos are photo-like JPEGs (smooth colour fields plus sensor-like noise, quality 90) at camera
size (4000x3000) and at 1024x768. One-off costs are paid before timing and reported apart: rclip's
installation, the ONNX files of both tools. The image tower's GFLOP/s is FLOPs per image (torch's
FlopCounterMode) times images/s, over the best measured fp32 GEMM rate of this machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import numpy as np

from .report import Figure, ProcessRun, format_table, run_process

TARGET_SPEED = 1.5  # mmrag images/s over rclip's, both photo sizes (goal 2)
TARGET_RSS = 1.0  # peak RSS at most rclip's
TARGET_QUERY_S = 1.5  # cold query by image, whole process
SIZES = ((4000, 3000), (1024, 768))
QUICK_SIZES = ((1600, 1200),)
TEXT_QUERY = "a photo of a dog"  # the cold text query both tools answer over the indexed photos
OWN_TABLE = "each tool with its own default model"  # Figure.extra["table"] of the second table
# Published zero-shot text-to-image retrieval R@1 (%), open_clip's results table
# docs/openclip_retrieval_results.csv, columns "Flickr image retr. R@1" and "MSCOCO image retr. R@1"
PUBLISHED_R1: dict[tuple[str, str], dict[str, float]] = {
    ("ViT-B-32", "laion2b_s34b_b79k"): {"Flickr30k": 66.78, "MSCOCO": 39.34},
    ("ViT-B-32-256", "datacomp_s34b_b86k"): {"Flickr30k": 64.92, "MSCOCO": 39.93},
}
# open_clip's docs/model_profile.csv "image_gflops" (multiply-adds) over 2: GMACs per image, by architecture
PROFILE_GMACS = {"ViT-B-32": 8.82 / 2, "ViT-B-32-256": 11.5 / 2}
PUBLISHED_SOURCE = (
    "open_clip's results table, github.com/mlfoundations/open_clip docs/openclip_retrieval_results.csv "
    "(Flickr30k and MSCOCO image retrieval R@1: a caption finds its image)"
)
OPEN_CLIP_LOOP = """
import glob, sys
import numpy as np, open_clip, torch
from PIL import Image
model, _, preprocess = open_clip.create_model_and_transforms(sys.argv[2], pretrained=sys.argv[3])
model.eval()
paths = sorted(glob.glob(sys.argv[1] + "/*.jpg"))
feats = []
with torch.no_grad():
    for i in range(0, len(paths), 32):
        batch = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths[i : i + 32]])
        f = model.encode_image(batch)
        feats.append(f / f.norm(dim=-1, keepdim=True))
np.save(sys.argv[4], torch.cat(feats).numpy())
"""


def make_photos(folder: Path, n: int, size: tuple[int, int], seed: int = 0) -> list[Path]:
    """n photo-like JPEGs of one size, written once: a smooth field per photo plus shifted noise."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    paths = [folder / f"photo{i:04d}.jpg" for i in range(n)]
    if all(p.is_file() for p in paths):
        return paths
    rng = np.random.default_rng(seed)
    tile = rng.normal(0, 8, (512, 512, 3)).astype(np.float32)
    noise = np.tile(tile, (h // 512 + 2, w // 512 + 2, 1))
    for p in paths:
        small = rng.integers(0, 255, (h // 50 + 2, w // 50 + 2, 3), dtype=np.uint8)
        field = np.asarray(Image.fromarray(small).resize((w, h), Image.BILINEAR), dtype=np.float32)
        dy, dx = rng.integers(0, 512, 2)
        arr = np.clip(field + noise[dy : dy + h, dx : dx + w], 0, 255).astype(np.uint8)
        tmp = p.with_suffix(".tmp")
        Image.fromarray(arr).save(tmp, format="JPEG", quality=90)
        os.replace(tmp, p)
    return paths


def gemm_peak_flops(n: int = 2048, reps: int = 3) -> float:
    """Best measured fp32 FLOP/s of an n x n torch matmul: the machine's practical ceiling."""
    import time

    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def image_flops(model, size: int) -> float:
    """FLOPs of one image through the image tower, counted by torch's FlopCounterMode.

    Counted with autograd on: without it, nn.MultiheadAttention takes its fused fast path, whose
    query/key/value and output projections (a third of a ViT's multiply-adds) the counter misses.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.enable_grad(), FlopCounterMode(display=False) as counter:
        model.encode_image(torch.zeros(1, 3, size, size))
    return float(counter.get_total_flops())


class Setup:
    """Everything the timed runs need, made once: weights, environments, model files, photo sets."""

    def __init__(self, root: Path, quick: bool, n: int):
        from encoders.weights import mmrag_cache_dir

        from . import clip_hub, rclip_side

        self.root = root
        self.quick = quick
        self.hf = root / "hf"
        clip_hub.build_clip_hub(self.hf)
        self.own = None if quick else clip_hub.mmrag_default()  # mmrag's own default model, second table
        if self.own is not None:
            clip_hub.build_clip_hub(self.hf, self.own)
            self.models_own = root / "models-own.toml"
            self.models_own.write_text(f'name = "bench-images-own"\nclip = "{self.own.spec}"\n')
        self.env = {**os.environ, **clip_hub.hub_env(self.hf), "MMRAG_CACHE": str(root / "mmrag-cache")}
        self.env.pop("PYTHONPATH", None)
        self.spec = "tiny-clip:0" if quick else f"clip:{clip_hub.ARCH}/{clip_hub.TAG}"
        self.models = root / "models.toml"
        self.models.write_text(f'name = "bench-images"\nclip = "{self.spec}"\n')
        self.mmrag = [sys.executable, "-m", "mmrag.cli"]
        self.rclip: Path | None = None
        self.rclip_note = ""
        self.setup_seconds: dict[str, float] = {}
        model = self._model()
        self.size = int(model.visual.image_size[0])
        self.flops = image_flops(model, self.size)
        if self.own is not None:
            own_model = self._model(self.own)
            self.size_own = int(own_model.visual.image_size[0])
            self.flops_own = image_flops(own_model, self.size_own)
            del own_model
        if quick:
            self.rclip_note = (
                "--quick: mmrag alone, on the tiny random CLIP (rclip and open_clip need the real size)"
            )
        else:
            try:
                self.rclip = rclip_side.ensure_venv(mmrag_cache_dir() / "bench-rclip-venv")
                self.rclip_version = rclip_side.rclip_version(self.rclip)
                self.rclip_data = rclip_side.write_datadir(root / "rclip-data", model)
            except rclip_side.RclipUnavailable as err:
                self.rclip, self.rclip_note = None, f"rclip not run: {err}"
        del model
        sizes = QUICK_SIZES if quick else SIZES
        self.photos = {s: make_photos(root / f"photos-{s[0]}x{s[1]}-{n}", n, s) for s in sizes}
        if not quick:  # --quick: the first timed run pays the exports (seconds for the tiny CLIP)
            self._warm()

    def _model(self, which=None):
        """open_clip's model from the hub cache (rclip's, or `which`), loaded the way open_clip users load it."""
        import open_clip

        from . import clip_hub

        which = which or clip_hub.RCLIP
        if self.quick:
            from encoders import EncoderCfg, create_encoder

            return create_encoder(self.spec, EncoderCfg(backend="torch")).model  # torch: its FLOPs

        saved = {k: os.environ.get(k) for k in clip_hub.hub_env(self.hf)}
        os.environ.update(clip_hub.hub_env(self.hf))
        try:
            import huggingface_hub.constants as hf_constants

            old = hf_constants.HF_HUB_CACHE, hf_constants.HF_HUB_OFFLINE
            hf_constants.HF_HUB_CACHE, hf_constants.HF_HUB_OFFLINE = str(self.hf / "hub"), True
            try:
                model, _, _ = open_clip.create_model_and_transforms(which.arch, pretrained=which.tag)
            finally:
                hf_constants.HF_HUB_CACHE, hf_constants.HF_HUB_OFFLINE = old
        finally:
            for k, v in saved.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        return model.eval()

    def _warm(self) -> None:
        """mmrag's once-per-model exports, paid on a tiny folder before anything is timed."""
        warm = make_photos(self.root / "photos-warm", 2, (640, 480), seed=9)
        coll = self.root / "coll-warm"
        _rmtree(coll)
        first = run_process([*self.mmrag, "index", str(warm[0].parent), "-c", str(coll), "--models",
                             str(self.models)], env=self.env)  # fmt: skip
        self.setup_seconds["mmrag first index (exports)"] = first.seconds
        run_process([*self.mmrag, "search", "", "--image", str(warm[0]), "-c", str(coll)], env=self.env)
        if self.own is not None:  # the same for mmrag's own default model
            _rmtree(coll)
            first = run_process([*self.mmrag, "index", str(warm[0].parent), "-c", str(coll), "--models",
                                 str(self.models_own)], env=self.env)  # fmt: skip
            self.setup_seconds["mmrag first index, own model (exports)"] = first.seconds
            run_process([*self.mmrag, "search", "", "--image", str(warm[0]), "-c", str(coll)], env=self.env)

    # --- the timed runs --------------------------------------------------------------------
    def _coll(self, size: tuple[int, int], own: bool) -> Path:
        return self.root / f"coll-{size[0]}x{size[1]}{'-own' if own else ''}"

    def index_mmrag(self, size: tuple[int, int], own: bool = False) -> ProcessRun:
        """`mmrag index` into a new collection, with rclip's model or (own) mmrag's default one."""
        folder = self.photos[size][0].parent
        coll = self._coll(size, own)
        _rmtree(coll)
        models = self.models_own if own else self.models
        return run_process([*self.mmrag, "index", str(folder), "-c", str(coll), "--models", str(models)],
                           env=self.env)  # fmt: skip

    def index_rclip(self, size: tuple[int, int]) -> ProcessRun:
        assert self.rclip is not None
        for f in self.rclip_data.glob("db.sqlite3*"):
            f.unlink()
        return run_process([str(self.rclip), "-f", "a photo"], env=self._rclip_env(),
                           cwd=str(self.photos[size][0].parent))  # fmt: skip

    def index_open_clip(self, size: tuple[int, int]) -> ProcessRun:
        from . import clip_hub

        folder = self.photos[size][0].parent
        out = self.root / "open_clip_vectors.npy"
        return run_process([sys.executable, "-c", OPEN_CLIP_LOOP, str(folder), clip_hub.ARCH, clip_hub.TAG,
                            str(out)], env=self.env)  # fmt: skip

    def query_mmrag(self, size: tuple[int, int], own: bool = False) -> ProcessRun:
        coll = self._coll(size, own)
        ref = self.photos[size][1]
        return run_process([*self.mmrag, "search", "", "--image", str(ref), "-c", str(coll), "-k", "10"],
                           env=self.env)  # fmt: skip

    def query_rclip(self, size: tuple[int, int]) -> ProcessRun:
        assert self.rclip is not None
        ref = self.photos[size][1]
        return run_process([str(self.rclip), "-n", "-f", f"./{ref.name}"], env=self._rclip_env(),
                           cwd=str(ref.parent))  # fmt: skip

    def text_query_mmrag(self, size: tuple[int, int], own: bool = False) -> ProcessRun:
        coll = self._coll(size, own)
        return run_process([*self.mmrag, "search", TEXT_QUERY, "-c", str(coll), "-m", "image", "-k", "10"],
                           env=self.env)  # fmt: skip

    def text_query_rclip(self, size: tuple[int, int]) -> ProcessRun:
        assert self.rclip is not None
        return run_process([str(self.rclip), "-n", "-f", TEXT_QUERY], env=self._rclip_env(),
                           cwd=str(self.photos[size][0].parent))  # fmt: skip

    def _rclip_env(self) -> dict[str, str]:
        return {**self.env, "RCLIP_DATADIR": str(self.rclip_data), "HF_HUB_OFFLINE": "1"}


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _median(runs: list[ProcessRun], attr: str) -> float:
    return float(statistics.median(getattr(r, attr) for r in runs))


def _fmt_runs(runs: list[ProcessRun]) -> str:
    return " / ".join(f"{r.seconds:.1f}" for r in runs)


def run(quick: bool = False, rounds: int | None = None, n: int | None = None) -> list[Figure]:
    from . import work_dir

    rounds = rounds or (1 if quick else 3)
    n = n or (6 if quick else 300)
    setup = Setup(work_dir() / "images", quick, n)
    peak = gemm_peak_flops(512 if quick else 2048)
    figures: list[Figure] = []
    query_runs: dict[str, list[ProcessRun]] = {"mmrag": [], "rclip": [], "mmrag_own": []}
    text_runs: dict[str, list[ProcessRun]] = {"mmrag": [], "rclip": [], "mmrag_own": []}
    own_index: dict[tuple[int, int], dict[str, list[ProcessRun]]] = {}
    for size in setup.photos:
        runs: dict[str, list[ProcessRun]] = {"mmrag": [], "rclip": [], "open_clip": [], "mmrag_own": []}
        for r in range(rounds):
            print(
                f"bench images: {size[0]}x{size[1]} round {r + 1}/{rounds} ...", file=sys.stderr, flush=True
            )
            if setup.rclip is not None:
                runs["rclip"].append(setup.index_rclip(size))
            runs["mmrag"].append(setup.index_mmrag(size))
            if setup.own is not None:
                runs["mmrag_own"].append(setup.index_mmrag(size, own=True))
            if r == 0 and not quick:  # minutes per run at camera size: once per size, for scale
                runs["open_clip"].append(setup.index_open_clip(size))
            if setup.rclip is not None:
                query_runs["rclip"].append(setup.query_rclip(size))
            query_runs["mmrag"].append(setup.query_mmrag(size))
            if setup.own is not None:
                query_runs["mmrag_own"].append(setup.query_mmrag(size, own=True))
            if setup.rclip is not None:
                text_runs["rclip"].append(setup.text_query_rclip(size))
            text_runs["mmrag"].append(setup.text_query_mmrag(size))
            if setup.own is not None:
                text_runs["mmrag_own"].append(setup.text_query_mmrag(size, own=True))
            both = {**query_runs, **{f"text_{k}": v for k, v in text_runs.items()}}
            _log_round(setup.root / "runs.jsonl", size, r, runs, both)
        peak = max(peak, gemm_peak_flops(512 if quick else 2048))  # the best seen: a busy moment under-reads
        figures += _size_figures(size, n, runs, setup, peak)
        own_index[size] = runs
    figures += _query_figures(query_runs, setup)
    figures += _query_figures(text_runs, setup, "cold text query", None)
    if setup.own is not None:
        figures += own_default_figures(setup, n, own_index, query_runs, text_runs)
    return figures


def own_default_figures(
    setup: Setup,
    n: int,
    index_runs: dict[tuple[int, int], dict[str, list[ProcessRun]]],
    query_runs: dict[str, list[ProcessRun]],
    text_runs: dict[str, list[ProcessRun]],
) -> list[Figure]:
    """The second table: mmrag with its default model against rclip with its own, as each comes.

    Ratios read mmrag over rclip for rates and recall, rclip over mmrag for times and memory, so
    above 1 is better for mmrag on every row; published recall sits beside the measured speed."""
    from . import clip_hub

    mine, theirs = setup.own, clip_hub.RCLIP
    who = (
        f"mmrag {mine.arch}/{mine.tag} {setup.size_own} px / rclip {theirs.arch}/{theirs.tag} {setup.size} px"
    )
    table = {"table": f"{OWN_TABLE}: {who}"}
    profile = [PROFILE_GMACS.get(m.arch) for m in (mine, theirs)]
    gmacs_note = "torch FlopCounterMode (matmuls), FLOPs / 2" + (
        f"; open_clip's docs/model_profile.csv: {profile[0]:.2f} and {profile[1]:.2f}" if all(profile) else ""
    )
    out = [
        Figure("image tower GMACs per image", setup.flops_own / 2e9, "GMAC", setup.flops / 2e9,
               setup.flops / setup.flops_own, None, False, gmacs_note, dict(table)),
    ]  # fmt: skip
    for size, runs in index_runs.items():
        label = f"{n} JPEGs {size[0]}x{size[1]}"
        mm, rc = runs["mmrag_own"], runs["rclip"]
        rate = n / _median(mm, "seconds")
        rss = _median(mm, "peak_rss") / 2**30
        note = f"wall s, mmrag {_fmt_runs(mm)}" + (
            f" vs rclip {_fmt_runs(rc)}" if rc else f"; {setup.rclip_note}"
        )
        ref_rate = n / _median(rc, "seconds") if rc else None
        ref_rss = _median(rc, "peak_rss") / 2**30 if rc else None
        out.append(Figure(f"index {label}, whole process", rate, "img/s", ref_rate,
                          rate / ref_rate if ref_rate else None, None, True, note, dict(table)))  # fmt: skip
        out.append(Figure(f"peak RSS indexing {label}", rss, "GiB", ref_rss, ref_rss / rss if ref_rss else None,
                          None, False, "", dict(table)))  # fmt: skip
    for what, runs in (("cold query by image", query_runs), ("cold text query", text_runs)):
        mm, rc = runs["mmrag_own"], runs["rclip"]
        value, ref = _median(mm, "seconds"), (_median(rc, "seconds") if rc else None)
        out.append(Figure(f"{what}, whole process", value, "s", ref, ref / value if ref else None, None, False,
                          f"wall s, mmrag {_fmt_runs(mm)}" + (f" vs rclip {_fmt_runs(rc)}" if rc else ""),
                          dict(table)))  # fmt: skip
    ours, ref_r1 = (
        PUBLISHED_R1.get((mine.arch, mine.tag), {}),
        PUBLISHED_R1.get((theirs.arch, theirs.tag), {}),
    )
    for bench in ("Flickr30k", "MSCOCO"):
        if bench in ours and bench in ref_r1:
            out.append(Figure(f"{bench} text-to-image R@1, published", ours[bench], "%", ref_r1[bench],
                              ours[bench] / ref_r1[bench], None, True, PUBLISHED_SOURCE, dict(table)))  # fmt: skip
    return out


def _log_round(path: Path, size, r: int, runs: dict, query_runs: dict) -> None:
    """Every finished round's measurements, appended as one JSON line: a run cut short keeps them."""
    import json

    row = {"size": list(size), "round": r + 1, "load": os.getloadavg()[0]}
    for tool, lst in [*runs.items(), *(("query_" + k, v) for k, v in query_runs.items())]:
        if lst:
            row[tool] = {"seconds": lst[-1].seconds, "peak_rss": lst[-1].peak_rss, "cpu": lst[-1].cpu_seconds}
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def _size_figures(size, n: int, runs: dict[str, list[ProcessRun]], setup: Setup, peak: float) -> list[Figure]:
    label = f"{n} JPEGs {size[0]}x{size[1]}"
    mm = runs["mmrag"]
    mm_rate = n / _median(mm, "seconds")
    mm_rss = _median(mm, "peak_rss") / 2**30
    out = []
    if runs["rclip"]:
        rc = runs["rclip"]
        rc_rate = n / _median(rc, "seconds")
        rc_rss = _median(rc, "peak_rss") / 2**30
        note = (f"wall s, mmrag {_fmt_runs(mm)} vs rclip {_fmt_runs(rc)} ({setup.rclip_version}); CPU s "
                f"{_median(mm, 'cpu_seconds'):.1f} vs {_median(rc, 'cpu_seconds'):.1f}; load "
                f"{os.getloadavg()[0]:.1f}")  # fmt: skip
        out.append(Figure(f"index {label}, whole process (mmrag / rclip)", mm_rate, "img/s", rc_rate,
                          mm_rate / rc_rate, TARGET_SPEED, note=note))  # fmt: skip
        out.append(Figure(f"peak RSS indexing {label} (mmrag / rclip)", mm_rss, "GiB", rc_rss, mm_rss / rc_rss,
                          TARGET_RSS, higher_is_better=False))  # fmt: skip
    else:
        out.append(Figure(f"index {label}, whole process", mm_rate, "img/s", note=setup.rclip_note))
        out.append(Figure(f"peak RSS indexing {label}", mm_rss, "GiB"))
    if runs["open_clip"]:
        oc_rate = n / _median(runs["open_clip"], "seconds")
        out.append(Figure(f"index {label} (mmrag / plain open_clip loop)", mm_rate, "img/s", oc_rate,
                          mm_rate / oc_rate, note=f"open_clip loop {_fmt_runs(runs['open_clip'])} s, "
                          f"{_median(runs['open_clip'], 'peak_rss') / 2**30:.2f} GiB"))  # fmt: skip
    gflop = setup.flops / 1e9
    achieved = mm_rate * setup.flops
    ref = n / _median(runs["rclip"], "seconds") * setup.flops / peak if runs["rclip"] else None
    out.append(Figure(f"image tower GFLOP/s / GEMM peak, {label}", achieved / peak, "", ref,
                      note=f"{gflop:.2f} GFLOP/image x images/s (whole process) over a measured fp32 GEMM peak of "
                      f"{peak / 1e9:.1f} GFLOP/s; reference column: rclip"))  # fmt: skip
    return out


def _query_figures(
    runs: dict[str, list[ProcessRun]],
    setup: Setup,
    what: str = "cold query by image",
    target: float | None = TARGET_QUERY_S,
) -> list[Figure]:
    mm = _median(runs["mmrag"], "seconds")
    rss = _median(runs["mmrag"], "peak_rss") / 2**30
    if runs["rclip"]:
        rc = _median(runs["rclip"], "seconds")
        note = f"wall s, mmrag {_fmt_runs(runs['mmrag'])} vs rclip {_fmt_runs(runs['rclip'])}; peak RSS {rss:.2f} GiB"
        return [Figure(f"{what}, whole process", mm, "s", rc, None, target, False, note),
                Figure(f"{what} (mmrag / rclip)", mm, "s", rc, mm / rc, None, False)]  # fmt: skip
    return [Figure(f"{what}, whole process", mm, "s", None, None, target, False,
                   f"{setup.rclip_note}; peak RSS {rss:.2f} GiB")]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """`python -m mmrag.bench.images [--n N] [--rounds R] [--quick] [--json]`."""
    import json

    p = argparse.ArgumentParser(prog="python -m mmrag.bench.images", description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=None, help="photos per size (default 300, --quick 6)")
    p.add_argument("--rounds", type=int, default=None, help="alternated rounds (default 3, --quick 1)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    figures = run(args.quick, rounds=args.rounds, n=args.n)
    print(json.dumps([f.to_dict() for f in figures], indent=1) if args.json else format_table(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
