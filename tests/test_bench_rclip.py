"""The model folder `mmrag bench images` writes for rclip: the files and tensor names rclip 4 loads.

rclip's model_download.py reads `$RCLIP_DATADIR/ViT-B-32-256-datacomp_s34b_b86k/{visual,textual}.onnx`
(input `input`, output `output`, any batch), `tokenizer/bpe_simple_vocab_16e6.txt.gz` and four legal
files whose presence stops it from downloading. Checked here on the tiny CLIP, against the torch model.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")


@pytest.mark.heavy  # two TorchScript exports: ~45 s on 2 shared cores
def test_rclip_datadir_holds_what_rclip_loads(tmp_path, monkeypatch):
    from encoders import EncoderCfg, create_encoder
    from mmrag.bench.rclip_side import LEGAL_FILES, MODEL_SUBDIR, write_datadir

    monkeypatch.setenv("MMRAG_CACHE", str(tmp_path / "cache"))
    model = create_encoder("tiny-clip:0", EncoderCfg(backend="torch")).model
    root = write_datadir(tmp_path / "rclip", model)
    assert all((root / name).is_file() for name in LEGAL_FILES)
    assert (root / "tokenizer" / "bpe_simple_vocab_16e6.txt.gz").stat().st_size > 1_000_000
    size = int(model.visual.image_size[0])
    pixels = torch.randn(3, 3, size, size)
    tokens = torch.zeros(2, 77, dtype=torch.long)
    tokens[:, 0], tokens[:, 1], tokens[:, 2] = 49406, 320, 49407
    with torch.no_grad():
        want = {
            "visual.onnx": (pixels, model.visual(pixels)),
            "textual.onnx": (tokens, model.encode_text(tokens)),
        }
    for name, (x, ref) in want.items():
        session = ort.InferenceSession(str(root / MODEL_SUBDIR / name), providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == ["input"]
        assert [o.name for o in session.get_outputs()] == ["output"]
        (out,) = session.run(None, {"input": x.numpy()})  # a batch of 3 (2): the batch axis is free
        np.testing.assert_allclose(out, ref.numpy(), atol=1e-4)
