"""Photos as phones and cameras write them: HEIC through pi-heif, RAW (here a DNG made by the test)
through rawpy, their EXIF facts in filters, RAWs with a developed sibling left out, and a clear
reason naming the extra where it is not installed.

tests/data/gradient.heic is a 96x64 gradient with EXIF (Apple iPhone 12, DateTimeOriginal
2021:07:14 10:30:00), written once with pillow-heif 1.8.1 (libheif 1.23.6, x265): the test extra
installs pi-heif, the decode-only build, whose wheels carry no encoder to make one here.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmrag.cli import main
from mmrag.errors import IngestError
from mmrag.ingest import IngestCfg, camera, load_image, read_source, scan_sources
from mmrag.ingest.spec import Source

HEIC = Path(__file__).parent / "data" / "gradient.heic"
needs_heif = pytest.mark.skipif(
    camera.heif_module() is None, reason="no HEIF module (pip install 'mmrag[heic]')"
)
needs_rawpy = pytest.mark.skipif(camera.rawpy_module() is None, reason="rawpy is not installed (mmrag[raw])")


# --- a DNG, written as the TIFF it is ------------------------------------------------------------
def _ifd(entries: dict[int, tuple[int, object]], at: int) -> bytes:
    """One TIFF IFD placed at offset `at`: {tag: (type, values)}; longer values follow it."""
    fmts = {1: "B", 3: "H", 4: "I", 5: "II", 10: "ii"}
    head, tail = struct.pack("<H", len(entries)), b""
    data_at = at + 2 + 12 * len(entries) + 4
    for tag in sorted(entries):
        typ, values = entries[tag]
        if typ == 2:  # ASCII
            data, count = str(values).encode() + b"\0", len(str(values)) + 1
        elif typ in (5, 10):  # (signed) rationals
            data, count = b"".join(struct.pack("<" + fmts[typ], *v) for v in values), len(values)
        else:
            data, count = struct.pack("<" + fmts[typ] * len(values), *values), len(values)
        if len(data) <= 4:
            head += struct.pack("<HHI", tag, typ, count) + data.ljust(4, b"\0")
        else:
            head += struct.pack("<HHII", tag, typ, count, data_at + len(tail))
            tail += data + b"\0" * (len(data) % 2)
    return head + b"\0\0\0\0" + tail


def write_dng(path: Path, make: str, model: str, taken: str, h: int = 48, w: int = 64) -> None:
    """A Bayer (RGGB) DNG of a colour gradient, 16-bit, uncompressed, with EXIF make, model and date."""
    y, x = np.mgrid[0:h, 0:w]
    red, green, blue = x * 60000 // w, y * 60000 // h, np.full_like(x, 20000)
    cfa = np.where((y % 2 == 0) & (x % 2 == 0), red, np.where((y % 2 == 1) & (x % 2 == 1), blue, green))
    pixels = cfa.astype("<u2").tobytes()
    exif_at = 8 + len(pixels)
    exif = _ifd({0x9003: (2, taken)}, exif_at)
    identity = [(1, 1), (0, 1), (0, 1), (0, 1), (1, 1), (0, 1), (0, 1), (0, 1), (1, 1)]
    ifd0 = _ifd(
        {254: (4, [0]), 256: (4, [w]), 257: (4, [h]), 258: (3, [16]), 259: (3, [1]), 262: (3, [32803]),
         271: (2, make), 272: (2, model), 273: (4, [8]), 274: (3, [1]), 277: (3, [1]), 278: (4, [h]),
         279: (4, [len(pixels)]), 284: (3, [1]), 306: (2, taken), 0x8769: (4, [exif_at]),
         33421: (3, [2, 2]), 33422: (1, [0, 1, 1, 2]), 50706: (1, [1, 4, 0, 0]), 50707: (1, [1, 1, 0, 0]),
         50708: (2, f"{make} {model}"), 50714: (4, [0]), 50717: (4, [65535]), 50721: (10, identity),
         50728: (5, [(1, 1)] * 3), 50778: (3, [21])},
        exif_at + len(exif),
    )  # fmt: skip
    path.write_bytes(b"II*\0" + struct.pack("<I", exif_at + len(exif)) + pixels + exif + ifd0)


def _source(path: Path) -> Source:
    st = path.stat()
    return Source(str(path), str(path.parent), "image", st.st_size, st.st_mtime_ns)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """A folder as a phone and a camera leave it: a HEIC, a DNG, a DNG with its JPEG, a plain JPEG."""
    d = tmp_path_factory.mktemp("photos")
    if camera.heif_module() is not None:
        shutil.copy(HEIC, d / "IMG_0001.heic")
    if camera.rawpy_module() is not None:
        write_dng(d / "DSC_0002.dng", "Canon", "Canon EOS 5D", "2019:05:04 12:00:00")
    (d / "DSC_0003.nef").write_bytes(b"not read: its JPEG below is the picture")
    Image.new("RGB", (80, 60), (200, 30, 30)).save(d / "DSC_0003.jpg")
    Image.new("RGB", (80, 60), (30, 30, 200)).save(d / "plain.jpg")
    return d


# --- HEIC ----------------------------------------------------------------------------------------
@needs_heif
def test_heic_reads_with_its_exif():
    (item,) = read_source(_source(HEIC))
    assert (item.meta["width"], item.meta["height"], item.meta["format"]) == (96, 64, "HEIF")
    assert item.meta["exif"]["taken"] == "2021-07-14T10:30:00"
    assert item.meta["exif"]["camera"] == "Apple iPhone 12"


@needs_heif
def test_heic_decodes_as_libheif_does():
    heif = __import__(camera.heif_module())
    reference = np.asarray(heif.open_heif(str(HEIC)).to_pillow().convert("RGB"))
    got = np.asarray(load_image(str(HEIC), max_pixels=10**8))
    assert got.shape == (64, 96, 3)
    assert np.array_equal(got, reference)
    assert got[:, -1, 0].mean() > 200 > 50 > got[:, 0, 0].mean()  # the gradient: red grows to the right


# --- RAW -----------------------------------------------------------------------------------------
@needs_rawpy
def test_dng_reads_with_its_exif_and_develops_as_libraw_does(tmp_path: Path):
    import rawpy

    path = tmp_path / "shot.dng"
    write_dng(path, "NIKON CORPORATION", "NIKON D750", "2020:02:29 23:59:58")
    (item,) = read_source(_source(path))
    assert (item.meta["width"], item.meta["height"], item.meta["format"]) == (64, 48, "DNG")
    assert item.meta["exif"]["taken"] == "2020-02-29T23:59:58"
    assert item.meta["exif"]["camera"] == "NIKON CORPORATION NIKON D750"
    for target, half, shape in (
        (224, False, (48, 64, 3)),
        (8, True, (24, 32, 3)),
        (None, False, (48, 64, 3)),
    ):
        with rawpy.imread(str(path)) as raw:  # half size only while the short side stays >= 2 x target
            reference = raw.postprocess(use_camera_wb=True, half_size=half, output_bps=8)
        got = np.asarray(load_image(str(path), max_pixels=10**8, target_size=target))
        assert got.shape == shape
        assert np.array_equal(got, reference)
    with pytest.raises(IngestError, match="too large"):
        read_source(_source(path), IngestCfg(max_image_pixels=1000))


@needs_rawpy
def test_a_broken_raw_says_so(tmp_path: Path):
    bad = tmp_path / "broken.cr2"
    bad.write_bytes(b"II*\0" + b"\0" * 64)
    with pytest.raises(IngestError, match="LibRaw"):
        read_source(_source(bad))


def test_a_raw_with_a_developed_sibling_is_left_out(tmp_path: Path):
    for name in ("IMG_1.NEF", "IMG_1.JPG", "IMG_2.arw", "IMG_3.cr2", "IMG_3.heic", "IMG_4.dng", "IMG_4.txt"):
        (tmp_path / name).write_bytes(b"x")
    found = {Path(s.path).name for s in scan_sources([str(tmp_path)], IngestCfg())}
    assert found == {"IMG_1.JPG", "IMG_2.arw", "IMG_3.heic", "IMG_4.dng"}  # IMG_4.txt: the DNG's caption
    assert camera.shadowed_raws(["a.nef", "a.jpeg", "b.nef", "c.dng", "c.DNG"]) == {"a.nef"}


def test_without_the_extras_each_file_names_the_one_to_install(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setattr(camera, "rawpy_module", lambda: None)
    monkeypatch.setattr(camera, "heif_module", lambda: None)
    shutil.copy(HEIC, tmp_path / "phone.heic")
    (tmp_path / "camera.nef").write_bytes(b"II*\0" + b"\0" * 64)
    Image.new("RGB", (80, 60), (30, 200, 30)).save(tmp_path / "plain.jpg")
    for name, extra in (("phone.heic", "heic"), ("camera.nef", "raw")):
        with pytest.raises(IngestError, match=rf"pip install 'mmrag\[{extra}\]'"):
            read_source(_source(tmp_path / name))
    coll = str(tmp_path / "c")
    assert main(["index", str(tmp_path), "-c", coll, "--models", "tiny", "-q"]) == 3  # some files skipped
    capsys.readouterr()
    assert main(["info", "-c", coll, "--errors"]) == 0
    listed = capsys.readouterr().out
    assert "camera.nef\tRAW photo (NEF): reading it needs the 'raw' extra: pip install 'mmrag[raw]'" in listed
    assert (
        "phone.heic\tHEIC/HEIF photo: reading it needs the 'heic' extra: pip install 'mmrag[heic]'" in listed
    )


# --- filters through the CLI ---------------------------------------------------------------------
def _search(coll: str, where: str, capsys) -> set[str]:
    capsys.readouterr()
    assert main(["search", "a photo", "-c", coll, "--where", where, "--json", "-k", "10"]) == 0
    return {Path(h["source"]).name for h in json.loads(capsys.readouterr().out)}


@needs_heif
@needs_rawpy
def test_exif_filters_find_the_phone_and_camera_photos(photos: Path, tmp_path: Path, capsys):
    coll = str(tmp_path / "c")
    assert main(["index", str(photos), "-c", coll, "--models", "tiny", "-q"]) == 0
    capsys.readouterr()
    assert main(["info", "-c", coll, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["by_modality"] == {"image": 4}  # DSC_0003.nef left out
    assert _search(coll, "taken >= 2021-07-01 and taken <= 2021-07-31", capsys) == {"IMG_0001.heic"}
    assert _search(coll, 'camera = "Apple iPhone 12"', capsys) == {"IMG_0001.heic"}
    assert _search(coll, "taken < 2020-01-01", capsys) == {"DSC_0002.dng"}
    assert _search(coll, 'camera glob "canon*"', capsys) == {"DSC_0002.dng"}
    assert _search(coll, "ext = heic or ext = dng", capsys) == {"IMG_0001.heic", "DSC_0002.dng"}


@needs_heif
@needs_rawpy
def test_the_ui_thumbnails_heic_and_raw(tmp_path: Path):
    pytest.importorskip("fastapi")
    import io

    from mmrag.http.routes import thumbnail_bytes

    dng = tmp_path / "shot.dng"
    write_dng(dng, "Canon", "Canon EOS 5D", "2019:05:04 12:00:00")
    for path, size in ((HEIC, (48, 32)), (dng, (48, 36))):
        with Image.open(io.BytesIO(thumbnail_bytes(path, 48))) as thumb:
            assert (thumb.format, thumb.size) == ("PNG", size)
