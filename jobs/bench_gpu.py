"""bench-gpu: the one prepared benchmark of the real pipeline for a GPU host (bench/gpu_suite.py).

    python -m jobs.bench_gpu --out DIR [--only PART ...] [--repeats N] [--cap PART=SECONDS]

On a GPU: full-shape assets, the SONAR encoder, a 1.6B training step and jobs.pretrain with
data: runtime, each part under its own time cap (480 s in all). On a CPU: the same at tiny
shapes and a small volume. Prints the table and writes DIR/results.json.
"""

import sys

from bench.gpu_suite import main

if __name__ == "__main__":
    sys.exit(main())
