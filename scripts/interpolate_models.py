"""Average a fine-tuned sentence-transformers model with its base, weight by weight.

Interpolating fine-tuned and base weights keeps much of what fine-tuning learned while
undoing part of what it forgot; docs/quality.md measures it on CoSQA dev.

    .venv/bin/python scripts/interpolate_models.py BASE_DIR TUNED_DIR OUT_DIR --alpha 0.5
"""

from __future__ import annotations

import argparse


def main() -> None:
    from sentence_transformers import SentenceTransformer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base")
    ap.add_argument("tuned")
    ap.add_argument("out")
    ap.add_argument("--alpha", type=float, default=0.5, help="weight of the tuned model (0 = base)")
    args = ap.parse_args()
    base = SentenceTransformer(args.base, device="cpu")
    tuned = SentenceTransformer(args.tuned, device="cpu").state_dict()
    mixed = {
        k: (1 - args.alpha) * v + args.alpha * tuned[k] if v.is_floating_point() else v
        for k, v in base.state_dict().items()
    }
    base.load_state_dict(mixed)
    base.save(args.out)


if __name__ == "__main__":
    main()
