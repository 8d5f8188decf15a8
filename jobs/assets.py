"""Offline assets in the real on-disk formats, built deterministically from shipped text.

    python -m jobs.assets tiny --out build/assets/tiny
    python -m jobs.assets full-shape --out build/assets/full [--shape full|cpu]

tiny: DIR/sonar/ (SONAR tokenizer, encoder and decoder) and DIR/sat/ (a SaT model folder) of
tiny random models (offline_assets/tiny.py). full-shape: the same files at the real models'
shapes and vocabularies, random weights, for timing on a GPU without downloads
(offline_assets/full_shape.py; about 4 GB; --shape cpu keeps the real vocabularies with tiny
widths).
"""

import argparse
from pathlib import Path

from jobkit.cli import setup_logging
from offline_assets.full_shape import SHAPES, build_full_shape
from offline_assets.tiny import build_tiny


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["tiny", "full-shape"])
    parser.add_argument("--out", default=None, type=Path,
                        help="default build/assets/tiny, build/assets/full (or cpu)")
    parser.add_argument("--seed", default=0, type=int)
    parser.add_argument("--shape", default="full", choices=sorted(SHAPES),
                        help="full-shape only: full (the real models) or cpu (real "
                             "vocabularies, tiny widths)")
    args = parser.parse_args(argv)
    setup_logging()
    if args.kind == "tiny":
        out = build_tiny(args.out or Path("build/assets/tiny"), args.seed)
    else:
        out = build_full_shape(args.out or Path(f"build/assets/{args.shape}"), args.seed,
                               args.shape)
    print(out)
    return out


if __name__ == "__main__":
    main()
