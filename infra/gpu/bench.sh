#!/usr/bin/env bash
# bench-gpu on an offline GPU host (README "Benchmarks on a GPU node"): installs the project's
# GPU kit (.whl/, `make gpu-kit`) into /tmp/site if Ray, DeepSpeed or wtpsplit are missing,
# nothing else, then runs `python -m jobs.bench_gpu --out OUT`. `make bench-gpu OUT=DIR` runs
# this script; without make: `bash infra/gpu/bench.sh DIR`.
set -uo pipefail
out=${1:?usage: bench.sh OUT_DIR [jobs.bench_gpu options]}; shift
cd "$(dirname "$0")/../.."
python=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export HF_HUB_OFFLINE=1 RAY_AUTH_MODE=disabled DS_BUILD_OPS=0 TOKENIZERS_PARALLELISM=false
export TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-$PWD/build/torch_extensions}
if ! "$python" -c "import ray, deepspeed, wtpsplit, hanzidentifier" 2>/dev/null; then
  ls .whl/*.whl >/dev/null 2>&1 || { echo "Ray/DeepSpeed/wtpsplit missing and no .whl/ kit (make gpu-kit)" >&2; exit 2; }
  site=${MIMIR_SITE:-/tmp/site}
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl || exit 2
  export PYTHONPATH=$site:$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if "$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  export DS_ACCELERATOR=cuda
else
  export DS_ACCELERATOR=cpu
fi
exec "$python" -m jobs.bench_gpu --out "$out" "$@"
