"""Ingestion against what real folders hold: broken, hostile, odd and unreadable files.

Each bad file must give exactly one IngestError naming its path, and every good file around it must
still come through."""

from __future__ import annotations

import builtins
import io
import os
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmrag.errors import IngestError
from mmrag.ingest import IngestCfg, iter_items, load_image, read_source, scan_sources
from mmrag.items import Item


def run(paths, cfg: IngestCfg | None = None) -> tuple[list[Item], list[IngestError]]:
    """The whole ingestion path, image decoding included, with every error collected."""
    cfg = cfg or IngestCfg()
    errors: list[IngestError] = []
    items = []
    for it in iter_items(paths if isinstance(paths, list) else [paths], cfg, errors.append):
        if it.modality == "image":
            try:
                load_image(it.image, max_pixels=cfg.max_image_pixels)
            except IngestError as e:
                errors.append(e)
                continue
        items.append(it)
    return items, errors


def noise(size=(64, 48), mode="RGB") -> Image.Image:
    rng = np.random.default_rng(0)
    channels = len(mode)
    arr = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(arr, "RGB").convert(mode) if mode != "RGB" else Image.fromarray(arr, "RGB")


def png_header(width: int, height: int) -> bytes:
    """A PNG with only a valid IHDR chunk: Pillow reads its size without any pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def good_files(folder: Path) -> set[str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "good.py").write_text("def ok():\n    return 1\n")
    (folder / "good.md").write_text("# Good\n\nFine text.\n")
    noise().save(folder / "good.png")
    return {str(folder / n) for n in ("good.py", "good.md", "good.png")}


def assert_one_error(errors: list[IngestError], path: Path, *words: str) -> IngestError:
    mine = [e for e in errors if e.path == str(path)]
    assert len(mine) == 1, errors
    for w in words:
        assert w in mine[0].reason, mine[0].reason
    return mine[0]


# --- images ------------------------------------------------------------------------------------


def test_truncated_jpeg(tmp_path):
    good = good_files(tmp_path)
    buf = io.BytesIO()
    noise((256, 256)).save(buf, "JPEG", quality=95)
    bad = tmp_path / "cut.jpg"
    bad.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    items, errors = run(tmp_path)
    assert_one_error(errors, bad, "truncated")
    assert len(errors) == 1
    assert {it.source for it in items} == good


def test_decompression_bomb_header(tmp_path):
    good = good_files(tmp_path)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(100_000, 100_000))
    items, errors = run(tmp_path)
    assert_one_error(errors, bomb, "too large", "10000000000")
    assert {it.source for it in items} == good
    with pytest.raises(IngestError, match="too large"):
        load_image(str(bomb), max_pixels=10**9)


def test_small_max_pixels_rejects_and_restores_pillow_limit(tmp_path):
    path = tmp_path / "a.png"
    noise((100, 100)).save(path)
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(IngestError, match="too large"):
        load_image(str(path), max_pixels=5_000)
    with pytest.raises(IngestError, match="too large"):
        read_source(next(iter(scan_sources([path]))), IngestCfg(max_image_pixels=5_000))
    assert before == Image.MAX_IMAGE_PIXELS
    assert load_image(str(path), max_pixels=10_001).size == (100, 100)


def test_cmyk_jpeg_to_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(path, quality=95)  # pure red in ink
    img = load_image(str(path), max_pixels=10**6)
    assert img.mode == "RGB" and img.size == (32, 32)
    r, g, b = np.asarray(img).reshape(-1, 3).mean(0)
    assert r > 200 and g < 60 and b < 60


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (8, 1))
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")
    arr = np.asarray(load_image(str(path), max_pixels=10**6))
    assert arr.shape == (8, 64, 3)
    assert arr[0, 0, 0] == 0 and arr[0, -1, 0] == 255
    assert abs(int(arr[0, 32, 0]) - round(ramp[0, 32] / 257)) <= 1
    assert (arr[..., 0] == 255).mean() < 0.05


def test_palette_png_with_alpha_composited_on_white(tmp_path):
    img = Image.new("P", (10, 10), 0)
    img.putpalette([0, 0, 255] + [255, 0, 0] + [0] * 762)
    img.paste(1, (0, 0, 5, 10))  # left half red, right half index 0
    path = tmp_path / "pal.png"
    img.save(path, transparency=0)  # index 0 (blue) is fully transparent
    arr = np.asarray(load_image(str(path), max_pixels=10**6))
    assert tuple(arr[5, 2]) == (255, 0, 0)
    assert tuple(arr[5, 8]) == (255, 255, 255)


def test_rgba_and_la_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    rgba.save(tmp_path / "clear.png")
    Image.new("LA", (4, 4), (0, 128)).save(tmp_path / "la.png")
    assert tuple(np.asarray(load_image(str(tmp_path / "clear.png"), max_pixels=100))[0, 0]) == (255, 255, 255)
    la = np.asarray(load_image(str(tmp_path / "la.png"), max_pixels=100))[0, 0]
    assert 120 <= la[0] <= 135 and la[0] == la[1] == la[2]


def test_animated_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    arr = np.asarray(load_image(str(path), max_pixels=10**6))
    assert arr.shape == (16, 16, 3)
    r, g, b = arr.reshape(-1, 3).mean(0)
    assert r > 200 and g < 50 and b < 50


def test_exif_orientation_applied(tmp_path):
    img = noise((40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif)
    assert load_image(str(path), max_pixels=10**6).size == (20, 40)
    (item,) = read_source(next(iter(scan_sources([path]))))
    assert (item.meta["width"], item.meta["height"]) == (40, 20)  # as stored


def test_large_jpeg_is_drafted_down_but_not_below_twice_the_target(tmp_path):
    path = tmp_path / "big.jpg"
    noise((2000, 1500)).save(path, quality=90)
    img = load_image(str(path), max_pixels=10**8, target_size=224)
    assert img.mode == "RGB" and min(img.size) >= 448 and max(img.size) < 2000
    assert load_image(str(path), max_pixels=10**8, target_size=None).size == (2000, 1500)


def test_png_named_jpg_is_accepted(tmp_path):
    path = tmp_path / "really_png.jpg"
    noise((20, 10)).save(path, format="PNG")
    items, errors = run(path)
    assert errors == []
    assert items[0].meta["format"] == "PNG" and items[0].meta["width"] == 20


def test_text_named_png_is_not_an_image(tmp_path):
    good = good_files(tmp_path)
    bad = tmp_path / "fake.png"
    bad.write_text("this is not a picture\n")
    items, errors = run(tmp_path)
    assert_one_error(errors, bad, "not an image")
    assert len(errors) == 1 and {it.source for it in items} == good


# --- code and text -----------------------------------------------------------------------------


def test_empty_files(tmp_path):
    good = good_files(tmp_path)
    for name in ("empty.py", "empty.md", "empty.png", "blank.txt"):
        (tmp_path / name).write_bytes(b"" if name != "blank.txt" else b"  \n\n\t\n")
    items, errors = run(tmp_path)
    assert len(errors) == 4
    assert_one_error(errors, tmp_path / "empty.py", "empty file")
    assert_one_error(errors, tmp_path / "empty.md", "empty file")
    assert_one_error(errors, tmp_path / "blank.txt", "empty")
    assert_one_error(errors, tmp_path / "empty.png")
    assert {it.source for it in items} == good


def test_unreadable_file_via_permission_error(tmp_path, monkeypatch):
    good = good_files(tmp_path)
    locked = tmp_path / "locked.py"
    locked.write_text("x = 1\n")
    real_open = builtins.open

    def guarded_open(file, *args, **kwargs):
        if os.fspath(file) == str(locked):
            raise PermissionError(13, "Permission denied", str(locked))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    items, errors = run(tmp_path)
    assert_one_error(errors, locked, "Permission denied")
    assert len(errors) == 1 and {it.source for it in items} == good


def test_unreadable_directory_via_permission_error(tmp_path, monkeypatch):
    good = good_files(tmp_path / "ok")
    locked = tmp_path / "zlocked"
    locked.mkdir()
    (locked / "a.py").write_text("x = 1\n")
    real_scandir = os.scandir

    def guarded_scandir(path="."):
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(locked))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", guarded_scandir)
    items, errors = run(tmp_path)
    assert_one_error(errors, locked, "cannot list directory", "Permission denied")
    assert len(errors) == 1 and {it.source for it in items} == good


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads files whatever chmod says"
)
def test_unreadable_file_via_chmod(tmp_path):
    good = good_files(tmp_path)
    locked = tmp_path / "locked.py"
    locked.write_text("x = 1\n")
    locked.chmod(0)
    try:
        items, errors = run(tmp_path)
    finally:
        locked.chmod(0o644)
    assert_one_error(errors, locked, "Permission denied")
    assert {it.source for it in items} == good


def test_latin1_source_is_indexed_with_its_encoding(tmp_path):
    path = tmp_path / "old.py"
    path.write_bytes("# café\ndef naïve():\n    return 'crème brûlée'\n".encode("latin-1"))
    items, errors = run(path)
    assert errors == []
    assert any("crème brûlée" in it.text for it in items)
    assert all(it.meta["encoding"] in ("cp1252", "latin-1") for it in items)
    assert {it.symbol for it in items} >= {"naïve"}


def test_utf16_with_bom_and_crlf(tmp_path):
    path = tmp_path / "win.txt"
    path.write_bytes("\ufeffLine one\r\nLine two\r\n".encode("utf-16-le"))
    (item,) = read_source(next(iter(scan_sources([path]))))
    assert item.text == "Line one\nLine two" and item.meta["encoding"] == "utf-16"


def test_binary_file_with_code_extension(tmp_path):
    good = good_files(tmp_path)
    bad = tmp_path / "blob.py"
    bad.write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00" + bytes(range(256)) * 4)
    items, errors = run(tmp_path)
    assert_one_error(errors, bad, "binary file")
    assert len(errors) == 1 and {it.source for it in items} == good


def test_huge_one_line_file_rejected_quickly(tmp_path):
    good = good_files(tmp_path)
    bad = tmp_path / "minified.js"
    bad.write_bytes(b"a" * (10 * 1024 * 1024))
    t0 = time.perf_counter()
    items, errors = run(tmp_path)
    assert time.perf_counter() - t0 < 5
    assert_one_error(errors, bad, "too large", "10485760")
    assert {it.source for it in items} == good


def test_one_long_line_is_cut_by_characters_when_allowed(tmp_path):
    words = " ".join(f"w{i}" for i in range(200_000))  # ~1.3 MB on one line
    path = tmp_path / "one.txt"
    path.write_text(words)
    cfg = IngestCfg(max_file_bytes=20_000_000)
    t0 = time.perf_counter()
    items = read_source(next(iter(scan_sources([path]))), cfg)
    assert time.perf_counter() - t0 < 10
    assert len(items) > 1000 and all(len(it.text) <= cfg.max_chunk_chars for it in items)
    assert all(it.start_line == it.end_line == 1 for it in items)
    assert len({it.key for it in items}) == len(items)
    code = tmp_path / "min.js"
    code.write_text("var " + ",".join(f"a{i}=1" for i in range(100_000)) + ";")
    chunks = read_source(next(iter(scan_sources([code]))), cfg)
    assert all(len(c.text) <= cfg.max_code_chars for c in chunks) and len(chunks) > 100


def test_deeply_nested_python_expression_falls_back(tmp_path):
    path = tmp_path / "deep.py"
    path.write_text("x = " + "(" * 5000 + "1" + ")" * 5000 + "\n")
    items, errors = run(path, IngestCfg(max_code_chars=20_000))
    assert errors == [] and items and items[0].meta["splitter"] == "window"


# --- walking -----------------------------------------------------------------------------------


def test_deep_nesting(tmp_path):
    deep = tmp_path
    for _ in range(200):
        deep = deep / "d"
    deep.mkdir(parents=True)
    (deep / "bottom.py").write_text("def bottom():\n    return 'deep'\n")
    good = good_files(tmp_path)
    items, errors = run(tmp_path)
    assert errors == []
    assert {it.source for it in items} == good | {str(deep / "bottom.py")}


def test_symlink_loop_reported_once(tmp_path):
    good = good_files(tmp_path / "a")
    os.symlink(tmp_path, tmp_path / "a" / "back")  # a/back -> the root: a loop
    os.symlink(tmp_path / "self", tmp_path / "self")  # a link to itself
    os.symlink(tmp_path / "gone", tmp_path / "dangling.py")
    items, errors = run(tmp_path)
    assert_one_error(errors, tmp_path / "a" / "back", "symlink loop")
    assert_one_error(errors, tmp_path / "self")
    assert_one_error(errors, tmp_path / "dangling.py", "broken symlink")
    assert len(errors) == 3
    assert {it.source for it in items} == good


def test_symlinked_dir_not_a_loop_is_followed(tmp_path):
    good_files(tmp_path / "real")
    os.symlink(tmp_path / "real", tmp_path / "alias")
    srcs = [os.path.relpath(s.path, tmp_path) for s in scan_sources([tmp_path])]
    assert "alias/good.py" in srcs and "real/good.py" in srcs
    assert [s for s in scan_sources([tmp_path], IngestCfg(follow_symlinks=False))][0].path.startswith(
        str(tmp_path / "real")
    )


def test_odd_file_names(tmp_path):
    names = ["my file.py", "café ☕.md", "new\nline.txt", "日本語.py", "x;rm -rf.md"]
    for n in names:
        (tmp_path / n).write_text(
            "# T\n\nsome text\n" if n.endswith((".md", ".txt")) else "y = 2\nz = 3\nw = 4\n"
        )
    items, errors = run(tmp_path)
    assert errors == []
    assert {it.source for it in items} == {str(tmp_path / n) for n in names}


def test_fifo_and_other_special_files_are_not_read(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    os.mkfifo(tmp_path / "pipe.py")
    good = good_files(tmp_path)
    items, errors = run(tmp_path)  # reading the FIFO would block forever
    assert errors == [] and {it.source for it in items} == good


def test_mixed_folder_every_bad_file_once_every_good_file_kept(tmp_path):
    good = good_files(tmp_path)
    good |= good_files(tmp_path / "sub")
    bad = {
        tmp_path / "sub" / "bin.py": b"\x00\x01\x02",
        tmp_path / "e.md": b"",
        tmp_path / "sub" / "notimg.gif": b"GIF? no",
        tmp_path / "bomb.png": png_header(50_000, 50_000),
    }
    for p, data in bad.items():
        p.write_bytes(data)
    items, errors = run(tmp_path, IngestCfg(max_image_pixels=10**8))
    assert sorted(e.path for e in errors) == sorted(str(p) for p in bad)
    assert all(e.reason for e in errors)
    assert {it.source for it in items} == good
