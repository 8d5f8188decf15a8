"""Tiny offline assets in the real on-disk formats, built deterministically from shipped text.

    python -m jobs.assets tiny --out build/assets/tiny

Writes DIR/sonar/ (SONAR tokenizer, encoder and decoder) and DIR/sat/ (a SaT model folder);
see offline_assets/tiny.py.
"""

import argparse
from pathlib import Path

from jobkit.cli import setup_logging
from offline_assets.tiny import build_tiny


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["tiny"])
    parser.add_argument("--out", default="build/assets/tiny", type=Path)
    parser.add_argument("--seed", default=0, type=int)
    args = parser.parse_args()
    setup_logging()
    print(build_tiny(args.out, args.seed))


if __name__ == "__main__":
    main()
